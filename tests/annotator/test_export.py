"""export_dataset / import_dataset on PostGIS: the package as dataset-package.md describes it."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
import zipfile

import pytest
from django.core.management import CommandError, call_command

from annotator import services
from annotator.models import Assignment, Campaign, StreetBlock
from lcz_model.classes import KEYS
from tests.annotator.helpers import split
from tests.conftest import grid_roads

pytestmark = pytest.mark.django_db


SPLITS = [split(lcz_6=600, lcz_b=400), split(lcz_8=700, lcz_e=300), split(lcz_a=1000), split(lcz_2=500, lcz_e=500)]


def _imagery_over_grid(campaign, geotiff_factory, n=4, name="grid.tif"):
    x0, y0, x1, y1 = grid_roads(n=n).total_bounds
    tif = geotiff_factory(name, width=int(x1 - x0) + 40, height=int(y1 - y0) + 40, origin=(x0 - 20, y1 + 20))
    services.import_imagery(campaign, tif, licence="CC BY 4.0, test imagery provider")
    return tif


@pytest.fixture
def labelled(campaign, media_root, geotiff_factory, request):
    """Imagery first, then 4 blocks x 3 interpreters, every split submitted (agreeing: complete)."""
    tif = _imagery_over_grid(campaign, geotiff_factory, n=3)
    team = request.getfixturevalue("team")
    for i, block in enumerate(StreetBlock.objects.filter(campaign=campaign).order_by("block_key")):
        for a in Assignment.objects.filter(block=block):
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=0,
                                     split=SPLITS[i % 4], confidence=4, submit=True)
    assert set(StreetBlock.objects.values_list("status", flat=True)) == {"complete"}
    return campaign, team, tif


def export(campaign, out, **kw):
    call_command("export_dataset", campaign=campaign.name, out=str(out), verbosity=0, **kw)
    return out


def test_package_has_every_file_and_checks_out(labelled, tmp_path):
    campaign, team, _ = labelled
    pkg = export(campaign, tmp_path / "grid-v1", zip=True)
    for rel in ("README.md", "LICENSE", "CITATION.cff", "croissant.json", "blocks.gpkg", "labels.csv",
                "annotations.csv", "agreement.json", "splits/train.txt", "splits/test.txt", "SHA256SUMS"):
        assert (pkg / rel).is_file(), rel
    assert len(list((pkg / "images/global").glob("*.png"))) == 4
    assert len(list((pkg / "images/masks").glob("*.png"))) == 4
    assert len(list((pkg / "images/local").glob("*_0.png"))) == 4
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=pkg).returncode == 0
    # pseudonyms only: no interpreter's name anywhere in the package's text
    text = "".join((pkg / f).read_text() for f in ("annotations.csv", "agreement.json", "README.md", "labels.csv"))
    assert "interpreter-01" in text
    for name in ("ann", "bob", "cat", "dan"):
        assert f",{name}," not in text and f'"{name}"' not in text
    readme = (pkg / "README.md").read_text()
    assert "4 street blocks" in readme and "Krippendorff" in readme
    # the geometry's licence is the one recorded at import (the team's roads: tests.conftest.TEST_ROADS)
    assert "synthetic test roads (CC0-1.0, 4 blocks)" in (pkg / "LICENSE").read_text()
    assert "CC BY 4.0, test imagery provider" in (pkg / "LICENSE").read_text()
    with zipfile.ZipFile(tmp_path / "grid-v1.zip") as zf:
        assert "grid-v1/labels.csv" in zf.namelist() and "grid-v1/SHA256SUMS" in zf.namelist()


def test_package_opens_without_project_code(labelled, tmp_path):
    campaign, *_ = labelled
    pkg = export(campaign, tmp_path / "grid-v1")
    script = textwrap.dedent(f"""
        import sys
        import geopandas, pandas, rasterio, numpy
        pkg = {str(pkg)!r}
        labels = pandas.read_csv(pkg + "/labels.csv")
        assert list(labels.columns[:2]) == ["block_id", "lcz_1"] and labels.shape == (4, 18)
        assert numpy.allclose(labels.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-9)
        blocks = geopandas.read_file(pkg + "/blocks.gpkg")
        assert blocks.crs.to_epsg() == 4326 and set(blocks.block_id) == set(labels.block_id)
        assert set(blocks.split) <= {{"train", "test"}}
        with rasterio.open(pkg + "/images/global/" + labels.block_id[0] + ".png") as im:
            assert (im.width, im.height, im.count) == (256, 256, 3)
        ann = pandas.read_csv(pkg + "/annotations.csv")
        assert len(ann) == 12 and set(ann.annotator.str.startswith("interpreter-")) == {{True}}
        assert not any(m in sys.modules for m in ("django", "annotator", "lcz_model"))
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_croissant_is_valid(labelled, tmp_path):
    campaign, *_ = labelled
    pkg = export(campaign, tmp_path / "grid-v1")
    mlc = str(__import__("pathlib").Path(sys.executable).with_name("mlcroissant"))
    result = subprocess.run([mlc, "validate", "--jsonld", str(pkg / "croissant.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower().replace("0 error", "")


def test_export_is_deterministic(labelled, tmp_path):
    campaign, *_ = labelled
    a = export(campaign, tmp_path / "a", split="spatial", seed=3)
    b = export(campaign, tmp_path / "b", split="spatial", seed=3)
    for rel in ("labels.csv", "splits/train.txt", "splits/test.txt", "annotations.csv", "agreement.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    train, test = ((a / f"splits/{s}.txt").read_text().split() for s in ("train", "test"))
    assert train and test and not set(train) & set(test) and len(train) + len(test) == 4


def test_round_trip_export_import_export(labelled, tmp_path, geotiff_factory):
    campaign, *_ = labelled
    first = export(campaign, tmp_path / "first")
    other, _ = services.create_campaign("Copy", city="Helsinki")
    _imagery_over_grid(other, geotiff_factory, n=3, name="grid.tif")  # the same imagery, re-imported
    call_command("import_dataset", str(first), campaign="Copy", verbosity=0)
    call_command("import_dataset", str(first), campaign="Copy", verbosity=0)  # idempotent
    assert StreetBlock.objects.filter(campaign=other).count() == 4
    second = export(other, tmp_path / "second")
    assert (first / "labels.csv").read_bytes() == (second / "labels.csv").read_bytes()


def test_interrupted_export_leaves_no_package(labelled, tmp_path, monkeypatch):
    campaign, *_ = labelled
    from lcz_model import chips

    calls = {"n": 0}
    real = chips.save_chips

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the chips
        return real(*args, **kwargs)

    monkeypatch.setattr(chips, "save_chips", dying)
    with pytest.raises(KeyboardInterrupt):
        export(campaign, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()
    assert list(tmp_path.glob(".pkg*")) == []
    # a partial folder left by a killed process is cleaned by the next export
    (tmp_path / ".pkg.999.partial").mkdir()
    monkeypatch.setattr(chips, "save_chips", real)
    export(campaign, tmp_path / "pkg")
    assert (tmp_path / "pkg" / "SHA256SUMS").exists() and not (tmp_path / ".pkg.999.partial").exists()


def test_bad_imagery_blocks_are_left_out_and_counted(labelled, tmp_path):
    campaign, *_ = labelled
    a = Assignment.objects.order_by("block__block_key").first().annotation
    a.flags = ["bad_imagery"]
    a.save()
    pkg = export(campaign, tmp_path / "pkg")
    assert len((pkg / "labels.csv").read_text().splitlines()) == 1 + 3
    assert "1 blocks flagged as bad imagery" in (pkg / "README.md").read_text()


def test_disputed_blocks_only_on_request(campaign, media_root, geotiff_factory, request, tmp_path):
    _imagery_over_grid(campaign, geotiff_factory, n=3)
    request.getfixturevalue("team")
    block = StreetBlock.objects.order_by("block_key").first()
    for a, s in zip(Assignment.objects.filter(block=block), [split(lcz_6=1000), split(lcz_8=1000), split(lcz_g=1000)]):
        services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=0, split=s, submit=True)
    with pytest.raises(CommandError, match="no labelled blocks.*--include-disputed"):
        export(campaign, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()
    pkg = export(campaign, tmp_path / "pkg", include_disputed=True)
    assert len((pkg / "labels.csv").read_text().splitlines()) == 2


def test_bad_arguments(labelled, tmp_path):
    campaign, *_ = labelled
    with pytest.raises(CommandError, match="campaign 'Nope' does not exist"):
        call_command("export_dataset", campaign="Nope", out=str(tmp_path / "x"))
    pkg = export(campaign, tmp_path / "pkg")
    with pytest.raises(CommandError, match="inside the existing package"):
        export(campaign, pkg / "nested")
    with pytest.raises(CommandError, match="already exists"):
        export(campaign, pkg)
    with pytest.raises(CommandError, match="test-fraction"):
        export(campaign, tmp_path / "other", test_fraction=1.5)
    empty, _ = services.create_campaign("Empty", city="Nowhere")
    with pytest.raises(CommandError, match="no labelled blocks"):
        export(empty, tmp_path / "empty")
    assert not (tmp_path / "empty").exists() and not (tmp_path / "other").exists()
    assert Campaign.objects.count() == 2


def test_import_refuses_a_broken_package(labelled, tmp_path):
    campaign, *_ = labelled
    pkg = export(campaign, tmp_path / "pkg")
    with (pkg / "labels.csv").open("a") as f:
        f.write("tampered,1" + ",0" * 16 + "\n")
    other, _ = services.create_campaign("Copy", city="Helsinki")
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("import_dataset", str(pkg), campaign="Copy")
    assert StreetBlock.objects.filter(campaign=other).count() == 0


def test_export_maps_writes_fraction_cogs_with_the_right_values(labelled, tmp_path):
    import rasterio
    from pyproj import Transformer
    from rio_cogeo.cogeo import cog_validate

    campaign, *_ = labelled
    call_command("export_maps", campaign=campaign.name, source="consensus", out=str(tmp_path / "maps"),
                 resolution=2.0, verbosity=0)
    names = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert "dominant.tif" in names and "overview.png" in names and "fraction_lcz_6.tif" in names
    assert len([n for n in names if n.startswith("fraction_")]) == 17
    for name in ("fraction_lcz_6.tif", "dominant.tif"):
        assert cog_validate(str(tmp_path / "maps" / name), quiet=True)[0]
    block = StreetBlock.objects.order_by("block_key").first()  # its label is SPLITS[0]: 60 % LCZ 6, 40 % B
    c = block.geom.point_on_surface
    with rasterio.open(tmp_path / "maps" / "fraction_lcz_6.tif") as ds:
        assert ds.crs.to_epsg() == 32635  # the UTM zone of Helsinki
        x, y = Transformer.from_crs(4326, ds.crs, always_xy=True).transform(c.x, c.y)
        assert next(ds.sample([(x, y)]))[0] == pytest.approx(0.6)
        # the 2 x 2 blocks meet at a road crossing in the middle: no block there, nodata
        middle = ((ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.top + ds.bounds.bottom) / 2)
        assert next(ds.sample([middle]))[0] == ds.nodata
    with rasterio.open(tmp_path / "maps" / "fraction_lcz_b.tif") as ds:
        assert next(ds.sample([(x, y)]))[0] == pytest.approx(0.4)
    with rasterio.open(tmp_path / "maps" / "dominant.tif") as ds:
        assert next(ds.sample([(x, y)]))[0] == KEYS.index("lcz_6") + 1
        assert ds.colormap(1)[KEYS.index("lcz_6") + 1][:3] == (0xFF, 0x99, 0x55)
    with pytest.raises(CommandError, match="unknown source"):
        call_command("export_maps", campaign=campaign.name, source="no-such-model", out=str(tmp_path / "m2"))
    with pytest.raises(CommandError, match="already exists"):
        call_command("export_maps", campaign=campaign.name, out=str(tmp_path / "maps"))


@pytest.mark.slow
def test_train_msunet_trains_from_an_exported_package(labelled, tmp_path):
    campaign, *_ = labelled
    pkg = export(campaign, tmp_path / "pkg")
    call_command("train_msunet", dataset=str(pkg), out=str(tmp_path / "run"), encoder="swin_micro", epochs=1,
                 img_size=64, batch_size=4, device="cpu", verbosity=0, threads=1,
                 model_kwargs=["token_pool=all"])
    import json as _json

    card = _json.loads((tmp_path / "run" / "model_card.json").read_text())
    assert card["model_version"] and (tmp_path / "run" / "checkpoint.pt").exists()
    assert card["model_config"]["token_pool"] == "all"
    with pytest.raises(CommandError, match="--model"):
        call_command("train_msunet", dataset=str(pkg), out=str(tmp_path / "run3"), model_kwargs=["nope=1"],
                     verbosity=0)
    assert (tmp_path / "run" / "learning_curve.png").exists() and (tmp_path / "run" / "log.csv").exists()
    with pytest.raises(CommandError):
        call_command("train_msunet", dataset=str(tmp_path / "nope"), out=str(tmp_path / "run2"), verbosity=0)
