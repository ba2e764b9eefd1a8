"""lcz_model.package_writer: exact fraction text, atomic folders, chips independent of worker count."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from shapely.geometry import box

from lcz_model import package_writer as pw


def test_fraction_text_is_exact():
    assert [pw.format_fraction(v) for v in (0, 1, 10, 350, 999, 1000)] == ["0", "0.001", "0.01", "0.35", "0.999", "1"]
    with pytest.raises(ValueError):
        pw.format_fraction(1001)


def test_labels_csv_refuses_splits_not_summing_to_1000():
    good = np.zeros((2, 17), int)
    good[:, 0] = 1000
    text = pw.labels_csv_text(["a", "b"], good)
    assert text.splitlines()[0].startswith("block_id,lcz_1,lcz_2") and text.splitlines()[1] == "a,1" + ",0" * 16
    bad = good.copy()
    bad[1, 0] = 999
    with pytest.raises(ValueError, match=r"\['b'\] do not sum to 1000"):
        pw.labels_csv_text(["a", "b"], bad)


def test_atomic_dir_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    with pw.atomic_package_dir(tmp_path / "pkg") as d:
        (d / "x.txt").write_text("x")
        assert not (tmp_path / "pkg").exists()
    assert (tmp_path / "pkg" / "x.txt").read_text() == "x"
    with pytest.raises(RuntimeError):
        with pw.atomic_package_dir(tmp_path / "other") as d:
            (d / "x.txt").write_text("x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_is_inside_package(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "labels.csv").write_text("")
    (tmp_path / "pkg" / "SHA256SUMS").write_text("")
    assert pw.is_inside_package(tmp_path / "pkg" / "a" / "b") == tmp_path / "pkg"
    assert pw.is_inside_package(tmp_path) is None


def test_chips_do_not_depend_on_the_number_of_workers(tmp_path):
    rng = np.random.default_rng(1)
    tif = tmp_path / "r.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=600, height=600, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(24.90, 60.20, 1e-5, 5e-6)) as ds:
        ds.write(rng.integers(0, 255, (3, 600, 600), dtype=np.uint8))
    items = [(f"b{i}", shapely.to_wkb(box(24.90 + i * 1e-3, 60.1985, 24.9008 + i * 1e-3, 60.1995))) for i in range(5)]
    items.append(("outside", shapely.to_wkb(box(10, 10, 10.001, 10.001))))
    one = pw.write_chips({str(tif): items}, tmp_path / "one", workers=1, progress=False, chunk=2)
    two = pw.write_chips({str(tif): items}, tmp_path / "two", workers=2, progress=False, chunk=2)
    assert one == two and one["outside"] == 0 and all(one[f"b{i}"] >= 1 for i in range(5))
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert files and files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png"))
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes()
