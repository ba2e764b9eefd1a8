"""export_dataset's validation split (issue #15, item 1): seeded, random or spatial, never
overlapping test, written as splits/val.txt and read back by lcz_model.package as "val"."""
from __future__ import annotations

import numpy as np
import pytest
import shapely

from annotator.export.dataset import ExportError, ExportOptions, _Block, assign_splits
from lcz_model.package import read_package
from tests.annotator.test_export import export, labelled  # noqa: F401  (fixture)


def _blocks(clusters: int = 8, per: int = 5) -> list[_Block]:
    """``clusters`` groups of ``per`` ~11 m blocks near Helsinki, the groups ~5 km apart (each
    group inside one spatial cell, never two groups in one)."""
    out = []
    for c in range(clusters):
        lon0, lat0 = 24.6 + 0.09 * (c % 4), 60.1 + 0.045 * (c // 4)
        for i in range(per):
            lon = lon0 + 0.0003 * i
            out.append(_Block(pk=len(out), key=f"c{c}-b{i}", geom=shapely.box(lon, lat0, lon + 0.0002, lat0 + 0.0002),
                              area_m2=2000.0, scene_id=1, permille=np.eye(17, dtype=np.int64)[0] * 1000,
                              agreement_tv=0.0, n_annotations=3))
    return out


@pytest.mark.parametrize("mode", ["random", "spatial"])
def test_val_is_seeded_disjoint_and_sized(mode):
    blocks = _blocks()
    opts = ExportOptions(split=mode, test_fraction=0.25, val_fraction=0.2, seed=7)
    train, val, test = assign_splits(blocks, opts)
    assert (train, val, test) == assign_splits(blocks, opts)                 # deterministic
    assert not set(val) & set(test) and not set(val) & set(train) and not set(train) & set(test)
    assert set(train) | set(val) | set(test) == {b.key for b in blocks}
    assert val and test and train
    assert assign_splits(blocks, ExportOptions(split=mode, test_fraction=0.25, val_fraction=0.2, seed=8)) != (
        train, val, test)                                                     # the seed matters
    # adding val never moves a test block: test is drawn first, the same as without val
    assert assign_splits(blocks, ExportOptions(split=mode, test_fraction=0.25, val_fraction=0.0, seed=7))[2] == test
    if mode == "random":
        assert len(test) == 10 and len(val) == round(30 * 0.2)


def test_spatial_val_takes_whole_groups():
    blocks = _blocks()
    train, val, test = assign_splits(blocks, ExportOptions(split="spatial", test_fraction=0.25,
                                                           val_fraction=0.2, seed=3))
    split_of = {b: "train" for b in train} | {b: "val" for b in val} | {b: "test" for b in test}
    for c in range(8):                     # a group (one place) lies wholly in one split
        assert len({split_of[f"c{c}-b{i}"] for i in range(5)}) == 1, c
    assert {split_of[f"c{c}-b0"] for c in range(8)} == {"train", "val", "test"}


def test_val_fraction_zero_writes_no_val_and_bad_values_are_refused(tmp_path):
    train, val, test = assign_splits(_blocks(), ExportOptions(val_fraction=0.0))
    assert val == [] and len(train) + len(test) == 40
    from annotator.export.dataset import _check_arguments
    with pytest.raises(ExportError, match="--val-fraction"):
        _check_arguments(tmp_path / "x", ExportOptions(val_fraction=1.0))


@pytest.mark.django_db
def test_export_writes_val_and_the_reader_reads_it(labelled, tmp_path):  # noqa: F811
    campaign, *_ = labelled
    pkg = export(campaign, tmp_path / "grid-v1", test_fraction=0.25, val_fraction=0.5, seed=1)
    val = (pkg / "splits" / "val.txt").read_text().split()
    test = (pkg / "splits" / "test.txt").read_text().split()
    assert len(val) == 2 and len(test) == 1 and not set(val) & set(test)
    p = read_package(pkg, verify=True)                     # SHA256SUMS covers val.txt
    assert p.meta["counts"] == {"train": 1, "val": 2, "test": 1}
    assert {b.block_id for b in p.split("val")} == set(val)
    readme = (pkg / "README.md").read_text()
    assert "1 train, 2 val, 1 test" in readme and "splits/val.txt" in readme
    import geopandas as gpd
    g = gpd.read_file(pkg / "blocks.gpkg")
    assert sorted(g.loc[g.split == "val", "block_id"]) == sorted(val)
