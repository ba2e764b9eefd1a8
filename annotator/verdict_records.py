"""Each released block's submitted verdicts, stored on the block in one compact binary record set.

`curation.curate_block` writes them (`StreetBlock.verdicts`) when the block's last verdict arrives,
so campaign-wide agreement reads one small row per released block, decoded by numpy in one go,
instead of joining and JSON-decoding every split on every dashboard view (`selectors.campaign_agreement`).
A block's verdicts never change once it is released (its splits are locked), so the record stays true.

Record layout (little-endian, 52 bytes per verdict): interpreter id int64, submitted_at int64
(microseconds since the Unix epoch, UTC), skip reason code uint8 (0 = a split; see SKIP_CODES),
one padding byte, 17 per-mille uint16 in lcz_model.classes order (all 0 for a skip).
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from lcz_model.classes import N_CLASSES

from . import agreement
from .models import Annotation

RECORD = np.dtype([("interpreter", "<i8"), ("submitted_us", "<i8"), ("skip", "u1"), ("pad", "u1"),
                   ("permille", "<u2", (N_CLASSES,))])
# codes of Annotation.SkipReason: append only (stored records keep their codes)
SKIP_CODES = tuple(Annotation.SkipReason.values)   # "" first: code 0 is "not skipped"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def pack(verdicts) -> bytes:
    """verdicts: iterable of (interpreter id, submitted_at datetime, skip reason, 17 per-mille)."""
    rows = list(verdicts)
    out = np.zeros(len(rows), dtype=RECORD)
    for i, (interpreter, submitted_at, skip, permille) in enumerate(rows):
        delta = submitted_at - _EPOCH
        out[i] = (interpreter, (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds,
                  SKIP_CODES.index(skip or ""), 0, permille)
    return out.tobytes()


def to_arrays(block_ids, blobs) -> agreement.AgreementArrays:
    """The blocks' stored records -> the dense arrays `agreement.to_arrays` builds from the long table
    of the same verdicts (blocks in the given order, raters sorted by id; skips not present)."""
    lengths = [len(b) // RECORD.itemsize for b in blobs]
    rec = np.frombuffer(b"".join(bytes(b) for b in blobs), dtype=RECORD)
    bi = np.repeat(np.arange(len(lengths)), lengths)
    r_ids = np.unique(rec["interpreter"])
    ri = np.searchsorted(r_ids, rec["interpreter"])
    B, R = len(lengths), len(r_ids)
    splits = np.full((B, R, N_CLASSES), -1, dtype=np.int64)
    splits[bi, ri] = rec["permille"]
    present = np.zeros((B, R), dtype=bool)
    present[bi, ri] = True
    skipped = np.full((B, R), "", dtype=object)
    skipped[bi, ri] = np.asarray(SKIP_CODES, dtype=object)[rec["skip"]]
    is_skip = rec["skip"] > 0
    present[bi[is_skip], ri[is_skip]] = False
    splits[bi[is_skip], ri[is_skip]] = -1
    sub = np.full((B, R), np.datetime64("NaT"), dtype="datetime64[ns]")
    sub[bi, ri] = rec["submitted_us"].astype("datetime64[us]").astype("datetime64[ns]")
    return agreement.AgreementArrays(splits, present, sub, np.asarray(block_ids), r_ids, skipped)
