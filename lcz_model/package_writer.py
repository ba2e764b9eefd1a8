"""Writing a dataset package (the layout in design/dataset-package.md), without Django.

:func:`write_package` is the one writer: the app's ``export_dataset``, the synthetic-package
fixture and the active-learning simulation's subset packages all go through it, so every
package has the same files, formats and atomicity:

- fractions are written from integer per-mille as exact decimals ("0.35", "1", "0"), so a
  package is byte-identical for the same labels on any platform;
- the package is built in a hidden temporary folder beside the target and renamed into place
  (:func:`lcz_model.atomic.atomic_dir`): an interrupted write leaves no half package under the
  final name;
- SHA256SUMS covers every file (`sha256sum -c` passes); it is written here, the reader
  (:mod:`lcz_model.package`) only verifies it.
"""
from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .atomic import atomic_dir, atomic_file, atomic_write_text
from .classes import CLASSES, KEYS
from .package import sha256_file, sha256sums_text

PERMILLE = 1000
# float rows are first rounded to this many units of the row total (nine decimals), so float
# noise far below any real difference never decides a tie (see fractions_to_permille)
_FLOAT_UNITS = 10 ** 9

ANNOTATION_COLUMNS = ["block_id", "annotator", "round", *KEYS, "confidence", "flags", "submitted_at"]


def format_fraction(per_mille: int) -> str:
    """Per-mille integer -> exact decimal fraction text: 1000 -> "1", 350 -> "0.35", 0 -> "0"."""
    pm = int(per_mille)
    if not 0 <= pm <= PERMILLE:
        raise ValueError(f"per-mille out of range: {pm}")
    return "1" if pm == PERMILLE else ("0" if pm == 0 else f"0.{pm:03d}".rstrip("0"))


def fractions_to_permille(weights) -> np.ndarray:
    """Rows of non-negative weights -> per-mille integers summing to exactly 1000, by largest
    remainder (Hamilton): every class gets the floor of its share of 1000, and the leftover units
    go one each to the classes with the largest remainders, ties to the LOWER class index.

    The one rounding rule of per-mille splits: consensus splits (annotator.agreement, given the
    raters' per-mille sums), model predictions, generated ground truth and packages read back.
    Remainders are compared exactly: integer rows as integer numerators; float rows (fractions)
    after rounding each share to 1e-9 of the row, so a mathematical tie (e.g. thirds) stays a
    tie whatever the float noise.
    """
    w = np.atleast_2d(np.asarray(weights))
    if w.ndim != 2:
        raise ValueError(f"weights must be one row or a 2-D array of rows; got shape {w.shape}")
    if np.issubdtype(w.dtype, np.integer):
        numer = w.astype(np.int64)
        if (numer < 0).any():
            raise ValueError("integer weights must not be negative")
        denom = numer.sum(axis=1)
    else:
        w = w.astype(np.float64)
        if not np.isfinite(w).all():
            raise ValueError("weights must be finite")
        w = np.clip(w, 0, None)
        row = w.sum(axis=1, keepdims=True)
        numer = np.rint(w / np.where(row > 0, row, 1.0) * _FLOAT_UNITS).astype(np.int64)
        denom = np.where(row[:, 0] > 0, _FLOAT_UNITS, 0)
    if (denom <= 0).any():
        raise ValueError(f"row {int(np.flatnonzero(denom <= 0)[0])} has no positive weight")
    scaled = numer * PERMILLE
    out = scaled // denom[:, None]
    rem = scaled % denom[:, None]
    deficit = PERMILLE - out.sum(axis=1)
    order = np.argsort(-rem, axis=1, kind="stable")     # stable: lower index first on ties
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(w.shape[1]), order.shape), axis=1)
    return out + (rank < deficit[:, None])


def labels_csv_text(block_ids: Sequence[str], permille: np.ndarray) -> str:
    """labels.csv: block_id, then the 17 class fractions in lcz_model.classes order."""
    permille = np.asarray(permille)
    if permille.shape != (len(block_ids), len(KEYS)):
        raise ValueError(f"permille must be ({len(block_ids)}, {len(KEYS)}); got {permille.shape}")
    bad = np.flatnonzero(permille.sum(axis=1) != PERMILLE)
    if len(bad):
        raise ValueError(f"splits of {[block_ids[i] for i in bad[:5]]} do not sum to 1000 per-mille")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["block_id", *KEYS])
    for bid, row in zip(block_ids, permille):
        w.writerow([bid, *(format_fraction(v) for v in row)])
    return buf.getvalue()


def annotations_csv_text(rows: Iterable[tuple]) -> str:
    """annotations.csv from rows (block_id, annotator pseudonym, round, 17 per-mille, confidence
    or None, flags (iterable), submitted_at text), in the order given."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ANNOTATION_COLUMNS)
    for bid, who, rnd, permille, conf, flags, at in rows:
        w.writerow([bid, who, rnd, *(format_fraction(v) for v in permille), "" if conf is None else conf,
                    ";".join(sorted(flags or [])), at or ""])
    return buf.getvalue()


def json_text(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_sha256sums(root) -> Path:
    """Write ``root/SHA256SUMS`` (``sha256sum -c`` format, sorted paths) over every other file."""
    return atomic_write_text(Path(root) / "SHA256SUMS", sha256sums_text(root))


def croissant_metadata(pkg: Path, *, name: str, description: str, license_url: str | Sequence[str | dict],
                       url: str, version: str, date_published: str, cite_as: str,
                       keywords: Sequence[str] = ()) -> dict:
    """Croissant 1.0 metadata describing labels.csv (with its sha256), valid for mlcroissant.

    ``license_url``: one licence URL, or every licence of the package (Croissant's `license` takes
    many: URLs, texts, or schema.org CreativeWorks that say what each covers)."""
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
        "license": license_url if isinstance(license_url, str) else list(license_url),
        **({"keywords": list(keywords)} if keywords else {}),
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


# --------------------------------------------------------------------------------------------
# the writer


@dataclass
class PackageContents:
    """Everything of a package but its images; ``None`` leaves that file out.

    ``blocks``: a GeoDataFrame with one row per block in ``block_ids`` order, holding the
    geometry and the source's own columns (city, scene_id, area_m2, n_annotations, agreement;
    optionally source_name and licence, the geometry's provenance);
    the writer adds block_id, crs, split, pure, dominant and the 17 fractions.
    ``annotations``: rows for :func:`annotations_csv_text`.
    ``croissant``: the keyword arguments of :func:`croissant_metadata` (name, description, ...).
    """
    block_ids: Sequence[str]
    permille: np.ndarray                         # (N, 17) per-mille, rows sum to 1000
    splits: Mapping[str, Sequence[str]]          # {"train": [...], "test": [...]}
    readme: str
    licence: str | None = None
    citation: str | None = None
    blocks: Any = None
    annotations: Iterable[tuple] | None = None
    agreement: dict | None = None
    croissant: dict | None = None


BLOCK_COLUMNS = ("city", "scene_id", "area_m2", "n_annotations", "agreement")
# written when the source has them: where each block's geometry comes from, and its licence
SOURCE_COLUMNS = ("source_name", "licence")


def write_package(out, contents: PackageContents | Callable[[Path], PackageContents], *,
                  replace: bool = False) -> Path:
    """Write a dataset package to ``out`` atomically and return its path.

    ``contents`` is a :class:`PackageContents`, or a function that is given the package's
    temporary folder, writes the images there (e.g. with :func:`write_chips`) and returns the
    contents (which may depend on the images written). An existing ``out`` is refused unless
    ``replace``. SHA256SUMS is written last, over every file.
    """
    with atomic_dir(out, replace=replace) as pkg:
        c = contents(pkg) if callable(contents) else contents
        ids = list(c.block_ids)
        permille = np.asarray(c.permille, dtype=np.int64)
        _write_text(pkg / "labels.csv", labels_csv_text(ids, permille))
        for name, members in c.splits.items():
            _write_text(pkg / "splits" / f"{name}.txt", "".join(f"{b}\n" for b in members))
        if c.blocks is not None:
            split_of = {b: name for name, members in c.splits.items() for b in members}
            _write_blocks_gpkg(pkg / "blocks.gpkg", c.blocks, ids, permille, split_of)
        if c.annotations is not None:
            _write_text(pkg / "annotations.csv", annotations_csv_text(c.annotations))
        if c.agreement is not None:
            _write_text(pkg / "agreement.json", json_text(c.agreement))
        if c.licence is not None:
            _write_text(pkg / "LICENSE", c.licence)
        if c.citation is not None:
            _write_text(pkg / "CITATION.cff", c.citation)
        _write_text(pkg / "README.md", c.readme)
        if c.croissant is not None:
            _write_text(pkg / "croissant.json", json_text(croissant_metadata(pkg, **c.croissant)))
        write_sha256sums(pkg)
    return Path(out).resolve()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_blocks_gpkg(path: Path, blocks, ids: list[str], permille: np.ndarray, split_of: dict) -> None:
    import geopandas as gpd

    if len(blocks) != len(ids):
        raise ValueError(f"blocks has {len(blocks)} rows for {len(ids)} labelled blocks")
    missing = [c for c in BLOCK_COLUMNS if c not in blocks.columns]
    if missing:
        raise ValueError(f"blocks lacks the columns {missing}")
    crs = blocks.crs
    gdf = gpd.GeoDataFrame({
        "block_id": ids,
        "city": blocks["city"].to_numpy(),
        "scene_id": blocks["scene_id"].to_numpy(),
        "crs": crs.to_string() if crs is not None else "",
        "split": [split_of.get(b, "") for b in ids],
        "area_m2": blocks["area_m2"].to_numpy(),
        "pure": permille.max(axis=1) == PERMILLE,
        "dominant": [KEYS[i] for i in permille.argmax(axis=1)],
        "n_annotations": blocks["n_annotations"].to_numpy(),
        "agreement": blocks["agreement"].to_numpy(),
        **{c: blocks[c].to_numpy() for c in SOURCE_COLUMNS if c in blocks.columns},
        **{k: permille[:, j] / float(PERMILLE) for j, k in enumerate(KEYS)},
    }, geometry=blocks.geometry.to_numpy(), crs=crs)
    gdf.to_file(path, layer="blocks", driver="GPKG")


def zip_package(pkg: Path) -> Path:
    """`<pkg>.zip` beside the folder (atomically), files in sorted order with fixed timestamps."""
    pkg = Path(pkg)
    target = pkg.with_name(pkg.name + ".zip")
    files = sorted(p for p in pkg.rglob("*") if p.is_file())
    with atomic_file(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            info = zipfile.ZipInfo(f"{pkg.name}/{f.relative_to(pkg).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, f.read_bytes())
    return target


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
