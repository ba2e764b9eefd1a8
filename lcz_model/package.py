"""Read a dataset package (the contract in ``design/dataset-package.md``).

The model trains from a package, never from the app's database. This reader needs only the
standard library, numpy and (for chips) Pillow; ``blocks.gpkg`` is not needed to train (its
non-geometry columns are repeated in labels.csv / derivable) and is only opened on request.

    pkg = read_package("var/packages/synthetic-v1")
    pkg.split("train")       -> list[BlockRecord]   ("train", "val" or "test")
    pkg.fractions("test")    -> (N, 17) float64 in lcz_model.classes order

Splits: splits/train.txt and splits/test.txt are required; splits/val.txt (models choose epochs
and settings on it, and report test once) is optional, so packages written before it existed
still load: :meth:`Package.carve_val` then takes a seeded validation split from train in memory.
Optional ``images/local_boxes.csv`` (block_id, k, y0, x0, y1, x1) gives each local patch's box
in the block's global image, as fractions of its side (:func:`local_boxes`); MSU-Net's DCAF
uses it to place local tokens on the global token grid.

Errors say which file and which row or block is wrong, and what is expected.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .classes import CLASSES, KEYS, N_CLASSES

__all__ = [
    "BlockRecord", "Package", "PackageError", "read_package", "package_checksum",
    "verify_checksums", "sha256_file", "sha256sums_text", "SUM_TOLERANCE", "SPLITS",
    "LOCAL_BOXES_FILE", "local_boxes", "write_local_boxes",
]

SUM_TOLERANCE = 1e-9
SPLITS = ("train", "val", "test")
LOCAL_BOXES_FILE = "images/local_boxes.csv"
_LOCAL_RE = re.compile(r"^(?P<bid>.+)_(?P<k>\d+)\.png$")


class PackageError(ValueError):
    """The package at hand does not follow dataset-package.md (message says what and where)."""


@dataclass
class BlockRecord:
    block_id: str
    split: str | None              # "train", "val", "test" or None (in labels.csv, in no split file)
    fractions: np.ndarray          # (17,) float64, sums to 1
    pure: bool                     # one class has abundance 1
    dominant: int                  # index of the largest fraction (lcz_model.classes order)
    global_path: Path
    mask_path: Path
    local_paths: list[Path] = field(default_factory=list)
    # (y0, x0, y1, x1) of each local patch in the global image (fractions of its side), in
    # local_paths order; None where the package does not record them (LOCAL_BOXES_FILE)
    local_boxes: list[tuple[float, float, float, float]] | None = None

    def load_chips(self):
        """The block's images as a :class:`lcz_model.chips.BlockChips`."""
        from .chips import load_chips

        return load_chips(self.global_path, self.mask_path, self.local_paths, self.local_boxes)


@dataclass
class Package:
    path: Path
    blocks: list[BlockRecord]
    meta: dict

    def __len__(self) -> int:
        return len(self.blocks)

    def split(self, name: str | None) -> list[BlockRecord]:
        """Blocks of one split ("train"/"val"/"test"); None or "all" gives every block."""
        if name in (None, "all"):
            return list(self.blocks)
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS} or 'all'")
        return [b for b in self.blocks if b.split == name]

    def fractions(self, split: str | None = None) -> np.ndarray:
        blocks = self.split(split)
        if not blocks:
            return np.zeros((0, N_CLASSES))
        return np.stack([b.fractions for b in blocks])

    def by_id(self) -> dict[str, BlockRecord]:
        return {b.block_id: b for b in self.blocks}

    def carve_val(self, fraction: float, seed: int) -> list[str]:
        """For a package without splits/val.txt: move a seeded ``fraction`` of the train blocks
        (rounded, at least 1, leaving at least 1 in train) to "val", in memory only (the files
        and the package checksum are unchanged). Returns the moved ids (sorted); none when the
        package already has a val split, ``fraction`` is 0 or train holds under 2 blocks."""
        train = [b for b in self.blocks if b.split == "train"]
        if self.meta["counts"].get("val") or fraction <= 0 or len(train) < 2:
            return []
        n = min(max(1, int(round(len(train) * fraction))), len(train) - 1)
        # a generator of its own (seed, purpose): the same val for the same package and seed
        rng = np.random.default_rng([int(seed), 0x7A1])
        moved = [train[i] for i in sorted(rng.permutation(len(train))[:n])]
        for b in moved:
            b.split = "val"
        self.meta["counts"] = {s: sum(1 for b in self.blocks if b.split == s) for s in SPLITS}
        self.meta["val_carved_from_train"] = {"n": len(moved), "fraction": fraction, "seed": int(seed)}
        return sorted(b.block_id for b in moved)

    def read_blocks_gpkg(self):
        """blocks.gpkg as a GeoDataFrame (imports geopandas on demand)."""
        import geopandas as gpd

        p = self.path / "blocks.gpkg"
        if not p.exists():
            raise PackageError(f"{p} is missing")
        return gpd.read_file(p)


# --------------------------------------------------------------------------------------------
# checksums


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(chunk), b""):
            h.update(b)
    return h.hexdigest()


def _package_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            rel = Path(dirpath, fn).relative_to(root).as_posix()
            if rel != "SHA256SUMS":
                out.append(rel)
    return sorted(out)


def sha256sums_text(root) -> str:
    """The SHA256SUMS text for the files under ``root`` (``sha256sum -c`` format, sorted
    paths, every file but SHA256SUMS itself). The package writer writes it; the reader only
    compares against it."""
    root = Path(root)
    return "".join(f"{sha256_file(root / rel)}  {rel}\n" for rel in _package_files(root))


def verify_checksums(path) -> None:
    """Check every line of SHA256SUMS (like ``sha256sum -c``); also that no file is unlisted.

    Raises PackageError listing the first few problems."""
    root = Path(path)
    sums = root / "SHA256SUMS"
    if not sums.exists():
        raise PackageError(f"{sums} is missing; cannot verify the package")
    problems, listed = [], set()
    for n, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
        if not m:
            problems.append(f"SHA256SUMS line {n} is not '<sha256>  <path>': {line[:80]!r}")
            continue
        digest, rel = m.group(1).lower(), m.group(2)
        listed.add(rel)
        f = root / rel
        if not f.exists():
            problems.append(f"{rel}: listed in SHA256SUMS but missing")
        elif sha256_file(f) != digest:
            problems.append(f"{rel}: checksum differs from SHA256SUMS (file changed or corrupt)")
    unlisted = [r for r in _package_files(root) if r not in listed]
    problems += [f"{r}: present but not listed in SHA256SUMS" for r in unlisted]
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise PackageError(f"package {root} fails verification: " + "; ".join(problems[:10])
                           + more)


def package_checksum(path) -> str:
    """Identity of a package for the model card: sha256 of its SHA256SUMS file.

    A package without SHA256SUMS (hand-made) gets the sha256 of the SHA256SUMS text the
    writer would write for it (:func:`sha256sums_text`), so the value is still content-derived."""
    root = Path(path)
    sums = root / "SHA256SUMS"
    if sums.exists():
        return sha256_file(sums)
    return hashlib.sha256(sha256sums_text(root).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# reading


def _read_labels(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.exists():
        raise PackageError(f"{path} is missing (labels.csv: block_id, then "
                           f"{KEYS[0]}..{KEYS[-1]} as fractions)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise PackageError(f"{path} is empty") from None
        rows = list(reader)
    if not header or header[0] != "block_id":
        raise PackageError(f"{path}: first column must be 'block_id', found {header[:1]}")
    cols = header[1:]
    unknown = [c for c in cols if c not in KEYS]
    missing = [k for k in KEYS if k not in cols]
    if unknown or missing:
        msg = []
        if unknown:
            msg.append(f"unknown columns {unknown}")
        if missing:
            msg.append(f"missing columns {missing}")
        raise PackageError(f"{path}: {'; '.join(msg)}; expected block_id then "
                           f"{', '.join(KEYS)}")
    if len(set(cols)) != len(cols):
        raise PackageError(f"{path}: duplicated column names")
    order = [cols.index(k) for k in KEYS]
    ids, fr = [], np.zeros((len(rows), N_CLASSES))
    seen = set()
    for i, row in enumerate(rows):
        line = i + 2
        if not row or all(not c.strip() for c in row):
            raise PackageError(f"{path} line {line}: empty row")
        if len(row) != len(header):
            raise PackageError(f"{path} line {line}: {len(row)} values, header has "
                               f"{len(header)}")
        bid = row[0].strip()
        if not bid:
            raise PackageError(f"{path} line {line}: empty block_id")
        if bid in seen:
            raise PackageError(f"{path} line {line}: block_id {bid!r} appears twice")
        seen.add(bid)
        try:
            vals = np.array([float(row[1 + j]) for j in order])
        except ValueError:
            raise PackageError(f"{path} line {line} (block {bid}): non-numeric fraction") \
                from None
        if not np.all(np.isfinite(vals)) or vals.min() < 0 or vals.max() > 1:
            bad = [KEYS[j] for j in range(N_CLASSES)
                   if not (np.isfinite(vals[j]) and 0 <= vals[j] <= 1)]
            raise PackageError(f"{path} line {line} (block {bid}): fractions must be in "
                               f"[0, 1]; bad: {bad}")
        s = vals.sum()
        if abs(s - 1.0) > SUM_TOLERANCE:
            raise PackageError(f"{path} line {line} (block {bid}): fractions sum to {s!r}, "
                               f"not 1 (tolerance {SUM_TOLERANCE})")
        ids.append(bid)
        fr[i] = vals
    if not ids:
        raise PackageError(f"{path} has no blocks")
    return ids, fr


def _read_split(path: Path, known: set[str]) -> list[str]:
    if not path.exists():
        raise PackageError(f"{path} is missing (one block_id per line)")
    ids = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    unknown = [b for b in ids if b not in known]
    if unknown:
        raise PackageError(f"{path}: {len(unknown)} block id(s) not in labels.csv, e.g. "
                           f"{unknown[:5]}")
    if len(set(ids)) != len(ids):
        raise PackageError(f"{path}: a block id is listed twice")
    return ids


def read_package(path, *, verify: bool = False, require_images: bool = True) -> Package:
    """Read a package folder. ``verify=True`` also checks SHA256SUMS (every file hashed).

    Checks: labels.csv columns exactly block_id + the 17 class keys, fractions in [0, 1]
    summing to 1 within 1e-9, unique ids; splits/train.txt and splits/test.txt name known,
    disjoint blocks; every block has images/global/<id>.png, images/masks/<id>.png and at
    least one images/local/<id>_<k>.png (unless ``require_images=False``).
    """
    root = Path(path)
    if not root.exists():
        raise PackageError(f"dataset package {root} does not exist")
    if root.is_file():
        raise PackageError(f"{root} is a file; pass the package folder (unzip a .zip first)")
    if verify:
        verify_checksums(root)
    ids, fr = _read_labels(root / "labels.csv")
    known = set(ids)
    members = {"train": _read_split(root / "splits" / "train.txt", known),
               "test": _read_split(root / "splits" / "test.txt", known)}
    has_val = (root / "splits" / "val.txt").exists()
    if has_val:
        members["val"] = _read_split(root / "splits" / "val.txt", known)
    split_of: dict[str, str] = {}
    for name in SPLITS:
        for b in members.get(name, ()):
            if b in split_of:
                both = sorted(set(members[split_of[b]]) & set(members[name]))
                raise PackageError(f"{len(both)} block(s) are in both splits/{split_of[b]}.txt "
                                   f"and splits/{name}.txt, e.g. {both[:5]}")
            split_of[b] = name
    boxes = _read_local_boxes(root / LOCAL_BOXES_FILE, known)

    local_dir = root / "images" / "local"
    locals_by_id: dict[str, list[tuple[int, Path]]] = {}
    if local_dir.is_dir():
        for fn in os.listdir(local_dir):
            m = _LOCAL_RE.match(fn)
            if m:
                locals_by_id.setdefault(m.group("bid"), []).append(
                    (int(m.group("k")), local_dir / fn))
    blocks, missing = [], []
    for bid, f in zip(ids, fr):
        g = root / "images" / "global" / f"{bid}.png"
        mk = root / "images" / "masks" / f"{bid}.png"
        loc = [p for _, p in sorted(locals_by_id.get(bid, []))]
        if require_images:
            if not g.exists():
                missing.append(g.relative_to(root).as_posix())
            if not mk.exists():
                missing.append(mk.relative_to(root).as_posix())
            if not loc:
                missing.append(f"images/local/{bid}_<k>.png (no local patch)")
        dom = int(np.argmax(f))
        blocks.append(BlockRecord(
            block_id=bid, split=split_of.get(bid), fractions=f,
            pure=bool(f[dom] >= 1.0 - SUM_TOLERANCE), dominant=dom,
            global_path=g, mask_path=mk, local_paths=loc,
            local_boxes=_boxes_for(boxes, bid, len(loc), root)))
    if missing:
        raise PackageError(f"{root}: {len(missing)} image file(s) missing, e.g. "
                           f"{missing[:5]}")
    counts = {s: sum(1 for b in blocks if b.split == s) for s in SPLITS}
    meta = {
        "path": str(root.resolve()),
        "name": root.name,
        "n_blocks": len(blocks),
        "counts": counts,
        "has_val_split": has_val,
        "has_local_boxes": boxes is not None,
        "n_unsplit": sum(1 for b in blocks if b.split is None),
        "n_pure": sum(1 for b in blocks if b.pure),
        "dominant_counts": {
            CLASSES[c].key: sum(1 for b in blocks if b.dominant == c) for c in range(N_CLASSES)},
        "has_sha256sums": (root / "SHA256SUMS").exists(),
        "verified": bool(verify),
    }
    return Package(path=root, blocks=blocks, meta=meta)


# --------------------------------------------------------------------------------------------
# local patch boxes (where each local patch lies in its block's global image)


def local_boxes(origins, global_window, size: int) -> list[tuple[float, float, float, float]]:
    """(y0, x0, y1, x1) of each local crop in the global image, as fractions of the global
    image's side: ``origins`` are the crops' top-left (row, col) raster pixels, ``global_window``
    the global image's square window (row_off, col_off, side) and ``size`` the crop side, all in
    native pixels (``lcz_model.chips.BlockChips``)."""
    from .chips import patch_boxes   # the rule lives beside the cutting (inference uses it too)

    return patch_boxes(origins, global_window, size)


def write_local_boxes(path, rows) -> None:
    """Write LOCAL_BOXES_FILE: ``rows`` of (block_id, [(y0, x0, y1, x1), ...]) in package order."""
    lines = ["block_id,k,y0,x0,y1,x1\n"]
    for bid, boxes in rows:
        lines += [f"{bid},{k}," + ",".join(f"{v:.6f}" for v in box) + "\n"
                  for k, box in enumerate(boxes)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(lines), encoding="utf-8")


def _read_local_boxes(path: Path, known: set[str]) -> dict[str, dict[int, tuple]] | None:
    if not path.exists():
        return None
    out: dict[str, dict[int, tuple]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or [h.strip() for h in rows[0]] != ["block_id", "k", "y0", "x0", "y1", "x1"]:
        raise PackageError(f"{path}: header must be block_id,k,y0,x0,y1,x1")
    for n, row in enumerate(rows[1:], 2):
        if not row:
            continue
        try:
            bid, k, box = row[0].strip(), int(row[1]), tuple(float(v) for v in row[2:6])
        except (ValueError, IndexError):
            raise PackageError(f"{path} line {n}: expected block_id, k and four numbers") from None
        if len(box) != 4 or not all(np.isfinite(box)):
            raise PackageError(f"{path} line {n}: block {bid!r} has a bad box {row[2:]}")
        if bid in known:        # rows of other blocks are ignored, as their image files are
            out.setdefault(bid, {})[k] = box
    return out


def _boxes_for(boxes, bid: str, n_local: int, root: Path):
    if boxes is None:
        return None
    mine = boxes.get(bid, {})
    if sorted(mine) != list(range(n_local)):
        raise PackageError(f"{root / LOCAL_BOXES_FILE}: block {bid} has boxes for patches "
                           f"{sorted(mine)}, but {n_local} local patch(es)")
    return [mine[k] for k in range(n_local)]
