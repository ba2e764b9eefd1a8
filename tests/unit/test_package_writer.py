"""lcz_model.package_writer: exact fraction text, the one per-mille rounding rule, the one package
writer (atomic, SHA256SUMS read back by the reader), chips independent of worker count."""
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


def _permille(*rows):
    out = np.zeros((len(rows), 17), dtype=np.int64)
    for i, row in enumerate(rows):
        for j, v in row.items():
            out[i, j] = v
    return out


def test_rounding_rows_sum_to_exactly_1000_and_are_deterministic():
    rng = np.random.default_rng(0)
    fr = rng.dirichlet(np.full(17, 0.3), size=500)
    pm = pw.fractions_to_permille(fr)
    assert pm.dtype.kind == "i" and (pm >= 0).all() and (pm.sum(axis=1) == 1000).all()
    assert np.array_equal(pm, pw.fractions_to_permille(fr.copy()))
    assert (np.abs(pm / 1000 - fr) < 1e-3).all()           # each class within one unit
    ints = rng.integers(0, 50, size=(200, 17))
    ints[:, 0] += 1
    assert (pw.fractions_to_permille(ints).sum(axis=1) == 1000).all()


def test_rounding_gives_leftover_units_to_the_largest_remainders():
    # 100.4, 100.6, 0, 799 -> the one leftover unit goes to the .6, not to the lowest index
    assert pw.fractions_to_permille([0.1004, 0.1006, 0, 0.799] + [0] * 13)[0, :4].tolist() == [100, 101, 0, 799]
    # exact per-mille fractions come back unchanged (a package read back)
    pm = _permille({0: 350, 5: 1, 16: 649})
    assert np.array_equal(pw.fractions_to_permille(pm / 1000.0), pm)


def test_rounding_ties_go_to_the_lower_class_index():
    assert pw.fractions_to_permille([1, 1, 1] + [0] * 14)[0, :3].tolist() == [334, 333, 333]
    third = [0] * 17
    third[2] = third[9] = third[16] = 1 / 3
    assert pw.fractions_to_permille(third)[0, [2, 9, 16]].tolist() == [334, 333, 333]


def test_rounding_compares_remainders_exactly_not_with_float_noise():
    """Where the two old copies disagreed. The raters' per-mille sums of a 3-rater block:
    means 114, 111, 333.33, 333.33, 108.33 -> one leftover unit, three remainders tied at 1/3.
    The rule kept (the consensus's): exact remainders, tie to the lower class (LCZ 8 at index 7).
    The package writer's float copy gave it to index 14 (108.33's float remainder was larger)."""
    sums = _permille({0: 342, 6: 333, 7: 1000, 8: 1000, 14: 325})
    want = _permille({0: 114, 6: 111, 7: 334, 8: 333, 14: 108})
    assert np.array_equal(pw.fractions_to_permille(sums), want)             # integers, exactly
    assert np.array_equal(pw.fractions_to_permille(sums / 3000.0), want)    # the same as fractions


def test_rounding_refuses_rows_without_weight():
    with pytest.raises(ValueError, match="row 1 has no positive weight"):
        pw.fractions_to_permille([[1.0] + [0] * 16, [0.0] * 17])
    with pytest.raises(ValueError, match="negative"):
        pw.fractions_to_permille([[-1] + [0] * 16])
    with pytest.raises(ValueError, match="finite"):
        pw.fractions_to_permille([[np.nan] + [0] * 16])


def _contents(ids=("a", "b")):
    pm = _permille(*({0: 1000} for _ in ids))
    return pw.PackageContents(block_ids=list(ids), permille=pm, splits={"train": list(ids[:1]), "test": list(ids[1:])},
                              readme="# test\n", licence="CC0\n",
                              annotations=[(b, "generator", 1, row, None, (), "1970-01-01T00:00:00Z")
                                           for b, row in zip(ids, pm)],
                              agreement={"synthetic": True})


def test_write_package_writes_every_file_and_sha256sums_the_reader_verifies(tmp_path):
    from lcz_model.package import read_package, verify_checksums

    def contents(pkg):
        for b in ("a", "b"):                     # images first, as an export cuts chips
            for rel in (f"images/global/{b}.png", f"images/masks/{b}.png", f"images/local/{b}_0.png"):
                (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
                (pkg / rel).write_bytes(b"png")
        return _contents()

    out = pw.write_package(tmp_path / "pkg", contents)
    assert sorted(p.name for p in out.iterdir()) == ["LICENSE", "README.md", "SHA256SUMS", "agreement.json",
                                                     "annotations.csv", "images", "labels.csv", "splits"]
    assert (out / "annotations.csv").read_text().splitlines()[1] == "a,generator,1,1" + ",0" * 16 + ",,,1970-01-01T00:00:00Z"
    verify_checksums(out)
    pkg = read_package(out, verify=True)
    assert [b.split for b in pkg.blocks] == ["train", "test"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_write_package_is_atomic_and_refuses_an_existing_target(tmp_path):
    def dying(pkg):
        (pkg / "images").mkdir()
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        pw.write_package(tmp_path / "pkg", dying)
    assert list(tmp_path.iterdir()) == []
    pw.write_package(tmp_path / "pkg", _contents())
    first = (tmp_path / "pkg" / "labels.csv").read_bytes()
    with pytest.raises(FileExistsError):
        pw.write_package(tmp_path / "pkg", _contents(("c", "d")))
    assert (tmp_path / "pkg" / "labels.csv").read_bytes() == first
    pw.write_package(tmp_path / "pkg", _contents(("c", "d")), replace=True)
    assert (tmp_path / "pkg" / "labels.csv").read_text().splitlines()[1].startswith("c,")
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
