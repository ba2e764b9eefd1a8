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
