"""The dataset package's list of can't-label verdicts: `labels/skipped.csv` and its datacard lines.

A skip (Annotation.skip_reason) is a submitted verdict without a split: it never enters labels.csv
or annotations.csv (no split to give), so the package lists it here, one row per verdict, with the
interpreter's pseudonym and the reason; never the comment (free text may name people or places).
Every submitted skip of the campaign is listed, also of blocks left out of the package (e.g. a
disputed block nobody could label): `in_package` says which.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from annotator.models import Annotation, Assignment, Campaign

PATH = "labels/skipped.csv"
COLUMNS = ("block_id", "interpreter", "round", "reason", "in_package")


def skipped_rows(campaign: Campaign, exported_keys, pseudonyms: dict[int, str]) -> list[tuple]:
    """(block key, interpreter pseudonym, round, reason, in_package) of every submitted skip, sorted."""
    exported = set(exported_keys)
    rows = (Annotation.objects.filter(assignment__campaign=campaign,
                                      assignment__status=Assignment.Status.SUBMITTED)
            .exclude(skip_reason="")
            .values_list("assignment__block__block_key", "assignment__interpreter_id", "assignment__round",
                         "skip_reason"))
    return sorted((key, pseudonyms.get(uid, "interpreter-unknown"), rnd, reason, key in exported)
                  for key, uid, rnd, reason in rows)


def skipped_csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for key, who, rnd, reason, inside in rows:
        w.writerow((key, who, rnd, reason, "true" if inside else "false"))
    return buf.getvalue()


def write_skipped(pkg: Path, campaign: Campaign, exported_keys, pseudonyms: dict[int, str]) -> list[tuple]:
    """Write `labels/skipped.csv` into the package folder being built (before SHA256SUMS); the rows."""
    rows = skipped_rows(campaign, exported_keys, pseudonyms)
    path = Path(pkg) / PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(skipped_csv_text(rows), encoding="utf-8")
    return rows


def with_skips(datacard: str, rows) -> str:
    """The datacard with how many verdicts were skips (how-it-was-made) and the file (Files)."""
    n = len(rows)
    blocks = len({r[0] for r in rows})
    reasons = {}
    for r in rows:
        reasons[r[3]] = reasons.get(r[3], 0) + 1
    by_reason = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
    made = (f"- Can't label: {n} verdicts on {blocks} blocks were \"can't label\" (skips; by reason: {by_reason}). "
            "A skip is a submitted verdict without a split: left out of the consensus, and a block without a "
            "labelled majority went to a reviewer.")
    files = (f"- `{PATH}`: every can't-label verdict ({n}): block_id, interpreter (pseudonym), round, reason, "
             "in_package (the block is in labels.csv); no comments.")
    anchor_made, anchor_files = "\n\n## Classes and counts", "\n- `blocks.gpkg`"
    out = datacard.replace(anchor_made, "\n" + made + anchor_made, 1) if anchor_made in datacard else datacard
    if anchor_files in out:
        return out.replace(anchor_files, "\n" + files + anchor_files, 1)
    return out.rstrip("\n") + "\n\n" + made + "\n" + files + "\n"
