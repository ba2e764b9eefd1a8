"""Real exports write images/local_boxes.csv (issue #15 follow-up): each local patch's box in its
block's global image, from the chips' origins at cut time, in labels.csv order, under SHA256SUMS;
the same bytes from the in-process cut, the process pool and the distributed export (boxes travel
in the staged chunk manifests). import_dataset accepts and checks splits/val.txt."""
from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from django.core.management import CommandError, call_command
from PIL import Image
from rasterio.transform import from_origin

from annotator import export_jobs, services
from annotator.export import chip_pool
from annotator.export.dataset import ExportOptions, export_dataset
from annotator.models import Assignment, StreetBlock
from lcz_model.package import LOCAL_BOXES_FILE, read_package
from lcz_model.package_writer import write_sha256sums
from tests.annotator.helpers import split
from tests.conftest import METRIC_CRS, grid_roads
from tests.box_pixels import pixels_under

pytestmark = pytest.mark.django_db

SPLITS = [split(lcz_6=600, lcz_b=400), split(lcz_8=700, lcz_e=300), split(lcz_a=1000), split(lcz_2=500, lcz_e=500)]
CHIP = 32  # small chips: the ~90 m blocks at 1 m get several local patches each


@pytest.fixture(autouse=True)
def fixed_gpkg_date(monkeypatch):
    """blocks.gpkg records when it was written; pinned so two exports' SHA256SUMS compare."""
    monkeypatch.setenv("OGR_CURRENT_DATE", "2026-01-01T00:00:00Z")


def _patterned_tif(path: Path) -> Path:
    """1 m RGB imagery over the test grid with structure at ~6 m (random 6x6 px cells): a patch
    matches the down-sampled global image only where it really lies."""
    x0, y0, x1, y1 = grid_roads(n=3).total_bounds
    w, h = int(x1 - x0) + 40, int(y1 - y0) + 40
    cells = np.random.default_rng(1).integers(0, 255, size=(3, h // 6 + 1, w // 6 + 1), dtype=np.uint8)
    data = np.repeat(np.repeat(cells, 6, axis=1), 6, axis=2)[:, :h, :w]
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs=METRIC_CRS,
                       transform=from_origin(x0 - 20, y1 + 20, 1.0, 1.0)) as dst:
        dst.write(data)
    return path


@pytest.fixture
def boxed(campaign, media_root, tmp_path, request):
    """The 4-block test campaign over patterned imagery, every block complete."""
    services.import_imagery(campaign, _patterned_tif(tmp_path / "pattern.tif"), licence="CC0 test imagery")
    request.getfixturevalue("team")
    for i, block in enumerate(StreetBlock.objects.filter(campaign=campaign).order_by("block_key")):
        for a in Assignment.objects.filter(block=block):
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=0,
                                     split=SPLITS[i % 4], confidence=4, submit=True)
    return campaign


def _opts(**kw) -> ExportOptions:
    return ExportOptions(chip_size=CHIP, test_fraction=0.25, val_fraction=0.34, seed=2, **kw)


def _files(pkg: Path) -> dict[str, str]:
    return {p.relative_to(pkg).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pkg.rglob("*")) if p.is_file()}


def test_export_writes_boxes_the_reader_accepts_and_the_chips_match(boxed, tmp_path):
    pkg = export_dataset(boxed, tmp_path / "grid-v1", _opts(workers=1), progress=False).path
    lines = (pkg / LOCAL_BOXES_FILE).read_text().splitlines()
    assert lines[0] == "block_id,k,y0,x0,y1,x1"
    assert f"  {LOCAL_BOXES_FILE}" in (pkg / "SHA256SUMS").read_text()
    labels = [ln.split(",")[0] for ln in (pkg / "labels.csv").read_text().splitlines()[1:]]
    rows = [ln.split(",") for ln in lines[1:]]
    # deterministic order: labels.csv's blocks, each block's patches by k
    assert [(r[0], int(r[1])) for r in rows] == sorted(((r[0], int(r[1])) for r in rows),
                                                       key=lambda t: (labels.index(t[0]), t[1]))
    assert list(dict.fromkeys(r[0] for r in rows)) == labels
    p = read_package(pkg, verify=True)                     # the reader accepts it, checksums included
    assert p.meta["has_local_boxes"] and p.meta["counts"]["val"] >= 1
    readme = (pkg / "README.md").read_text()
    assert LOCAL_BOXES_FILE in readme and "splits/val.txt" in readme
    right, wrong = [], []
    for b in p.blocks:
        assert len(b.local_boxes) == len(b.local_paths) >= 2
        g = np.asarray(Image.open(b.global_path).convert("RGB"))
        for k, path in enumerate(b.local_paths):
            here = pixels_under(g, b.local_boxes[k])
            other = pixels_under(g, b.local_boxes[(k + 1) % len(b.local_boxes)])
            h, w = here.shape[:2]
            if h < 4 or w < 4 or other.shape != here.shape:
                continue
            small = np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.Resampling.BOX)).astype(float)
            right.append(np.abs(small - here).mean())
            wrong.append(np.abs(small - other).mean())
    assert len(right) >= 8
    # each patch matches the global image at its own box, and far worse at its neighbour's
    assert np.mean(right) < 0.5 * np.mean(wrong), (np.mean(right), np.mean(wrong))


@pytest.mark.slow
def test_the_process_pool_writes_the_same_boxes(boxed, tmp_path, monkeypatch):
    one = export_dataset(boxed, tmp_path / "one" / "grid-v1", _opts(workers=1), progress=False).path
    monkeypatch.setattr(chip_pool, "CHIP_CHUNK", 1)        # 4 chunks: the pool really runs
    two = export_dataset(boxed, tmp_path / "two" / "grid-v1", _opts(workers=2), progress=False).path
    assert LOCAL_BOXES_FILE in _files(two)
    assert _files(two) == _files(one)


def test_boxes_travel_in_the_staged_manifests(boxed, media_root, tmp_path, monkeypatch):
    monkeypatch.setattr(export_jobs, "CHUNK", 2)
    local = export_dataset(boxed, tmp_path / "local" / "grid-v1", _opts(workers=1), progress=False).path
    # no worker: the test's transaction is never committed, so nothing is sent; chunks staged here
    job = export_jobs.start_export(boxed, str(tmp_path / "dist" / "grid-v1"), _opts())
    for i, keys in enumerate(export_jobs.plan(job)):
        data = export_jobs.stage_chunk(job, i, keys)
        assert sorted(data["boxes"]) == sorted(keys) and all(len(bx) >= 2 for bx in data["boxes"].values())

    def no_cut(*a, **k):
        raise AssertionError("assembly cut chips again: the staged boxes were not used")
    monkeypatch.setattr(chip_pool, "cut_chips", no_cut)
    report = export_jobs.assemble(job)
    assert _files(Path(report.path)) == _files(local)      # byte-identical, local_boxes.csv included


# --------------------------------------------------------------------------------------------
# import_dataset and splits/val.txt


def _rewrite(pkg: Path, rel: str, text: str) -> None:
    (pkg / rel).write_text(text)
    (pkg / "SHA256SUMS").unlink()
    write_sha256sums(pkg)


@pytest.fixture
def exported(boxed, tmp_path):
    return export_dataset(boxed, tmp_path / "grid-v1", _opts(workers=1), progress=False).path


def _target():
    campaign, _ = services.create_campaign("Copy", city="Helsinki")
    return campaign


def test_import_keeps_the_val_split(exported):
    val = (exported / "splits/val.txt").read_text().split()
    assert val
    target = _target()
    call_command("import_dataset", str(exported), campaign=target.name, verbosity=0)
    got = dict(StreetBlock.objects.filter(campaign=target).values_list("block_key", "split"))
    assert {k for k, s in got.items() if s == "val"} == set(val)
    assert set(got.values()) == {"train", "val", "test"}


@pytest.mark.parametrize("case, message", [
    ("overlaps test", "repeats the block of splits/test.txt"),
    ("unknown id", "names a block that is not in labels.csv"),
])
def test_import_refuses_a_bad_val_split(exported, tmp_path, case, message):
    pkg = tmp_path / "bad"
    shutil.copytree(exported, pkg)
    val = (pkg / "splits/val.txt").read_text()
    extra = (pkg / "splits/test.txt").read_text().split()[0] if case == "overlaps test" else "no-such-block"
    _rewrite(pkg, "splits/val.txt", val + extra + "\n")
    target = _target()
    with pytest.raises(CommandError) as exc:
        call_command("import_dataset", str(pkg), campaign=target.name, verbosity=0)
    assert message in str(exc.value) and "splits/val.txt" in str(exc.value)
    assert not StreetBlock.objects.filter(campaign=target).exists()
