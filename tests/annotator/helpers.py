"""Helpers shared by the annotator tests: splits, saves through the API, submitting a whole block,
a minimal dataset package. (Fixtures are in conftest.py.)"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import geopandas as gpd
from shapely.geometry import box

from annotator import services
from annotator.models import Assignment
from lcz_model.classes import KEYS
from lcz_model.package_writer import write_sha256sums


def split(**per_mille: int) -> dict:
    """A split as the API takes it: every class key, per-mille, 0 unless given."""
    return {k: 0 for k in KEYS} | per_mille


def first_assignment(user) -> Assignment:
    """The user's assignment of the lowest block id."""
    return Assignment.objects.filter(interpreter=user).order_by("block_id").first()


# --- saves through the API ------------------------------------------------------------------

def save_body(**fields) -> dict:
    """A save's body: a new request id, version 0, a draft of 60 % LCZ 6 / 40 % LCZ B; `fields`
    replace or add to it (unknown fields too: the API must refuse them)."""
    return {"request_id": str(uuid.uuid4()), "version": 0, "split": split(lcz_6=600, lcz_b=400),
            "submit": False} | fields


def put_annotation(client, assignment_id: int, body: dict):
    """PUT `body` as JSON to the assignment's annotation."""
    return client.put(f"/api/assignments/{assignment_id}/annotation/", data=json.dumps(body),
                      content_type="application/json")


def save(client, assignment_id: int, **fields):
    """Save through the API: `save_body(**fields)` (a UUID request_id is sent as its string)."""
    if isinstance(fields.get("request_id"), uuid.UUID):
        fields["request_id"] = str(fields["request_id"])
    return put_annotation(client, assignment_id, save_body(**fields))


# --- whole blocks ---------------------------------------------------------------------------

Splits = Callable[[str], dict] | Sequence[dict]


def submit_block(block, splits: Splits = (), *, client_for: Callable | None = None, round: int = 1) -> None:
    """Every interpreter of `block` in `round` (revoked ones aside), in username order, submits a
    full split from the version they hold. `splits`: a function of the username, or a list (one per
    interpreter in that order; missing ones: 100 % LCZ 6). Through `services.save_annotation`, or
    through the API when `client_for(user)` gives a client."""
    assignments = (Assignment.objects.filter(block=block, round=round).exclude(status=Assignment.Status.REVOKED)
                   .select_related("interpreter", "annotation").order_by("interpreter__username"))
    for i, a in enumerate(assignments):
        name = a.interpreter.username
        if callable(splits):
            s = splits(name)
        else:
            s = splits[i] if i < len(splits) else split(lcz_6=1000)
        version = a.annotation.version if hasattr(a, "annotation") else 0
        if client_for is None:
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=version, split=s,
                                     submit=True)
        else:
            r = save(client_for(a.interpreter), a.pk, version=version, split=s, submit=True)
            assert r.status_code == 200, r.content


# --- a dataset package ----------------------------------------------------------------------

PACKAGE_IDS = ("blk-a", "blk-b", "blk-c", "blk-d")


def write_package(root: Path, ids: Sequence[str] = PACKAGE_IDS, geoms=None) -> Path:
    """A minimal valid package (labels.csv, splits, blocks.gpkg, SHA256SUMS); block i is pure class
    i. `geoms`: the blocks' polygons in EPSG:4326 (default: small squares in central Helsinki)."""
    (root / "splits").mkdir(parents=True)
    lines = ["block_id," + ",".join(KEYS)]
    for i, bid in enumerate(ids):
        lines.append(bid + "," + ",".join("1" if j == i % len(KEYS) else "0" for j in range(len(KEYS))))
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "splits" / "train.txt").write_text("\n".join(ids[:-1]) + "\n", encoding="utf-8")
    (root / "splits" / "test.txt").write_text(ids[-1] + "\n", encoding="utf-8")
    if geoms is None:
        geoms = [box(24.93 + 0.001 * i, 60.17, 24.9305 + 0.001 * i, 60.1705) for i in range(len(ids))]
    gpd.GeoDataFrame({"block_id": list(ids), "area_m2": [1500.0] * len(ids), "agreement": [0.1] * len(ids)},
                     geometry=list(geoms), crs="EPSG:4326").to_file(root / "blocks.gpkg", layer="blocks",
                                                                   driver="GPKG")
    write_sha256sums(root)
    return root
