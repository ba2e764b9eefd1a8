"""`import_dataset`: read a dataset package back into a campaign (blocks with their final labels).

A service home (see annotator.services). Writes: the package's new blocks (final and consensus
split, the package split (train, val or test; StreetBlock.split), the scene by
annotator.ingest.scenes, the geometry's source_name and licence when blocks.gpkg records them) and one audit event, in one transaction.

A package may come from anyone, so it is checked in full before the database is touched, in an
order that never opens what should not be opened: the folder's entries first (symbolic links,
named pipes, devices and sockets are refused before any file is read: a pipe would block),
then SHA256SUMS (every path inside the package), then labels.csv, splits/ and the JSON files,
then the checksums, then blocks.gpkg. Messages name the file and the line, never its content.
Then one transaction writes the blocks: a refusal changes nothing.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from django.contrib.gis.geos import GEOSGeometry
from django.db import DataError, IntegrityError, transaction
from shapely.errors import GEOSException

from annotator import selectors, tile_stamps
from annotator.ingest.blocks import block_key
from annotator.ingest.scenes import SceneChooser
from annotator.models import AuditEvent, Campaign, StreetBlock
from lcz_model.classes import KEYS
from lcz_model.package import SUM_TOLERANCE, BlockRecord, Package, PackageError, read_package
from lcz_model.package_writer import SOURCE_COLUMNS, fractions_to_permille

SPLIT_FILES = ("splits/train.txt", "splits/test.txt")
OPTIONAL_SPLIT_FILES = ("splits/val.txt",)  # packages before the validation split have none
JSON_FILES = ("croissant.json", "agreement.json")
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")  # as lcz_model.package.verify_checksums


@dataclass
class ImportReport:
    created: int
    existing: int


@dataclass
class _Row:
    record: BlockRecord
    geom: GEOSGeometry
    area_m2: float
    agreement_tv: float | None
    source_name: str = ""   # the geometry's source and licence, when blocks.gpkg records them
    licence: str = ""


def import_dataset(campaign: Campaign, path: str | Path, *, actor=None) -> ImportReport:
    """Blocks of the package become the campaign's blocks with the package's labels as their
    final (and consensus) split; blocks already there (same id) are left as they are.

    Raises PackageError (what is wrong, where, what to do) and changes nothing on bad input."""
    root = Path(path)
    try:
        files = _check_entries(root)
        _check_sums(root, files)
        line_of = _check_labels(root, files)
        _check_splits(root, files, line_of)
        _check_json(root, files)
        package = read_package(root, verify=True, require_images=False)
        rows = _block_rows(package, line_of)
    except OSError as exc:
        raise PackageError(f"{exc.filename or root}: cannot be read ({exc.strerror or type(exc).__name__}); "
                           "check that the package is complete and readable.") from None
    try:
        return _store(campaign, rows, path, actor)
    except IntegrityError:
        raise PackageError("another import wrote some of these blocks at the same time; run the "
                           "command again.") from None
    except DataError:
        raise PackageError("the database refused a value of the package (too long or out of range); "
                           "check labels.csv and blocks.gpkg.") from None


def _store(campaign: Campaign, rows: list[_Row], path, actor) -> ImportReport:
    scenes = SceneChooser(selectors.scenes_of(campaign))
    with transaction.atomic():
        known = selectors.existing_block_keys(campaign, [r.record.block_id for r in rows])
        new = []
        for r in rows:
            b = r.record
            if b.block_id in known:
                continue
            permille = [int(v) for v in fractions_to_permille(b.fractions)[0]]
            new.append(StreetBlock(
                campaign=campaign, block_key=b.block_id or block_key(r.geom), geom=r.geom, area_m2=r.area_m2,
                source=StreetBlock.Source.POLYGONS, scene=scenes.scene_for(r.geom), status=StreetBlock.Status.COMPLETE,
                consensus=permille, final_permille=permille, agreement_tv=r.agreement_tv, split=b.split or "",
                source_name=r.source_name, licence=r.licence,
            ))
        StreetBlock.objects.bulk_create(new, batch_size=2000)
        tile_stamps.bump(campaign.pk)
        AuditEvent.objects.create(actor=actor, action="import_dataset", campaign=campaign,
                                  after={"package": str(path), "created": len(new), "existing": len(known)})
    return ImportReport(created=len(new), existing=len(known))


# --------------------------------------------------------------------------------------------
# the folder and its entries (nothing is opened here)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return "special file"


def _check_entries(root: Path) -> set[str]:
    """The package's regular files (relative POSIX paths); refuses anything else inside it."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise PackageError(f"dataset package {root} does not exist.") from None
    if stat.S_ISREG(st.st_mode):
        if zipfile.is_zipfile(root):
            raise PackageError(f"{root} is a .zip archive; unzip it (`unzip {root.name}`) and pass the "
                               "package folder inside.")
        raise PackageError(f"{root} is a file and not a zip archive; pass the package folder that "
                           "export_dataset wrote.")
    if not stat.S_ISDIR(st.st_mode):
        raise PackageError(f"{root} is not a folder (it is a {_kind(st.st_mode)}); pass the package folder.")
    files, refused, todo = set(), [], [""]
    while todo:
        rel_dir = todo.pop()
        with os.scandir(root / rel_dir) as it:
            for entry in it:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    todo.append(rel)
                elif stat.S_ISREG(mode):
                    files.add(rel)
                else:
                    refused.append(f"{rel} is a {_kind(mode)}")
    if refused:
        refused.sort()
        more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
        raise PackageError(f"package {root} holds entries that are not regular files: {'; '.join(refused[:5])}"
                           f"{more}. A package holds only regular files and folders: replace a symbolic "
                           "link by a copy of its file, remove the rest. Nothing was read.")
    return files


# --------------------------------------------------------------------------------------------
# the text files, checked without ever quoting them


def _text(root: Path, rel: str) -> str:
    data = (root / rel).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PackageError(f"{root / rel} line {line} is not UTF-8 text; save the file as UTF-8 "
                           "(or export the package again).") from None


def _require(root: Path, files: set[str], rel: str, what: str) -> None:
    if rel not in files:
        raise PackageError(f"{root / rel} is missing ({what}).")


def _check_sums(root: Path, files: set[str]) -> None:
    """Every SHA256SUMS line is well formed and lists a regular file inside the package."""
    if "SHA256SUMS" not in files:
        raise PackageError(f"{root / 'SHA256SUMS'} is missing; cannot verify the package. Export it "
                           "again, or write SHA256SUMS with `sha256sum` over every other file.")
    where = root / "SHA256SUMS"
    for n, line in enumerate(_text(root, "SHA256SUMS").splitlines(), 1):
        if not line.strip():
            continue
        m = _SUM_LINE.match(line)
        if not m:
            raise PackageError(f"{where} line {n} is not '<64 hex digits>  <path>'; fix or remove that "
                               "line (or export the package again).")
        rel = PurePosixPath(m.group(2))
        if rel.is_absolute() or ".." in rel.parts or "\0" in m.group(2):
            raise PackageError(f"{where} line {n} names a path outside the package (absolute, or with "
                               "'..'); a package lists only its own files, by relative path. Nothing was read.")
        if rel.as_posix() not in files:
            raise PackageError(f"{where} line {n} lists a file that is not in the package (missing, or "
                               "not a regular file); restore the file or remove that line.")


def _check_labels(root: Path, files: set[str]) -> dict[str, int]:
    """labels.csv as lcz_model.package reads it; returns block_id -> line number."""
    _require(root, files, "labels.csv", f"labels.csv: block_id, then {KEYS[0]}..{KEYS[-1]} as fractions")
    where = root / "labels.csv"
    reader = csv.reader(io.StringIO(_text(root, "labels.csv"), newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise PackageError(f"{where} is empty; it needs a header and one line per block.") from None
    except csv.Error as exc:
        raise PackageError(f"{where} line {reader.line_num} is not valid CSV ({exc}).") from None
    _check_header(where, header)
    column = {k: header.index(k) for k in KEYS}
    max_len = StreetBlock._meta.get_field("block_key").max_length
    line_of: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise PackageError(f"{where} line {reader.line_num} is not valid CSV ({exc}).") from None
        line = reader.line_num
        at = f"{where} line {line}"
        if not row or all(not c.strip() for c in row):
            raise PackageError(f"{at} is empty; remove it.")
        if len(row) != len(header):
            raise PackageError(f"{at} has {len(row)} values; the header has {len(header)}.")
        bid = row[0].strip()
        if not bid:
            raise PackageError(f"{at} has an empty block_id.")
        if len(bid) > max_len:
            raise PackageError(f"{at}: the block_id is {len(bid)} characters long; the database keeps at most "
                               f"{max_len}. Shorten it (alike in labels.csv, splits/ and blocks.gpkg).")
        if bid in line_of:
            raise PackageError(f"{at} repeats the block_id of line {line_of[bid]}; each block appears once.")
        _check_fractions(at, [row[column[k]] for k in KEYS])
        line_of[bid] = line
    if not line_of:
        raise PackageError(f"{where} has no blocks.")
    return line_of


def _check_header(where: Path, header: list[str]) -> None:
    if not header or header[0] != "block_id":
        raise PackageError(f"{where} line 1: the first column must be named block_id.")
    cols = header[1:]
    unknown = [str(i + 2) for i, c in enumerate(cols) if c not in KEYS]
    missing = [k for k in KEYS if k not in cols]
    twice = sorted({c for c in cols if c in KEYS and cols.count(c) > 1})
    if unknown or missing or twice:
        found = [f"unknown column(s) number {', '.join(unknown)}" if unknown else "",
                 f"missing {', '.join(missing)}" if missing else "",
                 f"{', '.join(twice)} twice" if twice else ""]
        raise PackageError(f"{where} line 1 (the header): {'; '.join(f for f in found if f)}. Expected "
                           f"block_id, then {', '.join(KEYS)}.")


def _check_fractions(at: str, texts: list[str]) -> None:
    values = []
    for key, text in zip(KEYS, texts):
        try:
            v = float(text)
        except ValueError:
            raise PackageError(f"{at}: {key} is not a number.") from None
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise PackageError(f"{at}: {key} must be a fraction in [0, 1].")
        values.append(v)
    total = np.array(values).sum()
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise PackageError(f"{at}: the fractions sum to {total:.10g}, not 1 (tolerance {SUM_TOLERANCE}).")


def _check_splits(root: Path, files: set[str], line_of: dict[str, int]) -> None:
    """train and test (required) and val (optional) name blocks of labels.csv, each in one split once."""
    split_of: dict[str, tuple[str, int]] = {}
    for rel in SPLIT_FILES + tuple(r for r in OPTIONAL_SPLIT_FILES if r in files):
        _require(root, files, rel, "one block_id per line")
        for n, text in enumerate(_text(root, rel).splitlines(), 1):
            bid = text.strip()
            if not bid:
                continue
            at = f"{root / rel} line {n}"
            if bid not in line_of:
                raise PackageError(f"{at} names a block that is not in labels.csv.")
            if bid in split_of:
                other, m = split_of[bid]
                raise PackageError(f"{at} repeats the block of {other} line {m}; splits are disjoint and "
                                   "list each block once.")
            split_of[bid] = (rel, n)


def _check_json(root: Path, files: set[str]) -> None:
    for rel in JSON_FILES:
        if rel in files:
            try:
                json.loads(_text(root, rel))
            except json.JSONDecodeError as exc:
                raise PackageError(f"{root / rel} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                                   f"{exc.msg}); export the package again.") from None


# --------------------------------------------------------------------------------------------
# blocks.gpkg


def _block_rows(package: Package, line_of: dict[str, int]) -> list[_Row]:
    """The geometry, area and agreement of every labelled block, checked."""
    where = package.path / "blocks.gpkg"
    try:
        gdf = package.read_blocks_gpkg()
    except PackageError:
        raise
    except (RuntimeError, ValueError, GEOSException) as exc:  # pyogrio's errors are RuntimeErrors
        raise PackageError(f"{where} cannot be read as a GeoPackage ({type(exc).__name__}); export the "
                           "package again.") from None
    if "block_id" not in gdf.columns:
        raise PackageError(f"{where} has no block_id column.")
    if gdf.crs is None:
        raise PackageError(f"{where} has no CRS; blocks.gpkg must record the CRS of its geometry.")
    try:
        gdf = gdf.to_crs("EPSG:4326")
    except Exception as exc:  # pyproj raises several kinds for a CRS it cannot use
        raise PackageError(f"{where}: its CRS cannot be transformed to EPSG:4326 "
                           f"({type(exc).__name__}).") from None
    index_of: dict[str, int] = {}
    for i, bid in enumerate(gdf["block_id"].astype(str)):
        if bid in line_of and bid in index_of:
            raise PackageError(f"{where} has more than one row for the block of labels.csv line "
                               f"{line_of[bid]}; each block has one row.")
        index_of.setdefault(bid, i)
    missing = [line_of[b.block_id] for b in package.blocks if b.block_id not in index_of]
    if missing:
        raise PackageError(f"{where} has no row for {len(missing)} labelled block(s), e.g. the block of "
                           f"labels.csv line {min(missing)}.")
    rows = []
    for b in package.blocks:
        i, at = index_of[b.block_id], f"{where}, the block of labels.csv line {line_of[b.block_id]}"
        rows.append(_Row(
            record=b, geom=_block_geom(at, gdf.geometry.iloc[i]),
            area_m2=_number(at, "area_m2", gdf["area_m2"].iloc[i], 0.0) if "area_m2" in gdf.columns else 0.0,
            agreement_tv=(_number(at, "agreement", gdf["agreement"].iloc[i], None)
                          if "agreement" in gdf.columns else None),
            **{c: _text_cell(at, c, gdf[c].iloc[i]) for c in SOURCE_COLUMNS if c in gdf.columns},
        ))
    return rows


def _block_geom(at: str, geom) -> GEOSGeometry:
    if geom is None or geom.is_empty:
        raise PackageError(f"{at}: has no geometry.")
    if geom.geom_type != "Polygon":
        raise PackageError(f"{at}: is a {geom.geom_type}; a block is one polygon.")
    x0, y0, x1, y1 = geom.bounds
    if not all(map(math.isfinite, (x0, y0, x1, y1))) or x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
        raise PackageError(f"{at}: lies outside valid latitude/longitude; is the CRS of blocks.gpkg right?")
    return GEOSGeometry(geom.wkt, srid=4326)


def _text_cell(at: str, column: str, value) -> str:
    """A short text from a blocks.gpkg column (the geometry's source_name, licence); empty cells give ""."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, str):
        raise PackageError(f"{at}: {column} is not text.")
    limit = StreetBlock._meta.get_field(column).max_length
    if len(value.strip()) > limit:
        raise PackageError(f"{at}: {column} is {len(value.strip())} characters long; the database keeps at most "
                           f"{limit}. Shorten it in blocks.gpkg.")
    return value.strip()


def _number(at: str, column: str, value, missing):
    """A finite, non-negative number from a blocks.gpkg column; empty cells give `missing`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PackageError(f"{at}: {column} is not a number.") from None
    if math.isnan(v):
        return missing
    if not math.isfinite(v) or v < 0:
        raise PackageError(f"{at}: {column} must be a finite number >= 0.")
    return v
