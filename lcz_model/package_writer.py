"""Writing a dataset package (the layout in design/dataset-package.md), without Django.

The app's `manage.py export_dataset` and the synthetic-package fixture both write through these
functions, so every package has the same files, formats and atomicity:

- fractions are written from integer per-mille as exact decimals ("0.35", "1", "0"), so a
  package is byte-identical for the same labels on any platform;
- the package is built in a hidden temporary folder beside the target and renamed into place:
  an interrupted export leaves no half package under the final name;
- SHA256SUMS covers every file (`sha256sum -c` passes).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .classes import CLASSES, KEYS
from .package import sha256_file, write_sha256sums

PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"


def format_fraction(per_mille: int) -> str:
    """Per-mille integer -> exact decimal fraction text: 1000 -> "1", 350 -> "0.35", 0 -> "0"."""
    pm = int(per_mille)
    if not 0 <= pm <= 1000:
        raise ValueError(f"per-mille out of range: {pm}")
    return "1" if pm == 1000 else ("0" if pm == 0 else f"0.{pm:03d}".rstrip("0"))


def fractions_to_permille(fractions) -> np.ndarray:
    """Rows of fractions (each summing to 1) -> per-mille integers summing to exactly 1000:
    largest remainder, ties to the lower class index (the rule consensus splits use too)."""
    raw = np.clip(np.atleast_2d(np.asarray(fractions, dtype=np.float64)), 0, None)
    raw = raw / raw.sum(axis=1, keepdims=True) * 1000.0
    out = np.floor(raw).astype(np.int64)
    short = 1000 - out.sum(axis=1)
    rem = raw - out
    for i in np.flatnonzero(short > 0):
        order = np.lexsort((np.arange(raw.shape[1]), -rem[i]))
        out[i, order[: short[i]]] += 1
    return out


def labels_csv_text(block_ids: Sequence[str], permille: np.ndarray) -> str:
    """labels.csv: block_id, then the 17 class fractions in lcz_model.classes order."""
    permille = np.asarray(permille)
    if permille.shape != (len(block_ids), len(KEYS)):
        raise ValueError(f"permille must be ({len(block_ids)}, {len(KEYS)}); got {permille.shape}")
    bad = np.flatnonzero(permille.sum(axis=1) != 1000)
    if len(bad):
        raise ValueError(f"splits of {[block_ids[i] for i in bad[:5]]} do not sum to 1000 per-mille")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["block_id", *KEYS])
    for bid, row in zip(block_ids, permille):
        w.writerow([bid, *(format_fraction(v) for v in row)])
    return buf.getvalue()


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_splits(pkg: Path, train: Iterable[str], test: Iterable[str]) -> None:
    write_text(pkg / "splits" / "train.txt", "".join(f"{b}\n" for b in train))
    write_text(pkg / "splits" / "test.txt", "".join(f"{b}\n" for b in test))


def class_table_markdown() -> str:
    rows = ["| idx | key | code | name | group | colour |", "|---|---|---|---|---|---|"]
    rows += [f"| {c.index} | {c.key} | {c.code} | {c.name} | {c.group} | {c.colour} |" for c in CLASSES]
    return "\n".join(rows)


def croissant_metadata(pkg: Path, *, name: str, description: str, license_url: str, url: str,
                       version: str, date_published: str, cite_as: str) -> dict:
    """Croissant 1.0 metadata describing labels.csv (with its sha256), valid for mlcroissant."""
    def field(col, dtype, desc):
        return {"@type": "cr:Field", "@id": f"labels/{col}", "name": col, "description": desc,
                "dataType": dtype, "source": {"fileObject": {"@id": "labels.csv"}, "extract": {"column": col}}}

    fields = [field("block_id", "sc:Text", "street block id (also in blocks.gpkg and the image names)")]
    fields += [field(c.key, "sc:Float", f"fraction of LCZ {c.code} ({c.name}) in the block") for c in CLASSES]
    return {
        "@context": {
            "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
            "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
            "dct": "http://purl.org/dc/terms/", "citeAs": "cr:citeAs", "column": "cr:column",
            "conformsTo": "dct:conformsTo", "data": {"@id": "cr:data", "@type": "@json"},
            "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "examples": {"@id": "cr:examples", "@type": "@json"},
            "extract": "cr:extract", "field": "cr:field", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet",
            "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
            "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField",
            "path": "cr:path", "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex",
            "repeated": "cr:repeated", "replace": "cr:replace", "separator": "cr:separator", "source": "cr:source",
            "subField": "cr:subField", "transform": "cr:transform",
        },
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name,
        "description": description,
        "license": license_url,
        "url": url,
        "version": version,
        "datePublished": date_published,
        "citeAs": cite_as,
        "distribution": [{
            "@type": "cr:FileObject", "@id": "labels.csv", "name": "labels.csv", "contentUrl": "labels.csv",
            "encodingFormat": "text/csv", "sha256": sha256_file(pkg / "labels.csv"),
        }],
        "recordSet": [{"@type": "cr:RecordSet", "@id": "labels", "name": "labels",
                       "description": "LCZ fractions per street block", "field": fields}],
    }


def is_inside_package(path: Path) -> Path | None:
    """The package folder that contains `path` (a folder with SHA256SUMS and labels.csv), if any."""
    for parent in [path, *path.parents]:
        if (parent / "SHA256SUMS").is_file() and (parent / "labels.csv").is_file():
            return parent
    return None


@contextmanager
def atomic_package_dir(out: Path) -> Iterator[Path]:
    """Yield a fresh hidden folder beside `out`; on success rename it to `out` (which must not exist).

    Left-over partial folders of earlier interrupted runs for the same target are removed first.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f"{PARTIAL_PREFIX}{out.name}.*{PARTIAL_SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f"{PARTIAL_PREFIX}{out.name}.{os.getpid()}{PARTIAL_SUFFIX}"
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            raise FileExistsError(f"{out} appeared while the package was being written; nothing replaced")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def finish_package(pkg: Path) -> Path:
    """Write SHA256SUMS over everything else in the package."""
    return write_sha256sums(pkg)


def zip_package(pkg: Path) -> Path:
    """`<pkg>.zip` beside the folder (atomically), files in sorted order with fixed timestamps."""
    pkg = Path(pkg)
    target = pkg.with_name(pkg.name + ".zip")
    tmp = pkg.with_name(f"{PARTIAL_PREFIX}{pkg.name}.zip{PARTIAL_SUFFIX}")
    files = sorted(p for p in pkg.rglob("*") if p.is_file())
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            info = zipfile.ZipInfo(f"{pkg.name}/{f.relative_to(pkg).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, f.read_bytes())
    os.replace(tmp, target)
    return target


def json_text(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def cut_and_save_chips(raster_path: str, items: list[tuple[str, bytes]], out_dir: str, size: int,
                       max_local: int, polygon_crs: str = "EPSG:4326") -> list[tuple[str, int]]:
    """Cut and write the chips of (block_id, polygon WKB) items from one raster.

    Returns (block_id, number of local patches written); 0 = no imagery inside the outline
    (nothing written). A worker function: plain arguments, no shared state.
    """
    import rasterio
    import shapely

    from .chips import cut_block_chips, save_chips

    done = []
    with rasterio.open(raster_path) as ds:
        for block_id, wkb in items:
            try:
                chips = cut_block_chips(ds, shapely.from_wkb(wkb), polygon_crs=polygon_crs, size=size,
                                        max_local=max_local)
            except ValueError:
                chips = None
            if chips is None or not chips.local:
                done.append((block_id, 0))
                continue
            save_chips(chips, out_dir, block_id)
            done.append((block_id, chips.n_local))
    return done


def write_chips(jobs: dict[str, list[tuple[str, bytes]]], out_dir: Path, *, size: int = 256, max_local: int = 8,
                workers: int | None = None, progress: bool = True, chunk: int = 16) -> dict[str, int]:
    """Chips for many blocks: jobs = {raster path: [(block_id, polygon WKB in EPSG:4326), ...]}.

    PNG encoding dominates the cost, so blocks are spread over `workers` processes (default: the
    CPU count) in chunks; each worker opens the raster itself and reads only its blocks' windows.
    Output files do not depend on the number of workers. Returns {block_id: number of local patches}.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    from tqdm import tqdm

    tasks = [(path, items[i:i + chunk]) for path, items in sorted(jobs.items())
             for i in range(0, len(items), chunk)]
    total = sum(len(items) for _, items in tasks)
    workers = workers or os.cpu_count() or 1
    result: dict[str, int] = {}
    with tqdm(total=total, desc="chips", unit="block", disable=not progress) as bar:
        if workers <= 1 or len(tasks) <= 1:
            for path, items in tasks:
                result.update(cut_and_save_chips(path, items, str(out_dir), size, max_local))
                bar.update(len(items))
            return result
        ctx = multiprocessing.get_context("spawn")  # never fork a process holding DB connections
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(cut_and_save_chips, path, items, str(out_dir), size, max_local): len(items)
                       for path, items in tasks}
            for fut in as_completed(futures):
                result.update(fut.result())
                bar.update(futures[fut])
    return result
