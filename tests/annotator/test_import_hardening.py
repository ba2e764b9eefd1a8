"""Bad input never becomes a 500, a hang or a half-done import (issue #10, items 10 and 11).

import_dataset: paths outside the package, symlinks, devices and named pipes are refused before
anything is read; messages name the file and line, never echo its content; malformed packages
get a message, not a traceback; ids longer than the schema allows are refused; nothing changes.
import_imagery: non-regular files, footprints outside latitude/longitude and truncated or corrupt
GeoTIFFs are refused with a message and leave nothing in MEDIA_ROOT.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
from django.core.management import CommandError, call_command

from annotator import services
from annotator.models import AuditEvent, ImageryScene, StreetBlock
from lcz_model.classes import KEYS
from lcz_model.package_writer import write_sha256sums
from tests.annotator.helpers import PACKAGE_IDS, write_package

pytestmark = pytest.mark.django_db

SECRET = "TOP-SECRET-CONTENT-42"


class Hung(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds=15):
    """Fail (instead of blocking the suite) when the code under test waits on a named pipe."""
    def on_alarm(signum, frame):
        raise Hung(f"still running after {seconds} s: something opened a named pipe")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------------------------
# import_dataset


def add_sum_line(pkg: Path, line: str) -> None:
    with (pkg / "SHA256SUMS").open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def pkg(tmp_path):
    return write_package(tmp_path / "pkg-v1")


@pytest.fixture
def target(db):
    campaign, _ = services.create_campaign("Copy", city="Helsinki")
    return campaign


@pytest.fixture
def hashed(monkeypatch):
    """Every path whose content the checksum verification reads."""
    from lcz_model import package

    seen, real = [], package.sha256_file
    monkeypatch.setattr(package, "sha256_file", lambda p, *a, **k: (seen.append(Path(p)), real(p, *a, **k))[1])
    return seen


def refused(pkg_path, campaign) -> str:
    """Run import_dataset expecting a refusal; check nothing changed; return the message."""
    audits = AuditEvent.objects.count()
    with no_hang():
        with pytest.raises(CommandError) as exc:
            call_command("import_dataset", str(pkg_path), campaign=campaign.name, verbosity=0)
    msg = str(exc.value)
    assert "Nothing was changed" in msg
    assert StreetBlock.objects.filter(campaign=campaign).count() == 0
    assert AuditEvent.objects.count() == audits
    return msg


def test_the_handmade_package_imports(pkg, target):
    call_command("import_dataset", str(pkg), campaign=target.name, verbosity=0)
    assert sorted(StreetBlock.objects.filter(campaign=target).values_list("block_key", flat=True)) == list(PACKAGE_IDS)


@pytest.mark.parametrize("where", ["parent", "absolute", "etc-passwd"])
def test_sha256sums_entry_outside_the_package_is_refused_unread(pkg, target, tmp_path, hashed, where):
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the package\n")
    entry = {"parent": "../outside.txt", "absolute": str(outside), "etc-passwd": "/etc/passwd"}[where]
    real = Path("/etc/passwd") if where == "etc-passwd" else outside
    add_sum_line(pkg, f"{sha256(real)}  {entry}")
    msg = refused(pkg, target)
    assert "SHA256SUMS line 5" in msg and "outside the package" in msg
    assert entry not in msg
    assert not any(p.resolve() == real.resolve() for p in hashed), "a file outside the package was read"


@pytest.mark.parametrize("kind", ["labels-to-copy", "extra-to-etc-passwd", "folder"])
def test_symlink_inside_the_package_is_refused(pkg, target, tmp_path, hashed, kind):
    if kind == "labels-to-copy":  # same bytes: the checksum alone cannot tell
        copy = tmp_path / "labels-copy.csv"
        shutil.copy(pkg / "labels.csv", copy)
        (pkg / "labels.csv").unlink()
        os.symlink(copy, pkg / "labels.csv")
        name = "labels.csv"
    elif kind == "extra-to-etc-passwd":
        os.symlink("/etc/passwd", pkg / "notes.txt")
        add_sum_line(pkg, f"{sha256('/etc/passwd')}  notes.txt")
        name = "notes.txt"
    else:
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        os.symlink(outside, pkg / "images")
        name = "images"
    msg = refused(pkg, target)
    assert "symbolic link" in msg and name in msg
    assert hashed == [], "files were read before the package was refused"


@pytest.mark.parametrize("which", ["listed-extra", "labels.csv"])
def test_named_pipe_in_the_package_is_refused_without_opening_it(pkg, target, hashed, which):
    fifo = pkg / ("notes.txt" if which == "listed-extra" else "labels.csv")
    if which == "labels.csv":
        fifo.unlink()
    else:
        add_sum_line(pkg, f"{'0' * 64}  notes.txt")
    os.mkfifo(fifo)
    msg = refused(pkg, target)  # a pipe that is opened blocks: no_hang turns that into a failure
    assert "named pipe" in msg and fifo.name in msg
    assert hashed == []


def test_device_file_in_the_package_is_refused(pkg, target, hashed):
    try:
        os.mknod(pkg / "dev-null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device file here: {exc}")
    add_sum_line(pkg, f"{hashlib.sha256(b'').hexdigest()}  dev-null")
    msg = refused(pkg, target)
    assert "device" in msg and "dev-null" in msg
    assert hashed == []


def _rewrite(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")


def _bad_sums_line(pkg):
    add_sum_line(pkg, f"this line holds {SECRET} and no checksum")
    return "SHA256SUMS line 5"


def _non_numeric(pkg):
    _rewrite(pkg / "labels.csv", "blk-c,", f"{SECRET},x")
    write_sha256sums(pkg)
    return "labels.csv line 4"


def _wrong_count(pkg):
    with (pkg / "labels.csv").open("a", encoding="utf-8") as f:
        f.write(f"{SECRET},1,0\n")
    write_sha256sums(pkg)
    return "labels.csv line 6"


def _duplicate_id(pkg):
    _rewrite(pkg / "labels.csv", "blk-a,", f"{SECRET},")
    _rewrite(pkg / "labels.csv", "blk-b,", f"{SECRET},")
    write_sha256sums(pkg)
    return "labels.csv line 3"


def _out_of_range(pkg):
    _rewrite(pkg / "labels.csv", "blk-a,1,", f"{SECRET},2,")
    write_sha256sums(pkg)
    return "labels.csv line 2"


def _bad_header(pkg):
    _rewrite(pkg / "labels.csv", "lcz_1,", f"{SECRET},")
    write_sha256sums(pkg)
    return "labels.csv line 1"


def _bad_first_column(pkg):
    _rewrite(pkg / "labels.csv", "block_id,", f"{SECRET},")
    write_sha256sums(pkg)
    return "labels.csv line 1"


def _unknown_split_id(pkg):
    with (pkg / "splits" / "train.txt").open("a", encoding="utf-8") as f:
        f.write(SECRET + "\n")
    write_sha256sums(pkg)
    return "splits/train.txt line 4"


@pytest.mark.parametrize("spoil", [_bad_sums_line, _non_numeric, _wrong_count, _duplicate_id, _out_of_range,
                                   _bad_header, _bad_first_column, _unknown_split_id],
                         ids=lambda f: f.__name__.strip("_"))
def test_messages_name_file_and_line_but_never_echo_content(pkg, target, spoil):
    where = spoil(pkg)
    msg = refused(pkg, target)
    assert where in msg
    assert SECRET not in msg


def _bytes(rel, data):
    def spoil(pkg):
        (pkg / rel).write_bytes(data)
        write_sha256sums(pkg)
    return spoil


def _delete(rel):
    def spoil(pkg):
        (pkg / rel).unlink()
        write_sha256sums(pkg)
    return spoil


def _gpkg(edit):
    def spoil(pkg):
        gdf = gpd.read_file(pkg / "blocks.gpkg")
        gdf = edit(gdf)
        (pkg / "blocks.gpkg").unlink()
        gdf.to_file(pkg / "blocks.gpkg", layer="blocks", driver="GPKG")
        write_sha256sums(pkg)
    return spoil


def _null_geometry(gdf):
    gdf.loc[1, "geometry"] = None
    return gdf


def _no_crs(gdf):
    return gdf.set_crs(None, allow_override=True)


def _duplicate_gpkg_row(gdf):
    return gpd.GeoDataFrame(gdf.iloc[[0, 0, 1, 2, 3]].reset_index(drop=True), crs=gdf.crs)


def _absurd_coords(gdf):
    from shapely import affinity
    gdf["geometry"] = gdf.geometry.apply(lambda g: affinity.translate(g, 500.0, 0.0))
    return gdf


def _text_area(gdf):
    gdf["area_m2"] = ["a lot"] * len(gdf)
    return gdf


LATIN1 = ("block_id," + ",".join(KEYS) + "\nbl\xe9-a,1" + ",0" * 16 + "\n").encode("latin-1")


@pytest.mark.parametrize("spoil, expected", [
    (_delete("labels.csv"), "labels.csv is missing"),
    (_delete("blocks.gpkg"), "blocks.gpkg is missing"),
    (_delete("splits/test.txt"), "test.txt is missing"),
    (lambda pkg: (pkg / "SHA256SUMS").unlink(), "SHA256SUMS is missing"),
    (_bytes("labels.csv", LATIN1), "labels.csv line 2 is not UTF-8"),
    (_bytes("splits/train.txt", b"blk-a\n\xff\xfe\n"), "train.txt line 2 is not UTF-8"),
    (_bytes("labels.csv", b""), "labels.csv is empty"),
    (_bytes("labels.csv", ("block_id," + ",".join(KEYS) + "\n\"blk-a" + "x" * 200_000).encode()),
     "labels.csv line 2 is not valid CSV"),
    (_bytes("blocks.gpkg", b"SQLite format 3\x00" + b"\x00" * 200), "blocks.gpkg cannot be read"),
    (_bytes("blocks.gpkg", os.urandom(4096)), "blocks.gpkg cannot be read"),
    (_bytes("croissant.json", b'{"name": "x",'), "croissant.json is not valid JSON (line 1"),
    (_gpkg(lambda g: g.drop(columns=["block_id"])), "no block_id column"),
    (_gpkg(_null_geometry), "no geometry"),
    (_gpkg(_no_crs), "no CRS"),
    (_gpkg(_duplicate_gpkg_row), "more than one row"),
    (_gpkg(_absurd_coords), "outside valid latitude/longitude"),
    (_gpkg(_text_area), "area_m2"),
], ids=["no-labels", "no-gpkg", "no-split", "no-sums", "labels-latin1", "split-binary", "labels-empty",
        "csv-field-too-large", "gpkg-truncated", "gpkg-random", "bad-json", "gpkg-no-block-id",
        "gpkg-null-geometry", "gpkg-no-crs", "gpkg-duplicate-row", "gpkg-absurd-coordinates", "gpkg-text-area"])
def test_malformed_package_gives_a_message_not_a_traceback(pkg, target, spoil, expected):
    spoil(pkg)
    msg = refused(pkg, target)
    assert expected in msg


def test_zip_that_is_not_a_zip(pkg, target, tmp_path):
    fake = tmp_path / "pkg-v1.zip"
    fake.write_bytes(os.urandom(2048))
    assert "not a zip archive" in refused(fake, target)
    real = tmp_path / "real.zip"
    with zipfile.ZipFile(real, "w") as z:
        z.write(pkg / "labels.csv", "pkg-v1/labels.csv")
    assert "unzip it" in refused(real, target)
    assert "does not exist" in refused(tmp_path / "nowhere", target)


def test_named_pipe_as_the_package_path_is_refused(target, tmp_path):
    os.mkfifo(tmp_path / "pkg.zip")
    assert "not a folder" in refused(tmp_path / "pkg.zip", target)


def test_block_id_longer_than_the_schema_allows_is_refused(tmp_path, target):
    long_id = "b" * 41
    pkg = write_package(tmp_path / "long-v1", ids=("blk-a", long_id, "blk-c"))
    msg = refused(pkg, target)
    assert "labels.csv line 3" in msg and "41 characters" in msg and "at most 40" in msg
    assert long_id not in msg


# --------------------------------------------------------------------------------------------
# import_imagery


def imagery_refused(path, campaign, media_root, **kw) -> str:
    with no_hang():
        with pytest.raises(CommandError) as exc:
            call_command("import_imagery", str(path), campaign=campaign.name, **kw)
    msg = str(exc.value)
    assert "Nothing was changed" in msg
    assert ImageryScene.objects.count() == 0
    assert list(media_root.rglob("*")) == [], "files or folders were left in MEDIA_ROOT"
    return msg


def test_named_pipe_is_refused_without_hanging(campaign, media_root, tmp_path):
    os.mkfifo(tmp_path / "scene.tif")
    assert "not a regular file" in imagery_refused(tmp_path / "scene.tif", campaign, media_root)


def test_named_pipe_beside_the_geotiff_is_refused_without_hanging(campaign, media_root, geotiff_factory, tmp_path):
    src = geotiff_factory("scene.tif")
    os.mkfifo(tmp_path / "scene.tif.aux.xml")  # GDAL opens sidecar files: this one would block it
    msg = imagery_refused(src, campaign, media_root)
    assert "scene.tif.aux.xml" in msg and "not a regular file" in msg


def test_device_is_refused(campaign, media_root):
    assert "not a regular file" in imagery_refused("/dev/null", campaign, media_root)


@pytest.mark.parametrize("kw", [
    dict(crs="EPSG:4326", origin=(385_000.0, 6_672_000.0), res=1.0),  # metres labelled as degrees
    dict(crs="EPSG:4326", origin=(179.9999, 10.0), res=0.001),       # runs past the antimeridian
    dict(crs="EPSG:3067", origin=(9e7, 9e7), res=1.0),               # nowhere on Earth
], ids=["metres-as-degrees", "past-180", "metric-nowhere"])
def test_footprint_outside_latitude_longitude_is_refused(campaign, media_root, geotiff_factory, kw):
    msg = imagery_refused(geotiff_factory("far.tif", **kw), campaign, media_root)
    assert "outside valid latitude/longitude" in msg


def _truncated(tmp_path, geotiff_factory, fraction):
    full = geotiff_factory("full.tif", width=300, height=200)
    data = full.read_bytes()
    out = tmp_path / "half.tif"
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_geotiff_is_refused_and_leaves_nothing(campaign, media_root, geotiff_factory, tmp_path, fraction):
    msg = imagery_refused(_truncated(tmp_path, geotiff_factory, fraction), campaign, media_root)
    assert "truncated or corrupt" in msg
    assert "Traceback" not in msg


def test_random_bytes_with_tif_extension_are_refused(campaign, media_root, tmp_path):
    (tmp_path / "noise.tif").write_bytes(b"II*\x00" + os.urandom(8192))
    assert "not a raster GDAL can read" in imagery_refused(tmp_path / "noise.tif", campaign, media_root)


def test_corrupt_pixels_found_only_while_writing_the_cog_leave_nothing(campaign, media_root, tmp_path):
    """Deflate tiles garbled in the middle of the file: the checks pass, writing the COG fails."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    good = tmp_path / "deflate.tif"
    data = np.random.default_rng(0).integers(0, 255, (3, 200, 300)).astype("uint8")
    with rasterio.open(good, "w", driver="GTiff", width=300, height=200, count=3, dtype="uint8", crs="EPSG:3067",
                       transform=from_origin(385_000, 6_672_000, 1, 1), compress="deflate") as dst:
        dst.write(data)
    raw = bytearray(good.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 2000] = np.random.default_rng(1).integers(0, 255, 2000).astype("uint8").tobytes()
    bad = tmp_path / "garbled.tif"
    bad.write_bytes(bytes(raw))
    assert "truncated or corrupt" in imagery_refused(bad, campaign, media_root)


def test_failure_while_writing_the_cog_leaves_no_folder(campaign, media_root, geotiff_factory, monkeypatch):
    """Pixels that fail to decode only when the COG is written (past the checks) are caught too."""
    from rasterio.errors import RasterioIOError
    from rio_cogeo import cogeo

    def broken(src, dst, *a, **k):
        Path(dst).write_bytes(b"half a COG")
        raise RasterioIOError("Read failed. See previous exception for details.")

    monkeypatch.setattr(cogeo, "cog_translate", broken)
    msg = imagery_refused(geotiff_factory(), campaign, media_root)
    assert "truncated or corrupt" in msg


@pytest.mark.parametrize("kw, field", [
    (dict(attribution="x" * 301), "--attribution"),
    (dict(name="n" * 201), "--name"),
], ids=["attribution", "name"])
def test_values_longer_than_the_schema_allows_are_refused(campaign, media_root, geotiff_factory, kw, field):
    msg = imagery_refused(geotiff_factory(), campaign, media_root, **kw)
    assert field in msg and "at most" in msg
