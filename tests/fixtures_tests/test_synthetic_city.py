"""The SYNTHETIC city generator: network geometry, truth fractions, exact area partition, painting.

No database, no Django: run with
    .venv/bin/python -m pytest tests/fixtures_tests -q -p no:django -p no:cacheprovider
"""
from __future__ import annotations

import hashlib

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize

from fixtures.synthetic_city import (
    TEMPLATES, assign_truth, build_city, class_label_raster, main, make_street_network,
    paint_city, partition_block, raster_grid, road_surfaces,
)
from lcz_model.classes import KEYS, N_CLASSES, index_of


@pytest.fixture(scope="module")
def city300():
    return make_street_network(300, seed=3)


# ----------------------------------------------------------------------------------- network
@pytest.mark.parametrize("n", [1, 7, 40, 300, 1234])
def test_block_count_near_request(n):
    city = make_street_network(n, seed=1)
    assert abs(len(city.blocks) - n) <= max(1, 0.1 * n)
    assert city.blocks["block_id"].is_unique
    assert city.blocks["block_id"].str.fullmatch(r"syn-\d{5}").all()
    assert city.blocks.crs.to_epsg() == 3067 and city.roads.crs.to_epsg() == 3067


def test_blocks_valid_polygons_and_disjoint(city300):
    g = np.asarray(city300.blocks.geometry.values)
    assert shapely.is_valid(g).all()
    assert (shapely.get_type_id(g) == 3).all()  # Polygon
    assert (shapely.area(g) > 500).all()
    total = shapely.area(g).sum()
    union = shapely.union_all(g).area
    assert abs(total - union) <= 1e-6 * total


def test_blocks_do_not_touch_road_surfaces(city300):
    blocks = np.asarray(city300.blocks.geometry.values)
    surf = np.asarray(road_surfaces(city300.roads).values)
    bi, ri = shapely.STRtree(surf).query(blocks, predicate="intersects")
    assert len(bi) > 0  # blocks do border their streets
    inter = shapely.area(shapely.intersection(blocks[bi], surf[ri]))
    assert inter.max() < 1e-3  # m2: only floating-point dust along shared edges
    assert inter.sum() <= 1e-6 * shapely.area(blocks).sum()


def test_network_is_irregular(city300):
    g = np.asarray(city300.blocks.geometry.values)
    area = shapely.area(g)
    env = shapely.area(shapely.envelope(g))
    rect = shapely.area(shapely.minimum_rotated_rectangle(g))
    assert (area / env < 0.97).mean() > 0.5            # mostly not axis-aligned rectangles
    assert (area / rect < 0.8).sum() >= 5              # some clearly non-rectangular (triangles)
    assert area.std() / area.mean() > 0.2              # block sizes vary
    roads = city300.roads
    assert {"primary", "secondary", "residential"} <= set(roads["highway"])
    assert (roads["width"] > 5).all()
    assert set(shapely.get_type_id(np.asarray(roads.geometry.values))) == {1}  # LineString
    # streets bend: not every segment is a straight 2-point line on the grid
    straight = shapely.length(np.asarray(roads.geometry.values)) / shapely.distance(
        shapely.get_point(np.asarray(roads.geometry.values), 0),
        shapely.get_point(np.asarray(roads.geometry.values), -1))
    assert (straight > 1.0005).mean() > 0.3


def test_network_deterministic_and_seeded():
    a = make_street_network(60, seed=5)
    b = make_street_network(60, seed=5)
    c = make_street_network(60, seed=6)
    wa = shapely.to_wkb(np.asarray(a.blocks.geometry.values))
    assert list(wa) == list(shapely.to_wkb(np.asarray(b.blocks.geometry.values)))
    assert list(wa) != list(shapely.to_wkb(np.asarray(c.blocks.geometry.values)))
    x0, y0, _, _ = a.blocks.total_bounds
    assert 385000 - 100 < x0 < 385000 + 100 and 6671000 - 100 < y0 < 6671000 + 100


def test_network_rejects_bad_input():
    with pytest.raises(ValueError, match="n_blocks"):
        make_street_network(0)


# ----------------------------------------------------------------------------------- truth
def test_truth_shape_sums_and_per_mille():
    f = assign_truth(500, seed=2)
    assert f.shape == (500, N_CLASSES) and f.dtype == np.float64
    assert (f >= 0).all()
    assert np.abs(f.sum(axis=1) - 1.0).max() <= 1e-12
    k = np.rint(f * 1000)
    assert (f == k / 1000.0).all()                      # exactly k/1000
    assert (k.sum(axis=1) == 1000).all()


def test_truth_pure_mixed_templates_and_coverage():
    f = assign_truth(500, seed=2, pure_share=0.35)
    pure = (f == 1.0).any(axis=1)
    assert 0.25 < pure.mean() < 0.45
    mixed = f[~pure]
    assert len(mixed) and ((mixed > 0).sum(axis=1) >= 2).all()
    assert (mixed[mixed > 0] >= 0.06 - 1e-12).all()
    templates = [set(t) for t in TEMPLATES]
    for row in mixed:
        assert any(set(np.flatnonzero(row)) <= t for t in templates)
    assert ((f > 0).sum(axis=0) > 0).all()              # every class appears
    # the templates the brief names are there (by code, through lcz_model.classes)
    for codes in [("5", "6", "B"), ("8", "10", "E"), ("A", "B", "G")]:
        assert tuple(index_of(c) for c in codes) in TEMPLATES
    # coverage also for a small city
    assert ((assign_truth(17, seed=0) > 0).sum(axis=0) > 0).all()
    assert not (assign_truth(200, seed=0, pure_share=0.0) == 1).any()
    assert (assign_truth(50, seed=0, pure_share=1.0) == 1).any(axis=1).all()


def test_truth_deterministic_and_seeded():
    assert np.array_equal(assign_truth(100, seed=4), assign_truth(100, seed=4))
    assert not np.array_equal(assign_truth(100, seed=4), assign_truth(100, seed=5))


# ----------------------------------------------------------------------------------- partition
def _mixed_rows(f, n):
    return [b for b in range(len(f)) if (f[b] > 0).sum() >= 2][:n]


def test_partition_areas_are_exact(city300):
    f = assign_truth(len(city300.blocks), seed=3)
    rows = _mixed_rows(f, 25)
    assert any((f[b] > 0).sum() == 3 for b in rows)
    for b in rows:
        poly = city300.blocks.geometry.iloc[b]
        pieces = partition_block(poly, f[b])
        assert [c for c, _ in pieces] == list(np.flatnonzero(f[b]))
        for c, piece in pieces:
            assert piece.is_valid and not piece.is_empty
            assert abs(piece.area - f[b, c] * poly.area) <= 1e-6 * f[b, c] * poly.area
        parts = [p for _, p in pieces]
        assert abs(shapely.union_all(parts).area - poly.area) <= 1e-6 * poly.area  # no overlaps
        assert shapely.difference(shapely.union_all(parts), poly).area <= 1e-6 * poly.area


def test_partition_pure_and_bad_input():
    sq = shapely.box(0, 0, 100, 100)
    f = np.zeros(N_CLASSES)
    f[index_of("G")] = 1.0
    assert partition_block(sq, f) == [(index_of("G"), sq)]
    with pytest.raises(ValueError, match="sum to 1"):
        partition_block(sq, f * 0.5)


def test_painted_label_areas_match_fractions():
    city = make_street_network(30, seed=8)
    f = assign_truth(30, seed=8)
    transform, w, h = raster_grid(city.blocks.total_bounds, 1.0, 30.0)
    lab = class_label_raster(city.blocks, f, transform, (h, w))
    for b in _mixed_rows(f, 8):
        poly = city.blocks.geometry.iloc[b]
        inblock = rasterize([(poly, 1)], out_shape=(h, w), transform=transform).astype(bool)
        for c, piece in partition_block(poly, f[b]):
            n_px = int((inblock & (lab == c)).sum())
            tol = 0.5 * piece.length + 4  # pixel rounding along the sub-region's outline
            assert abs(n_px - f[b, c] * poly.area) <= tol, (b, c, n_px, f[b, c] * poly.area)


# ----------------------------------------------------------------------------------- painting
@pytest.fixture(scope="module")
def small_city(tmp_path_factory):
    out = tmp_path_factory.mktemp("city")
    paths = build_city(12, out, seed=11)
    return paths


def test_build_city_outputs(small_city):
    assert small_city["image"].exists() and small_city["roads"].exists()
    with rasterio.open(small_city["image"]) as ds:
        assert ds.count == 3 and ds.dtypes == ("uint8",) * 3
        assert ds.crs.to_epsg() == 3067
        assert ds.res == (1.0, 1.0)
        assert ds.block_shapes[0] == (512, 512)
        assert ds.compression.name.lower() == "deflate"
        tags = ds.tags()
        assert tags["SYNTHETIC"] == "true" and "SYNTHETIC" in tags["DESCRIPTION"]
        bounds = ds.bounds
        img = ds.read()
    truth = gpd.read_file(small_city["truth"], layer="blocks")
    assert list(truth.columns) == ["block_id", *KEYS, "geometry"]
    assert len(truth) == small_city["n_blocks"]
    assert np.allclose(truth[list(KEYS)].to_numpy().sum(axis=1), 1.0, atol=1e-12)
    x0, y0, x1, y1 = truth.total_bounds
    assert bounds.left <= x0 - 29 and bounds.right >= x1 + 29
    assert bounds.bottom <= y0 - 29 and bounds.top >= y1 + 29
    assert bounds.left > x0 - 32 and bounds.top < y1 + 32
    assert img.std() > 10  # not a flat image
    roads = gpd.read_file(small_city["roads"])
    assert {"highway", "width"} <= set(roads.columns) and len(roads) > 12


def _md5(p):
    return hashlib.md5(p.read_bytes()).hexdigest()


def test_paint_is_byte_identical_for_same_seed(tmp_path):
    city = make_street_network(8, seed=2)
    f = assign_truth(8, seed=2)
    a = paint_city(city.blocks, f, tmp_path / "1" / "city.tif", seed=2, roads=city.roads)
    first = _md5(a)
    b = paint_city(city.blocks, f, tmp_path / "2" / "city.tif", seed=2, roads=city.roads)
    c = paint_city(city.blocks, f, tmp_path / "3" / "city.tif", seed=3, roads=city.roads)
    assert _md5(b) == first
    assert _md5(c) != first
    assert _md5(paint_city(city.blocks, f, a, seed=2, roads=city.roads)) == first  # re-run in place
    assert (tmp_path / "1" / "city.truth.gpkg").exists()


def test_classes_have_distinct_colours(tmp_path):
    codes = ["G", "A", "F", "E", "1", "D", "8"]
    boxes = [shapely.box(385000 + 120 * k, 6671000, 385000 + 120 * k + 90, 6671090)
             for k in range(len(codes))]
    blocks = gpd.GeoDataFrame({"block_id": [f"t-{c}" for c in codes]}, geometry=boxes,
                              crs="EPSG:3067")
    f = np.zeros((len(codes), N_CLASSES))
    for k, c in enumerate(codes):
        f[k, index_of(c)] = 1.0
    path = paint_city(blocks, f, tmp_path / "pure.tif", seed=0, progress=False)
    with rasterio.open(path) as ds:
        img = ds.read().astype(float)
        transform = ds.transform
        shape = (ds.height, ds.width)
    mean, bright5, bright95 = {}, {}, {}
    for c, box in zip(codes, boxes):
        m = rasterize([(box.buffer(-3), 1)], out_shape=shape, transform=transform).astype(bool)
        mean[c] = img[:, m].mean(axis=1)  # (r, g, b)
        bright5[c], bright95[c] = np.percentile(img[:, m].mean(axis=0), [5, 95])
    r, g, b = mean["G"]
    assert b > r + 30 and b > g + 20                      # water is blue
    assert mean["A"][1] > mean["A"][0] and mean["A"][1] > mean["A"][2]  # trees green
    assert b - g > mean["A"][2] - mean["A"][1] + 40       # water bluer than trees
    assert mean["F"].sum() > mean["E"].sum() > mean["A"].sum()  # sand > paving > canopy brightness
    assert mean["F"][0] > mean["F"][2] + 30                # sand is warm
    assert mean["D"][1] > mean["A"][1]                     # grass lighter green than canopy
    assert bright95["8"] > 200 and bright95["8"] > bright95["E"] + 30  # large bright roofs
    assert mean["1"].sum() < mean["E"].sum() - 60          # long shadows darken high-rise
    # every pair of classes differs in mean colour or in its brightness spread
    feat = {c: np.r_[mean[c], bright5[c], bright95[c]] for c in codes}
    dists = {(a, b_): np.abs(feat[a] - feat[b_]).sum() for i, a in enumerate(codes) for b_ in codes[i + 1:]}
    assert min(dists.values()) > 40, sorted(dists.items(), key=lambda kv: kv[1])[:3]


def test_paint_rejects_mismatched_fractions(tmp_path):
    city = make_street_network(5, seed=0)
    with pytest.raises(ValueError, match="fraction rows"):
        paint_city(city.blocks, assign_truth(4), tmp_path / "x.tif")
    bad = assign_truth(5)
    bad[0, 0] += 0.5
    with pytest.raises(ValueError, match="sum to 1"):
        paint_city(city.blocks, bad, tmp_path / "x.tif")


def test_cli(tmp_path, capsys):
    assert main(["--blocks", "4", "--seed", "1", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "city.tif").exists()
    assert (tmp_path / "cli" / "city.truth.gpkg").exists()
    assert (tmp_path / "cli" / "roads.gpkg").exists()
    assert "4 blocks" in capsys.readouterr().out


# ----------------------------------------------------------------------------------- hard variant
BEFORE_HARD_SHA256 = "62b97b0bab9be664c1ba4d6ac3c71f6049688bba8e88fddce7d56d18482392a1"


def test_hard_truth_has_more_classes_finer_shares_and_fewer_pure_blocks():
    easy, hard = assign_truth(600, seed=2), assign_truth(600, seed=2, hard=True)
    pure = (hard == 1.0).any(axis=1)
    assert 0.08 < pure.mean() < 0.22 < (easy == 1.0).any(axis=1).mean()
    mixed = hard[~pure]
    n = (mixed > 0).sum(axis=1)
    assert n.min() >= 3 and n.max() <= 5 and n.mean() > (easy[~(easy == 1.0).any(axis=1)] > 0).sum(1).mean() + 1
    assert (mixed[mixed > 0] >= 0.02 - 1e-12).all() and (mixed[mixed > 0] < 0.06).any()
    assert (np.rint(hard * 1000).sum(axis=1) == 1000).all()
    # the default variant is untouched by the option: the same draws as before it existed (the
    # per-mille of assign_truth(600, seed=2) from the generator before the hard variant, commit ac56ac2)
    assert hashlib.sha256(np.rint(easy * 1000).astype("<i8").tobytes()).hexdigest() == BEFORE_HARD_SHA256


def test_district_shift_changes_colours_per_district_deterministically(tmp_path):
    city = make_street_network(12, seed=2)
    f = assign_truth(12, seed=2)
    plain = paint_city(city.blocks, f, tmp_path / "p" / "city.tif", seed=2)
    shifted = [paint_city(city.blocks, f, tmp_path / d / "city.tif", seed=2, district_m=100.0) for d in "ab"]
    assert _md5(shifted[0]) == _md5(shifted[1])
    with rasterio.open(plain) as a, rasterio.open(shifted[0]) as b:
        x, y = a.read().astype(float), b.read().astype(float)
    diff = (y - x).mean(axis=0)
    assert np.abs(diff).mean() > 2                       # noise and shifts are there
    # two districts (100 px squares) differ in their mean shift: not one global tint
    d1, d2 = diff[:100, :100].mean(), diff[:100, 100:200].mean()
    assert abs(d1 - d2) > 1
