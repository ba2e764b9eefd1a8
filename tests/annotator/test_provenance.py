"""Provenance follows the data (#12): each block records its geometry's source and licence, the
package says what is really inside; people get normal accounts from the CLI; the README's commands
run without an environment (a local .env, one-line errors)."""
from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pyrosm
import pytest
import yaml
from django.apps import apps
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from shapely.geometry import box

from annotator import services
from annotator.models import Membership, StreetBlock
from tests.annotator.helpers import submit_block
from tests.conftest import METRIC_CRS, grid_roads

ROOT = Path(__file__).resolve().parents[2]
OSM = dict(source_name="OpenStreetMap contributors", licence="ODbL-1.0")
CITY = dict(source_name="City of Testville block map", licence="CC-BY-4.0")


def _provenance(campaign) -> set[tuple[str, str]]:
    return set(StreetBlock.objects.filter(campaign=campaign).values_list("source_name", "licence"))


# --- blocks record their source ---------------------------------------------------------------

@pytest.mark.django_db
def test_blocks_from_an_osm_extract_carry_odbl(campaign):
    call_command("import_osm_blocks", pyrosm.get_data("helsinki_pbf"), campaign=campaign.name, verbosity=0)
    assert StreetBlock.objects.filter(campaign=campaign).count() > 10
    assert _provenance(campaign) == {("OpenStreetMap contributors", "ODbL-1.0")}


@pytest.mark.django_db
def test_road_lines_file_needs_its_source_and_licence(campaign, tmp_path):
    path = tmp_path / "roads.geojson"
    grid_roads(n=3).to_file(path)
    with pytest.raises(CommandError) as refused:
        call_command("import_osm_blocks", str(path), campaign=campaign.name, verbosity=0)
    message = str(refused.value)
    assert "--source-name and --licence" in message and "OpenStreetMap contributors" in message
    assert "Nothing was changed" in message and not StreetBlock.objects.exists()

    call_command("import_osm_blocks", str(path), campaign=campaign.name, verbosity=0, **OSM)
    assert StreetBlock.objects.exists() and _provenance(campaign) == {tuple(OSM.values())}


EAST = (386_000.0, 6_671_970.0)  # the top-left corner of a 200 m square, 700 m east of grid_roads(n=3)


def _polygons(tmp_path, name="blocks.gpkg") -> Path:
    """Two 40 m squares inside the 200 m square at EAST."""
    path = tmp_path / name
    x, y = EAST
    gpd.GeoDataFrame(geometry=[box(x + 40, y - 160, x + 80, y - 120), box(x + 120, y - 80, x + 160, y - 40)],
                     crs=METRIC_CRS).to_file(path)
    return path


@pytest.mark.django_db
@pytest.mark.parametrize("given, missing", [({}, "--source-name and --licence"),
                                            ({"licence": "CC-BY-4.0"}, "--source-name"),
                                            ({"source_name": "City of Testville block map"}, "--licence")])
def test_import_blocks_refused_without_source_and_licence(campaign, tmp_path, given, missing):
    with pytest.raises(CommandError, match=f"pass {missing},"):
        call_command("import_blocks", str(_polygons(tmp_path)), campaign=campaign.name, **given)
    assert not StreetBlock.objects.exists()


@pytest.mark.django_db
def test_import_blocks_records_the_given_source(campaign, tmp_path):
    call_command("import_blocks", str(_polygons(tmp_path)), campaign=campaign.name, **CITY)
    assert StreetBlock.objects.count() == 2 and _provenance(campaign) == {tuple(CITY.values())}


@pytest.mark.django_db
def test_migration_backfills_blocks_from_roads_as_osm(campaign):
    square = "SRID=4326;POLYGON((24.93 60.17, 24.931 60.17, 24.931 60.171, 24.93 60.171, 24.93 60.17))"
    for i, source in enumerate(("osm_pbf", "road_lines", "polygons")):
        StreetBlock.objects.create(campaign=campaign, block_key=f"k{i}", geom=square, area_m2=1.0, source=source)
    importlib.import_module("annotator.migrations.0007_block_provenance").backfill(apps, None)
    got = dict(StreetBlock.objects.values_list("source", "source_name"))
    assert got == {"osm_pbf": "OpenStreetMap contributors", "road_lines": "OpenStreetMap contributors",
                   "polygons": ""}
    assert set(StreetBlock.objects.exclude(source="polygons").values_list("licence", flat=True)) == {"ODbL-1.0"}


# --- the package says what is inside ----------------------------------------------------------

def _labelled(campaign, tmp_path, geotiff_factory, *, with_osm: bool) -> dict[str, int]:
    """With OSM: imagery over the road grid and its blocks from OSM road lines; then imagery at
    EAST and 2 city polygons there; 3 interpreters; every assigned block labelled. Returns the
    labelled blocks per source."""
    if with_osm:
        x0, y0, x1, y1 = grid_roads(n=3).total_bounds
        tif = geotiff_factory(width=int(x1 - x0) + 40, height=int(y1 - y0) + 40, origin=(x0 - 20, y1 + 20))
        services.import_imagery(campaign, tif, licence="CC BY 4.0, test imagery provider")
        roads = tmp_path / "roads.geojson"
        grid_roads(n=3).to_file(roads)
        call_command("import_osm_blocks", str(roads), campaign=campaign.name, verbosity=0, **OSM)
    east = geotiff_factory("east.tif", width=200, height=200, origin=EAST)
    services.import_imagery(campaign, east, licence="CC BY 4.0, test imagery provider")
    call_command("import_blocks", str(_polygons(tmp_path)), campaign=campaign.name, **CITY)
    for name in ("ann", "bob", "cat"):
        user, _ = services.ensure_user(name, f"pw-{name}-12345", role="interpreter")
        services.add_member(campaign, user, "interpreter")
    services.assign_blocks(campaign, per_block=3)
    for block in StreetBlock.objects.filter(campaign=campaign, assignments__isnull=False).distinct():
        submit_block(block)
    done = StreetBlock.objects.filter(campaign=campaign, status="complete")
    return {name: done.filter(source_name=name).count() for name in (OSM["source_name"], CITY["source_name"])}


def _export(campaign, out: Path) -> Path:
    call_command("export_dataset", campaign=campaign.name, out=str(out), verbosity=0)
    return out


@pytest.mark.django_db
def test_mixed_sources_are_all_listed_with_their_licences(campaign, media_root, tmp_path, geotiff_factory):
    n = _labelled(campaign, tmp_path, geotiff_factory, with_osm=True)
    n_osm = n[OSM["source_name"]]
    assert n_osm > 1 and n[CITY["source_name"]] == 2
    pkg = _export(campaign, tmp_path / "mixed-v1")

    licence = (pkg / "LICENSE").read_text()
    assert f"OpenStreetMap contributors (ODbL-1.0, {n_osm} blocks)" in licence
    assert "City of Testville block map (CC-BY-4.0, 2 blocks)" in licence
    assert "shared alike under the ODbL" in licence and "CC BY 4.0, test imagery provider" in licence

    cff = yaml.safe_load((pkg / "CITATION.cff").read_text())
    assert cff["license"] == "CC-BY-4.0" and "OpenStreetMap" in cff["keywords"]
    refs = {r["title"]: r for r in cff["references"]}
    assert refs["Street-block geometry: OpenStreetMap contributors"]["license"] == "ODbL-1.0"
    assert refs["Street-block geometry: City of Testville block map"]["license"] == "CC-BY-4.0"
    assert any("CC BY 4.0, test imagery provider" in r["notes"] for r in cff["references"])
    assert "OpenStreetMap contributors (ODbL-1.0" in cff["abstract"] and "City of Testville" in cff["abstract"]

    croissant = json.loads((pkg / "croissant.json").read_text())
    names = [w["name"] for w in croissant["license"]]
    assert names[:3] == ["CC-BY-4.0", "CC-BY-4.0", "ODbL-1.0"]  # labels; the geometry sources, sorted by name
    assert "City of Testville" in croissant["license"][1]["description"]
    assert croissant["license"][2]["url"] == "https://opendatacommons.org/licenses/odbl/1-0/"
    assert "OpenStreetMap" in croissant["keywords"]
    mlc = str(Path(sys.executable).with_name("mlcroissant"))
    valid = subprocess.run([mlc, "validate", "--jsonld", str(pkg / "croissant.json")], capture_output=True,
                           text=True, timeout=120)
    assert valid.returncode == 0, valid.stdout + valid.stderr

    readme = (pkg / "README.md").read_text()
    assert f"City of Testville block map (CC-BY-4.0, 2 blocks); OpenStreetMap contributors (ODbL-1.0, {n_osm} " \
        "blocks)" in readme
    expected = [tuple(CITY.values())] * 2 + [tuple(OSM.values())] * n_osm
    blocks = gpd.read_file(pkg / "blocks.gpkg")
    assert sorted(zip(blocks.source_name, blocks.licence)) == expected

    # read back: the blocks keep their sources
    other, _ = services.create_campaign("Read back", city="Helsinki")
    call_command("import_dataset", str(pkg), campaign=other.name)
    assert sorted(StreetBlock.objects.filter(campaign=other).values_list("source_name", "licence")) == expected


@pytest.mark.django_db
def test_without_an_odbl_source_the_package_never_mentions_it(campaign, media_root, tmp_path, geotiff_factory):
    assert _labelled(campaign, tmp_path, geotiff_factory, with_osm=False)[CITY["source_name"]] == 2
    pkg = _export(campaign, tmp_path / "city-v1")
    text = {f: (pkg / f).read_text() for f in ("LICENSE", "CITATION.cff", "README.md", "croissant.json")}
    assert "City of Testville block map (CC-BY-4.0, 2 blocks)" in text["LICENSE"]
    for name, body in text.items():
        assert "ODbL" not in body and "OpenStreetMap" not in body and "shared alike" not in body, name


# --- people -----------------------------------------------------------------------------------

def _can_log_in(client, username: str, password: str) -> bool:
    from django.core.cache import cache

    cache.clear()
    return client.post("/accounts/login/", {"username": username, "password": password}).status_code == 302


@pytest.mark.django_db
def test_add_member_create_reads_the_password_from_stdin(campaign, client):
    out = io.StringIO()
    call_command("add_member", "nina", campaign=campaign.name, role="reviewer", create=True, password_stdin=True,
                 stdin=io.StringIO("Kettle-orbit-2931-dune\n"), stdout=out)
    user = User.objects.get(username="nina")
    assert not user.is_superuser and not user.is_staff and user.is_active
    assert {g.name for g in user.groups.all()} == {"reviewer"}
    assert Membership.objects.filter(campaign=campaign, user=user, role="reviewer").exists()
    assert "Kettle-orbit-2931-dune" not in out.getvalue()
    assert _can_log_in(client, "nina", "Kettle-orbit-2931-dune")


@pytest.mark.django_db
def test_add_member_create_generates_a_password_printed_once(campaign, client):
    out = io.StringIO()
    call_command("add_member", "omar", campaign=campaign.name, create=True, stdout=out)
    lines = [line for line in out.getvalue().splitlines() if "shown once" in line]
    assert len(lines) == 1
    password = lines[0].rsplit(" ", 1)[1]
    assert len(password) >= 16 and out.getvalue().count(password) == 1
    user = User.objects.get(username="omar")
    assert not user.is_superuser and not user.is_staff
    assert {g.name for g in user.groups.all()} == {"interpreter"}
    assert Membership.objects.filter(campaign=campaign, user=user, role="interpreter").exists()
    assert _can_log_in(client, "omar", password)


@pytest.mark.django_db
@pytest.mark.parametrize("existing", ["pia", "PIA"])
def test_add_member_create_refuses_an_existing_user(campaign, existing):
    User.objects.create_user(existing, password="Older-pass-8812")
    with pytest.raises(CommandError, match="already exists.*leave out --create"):
        call_command("add_member", "pia", campaign=campaign.name, create=True, password_stdin=True,
                     stdin=io.StringIO("Kettle-orbit-2931-dune\n"))
    assert User.objects.count() == 1 and not Membership.objects.exists()
    assert User.objects.get().check_password("Older-pass-8812")


@pytest.mark.django_db
def test_add_member_create_refuses_a_weak_password(campaign):
    with pytest.raises(CommandError, match="--password-stdin: .*too short"):
        call_command("add_member", "quin", campaign=campaign.name, create=True, password_stdin=True,
                     stdin=io.StringIO("abc\n"))
    assert not User.objects.exists()


# --- the README's commands without an environment -----------------------------------------------

SETTINGS_VARS = {"DJANGO_DEBUG", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "ALLOWED_HOSTS",
                 "CACHE_URL", "TILE_CACHE_URL", "DOTENV_PATH", "DJANGO_SETTINGS_MODULE"}


def _run(args: list[str], dotenv: Path, **env) -> subprocess.CompletedProcess:
    """`args` with none of the settings in the environment and `dotenv` as the .env file."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean | {"DOTENV_PATH": str(dotenv)} | env,
                          capture_output=True, text=True, timeout=120)


def test_without_settings_help_works_and_commands_say_what_to_set(tmp_path):
    no_env = tmp_path / "absent.env"
    helped = _run(["manage.py", "help"], no_env)
    assert helped.returncode == 0 and "import_blocks" in helped.stdout and "Traceback" not in helped.stderr
    usage = _run(["manage.py", "import_blocks", "--help"], no_env)
    assert usage.returncode == 0 and "--source-name" in usage.stdout and "Traceback" not in usage.stderr

    failed = _run(["manage.py", "create_campaign", "Wuhan 2026", "--city", "Wuhan"], no_env)
    assert failed.returncode == 1 and failed.stdout == "" and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines() == ["error: SECRET_KEY must be set when DJANGO_DEBUG is off: set it in the "
                                          "environment or in .env (make demo writes one)"]


def test_dotenv_fills_in_settings_and_the_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"DJANGO_DEBUG=1\nSECRET_KEY=from-the-file\nDATABASE_URL=spatialite:///{tmp_path}/db.sqlite3\n"
                      f"MEDIA_ROOT={tmp_path}/media\n")
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.SECRET_KEY, s.DATABASES['default']['ENGINE'].rsplit('.', 1)[1], s.MEDIA_ROOT)")
    env = {"DJANGO_SETTINGS_MODULE": "config.settings"}
    from_file = _run(["-c", code], dotenv, **env)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.split() == ["True", "from-the-file", "spatialite", f"{tmp_path}/media"]
    overridden = _run(["-c", code], dotenv, SECRET_KEY="from-the-environment", **env)
    assert overridden.stdout.split()[1] == "from-the-environment"
    ignored = _run(["-c", code], dotenv, DOTENV_PATH="", **env)
    assert ignored.returncode != 0 and "SECRET_KEY must be set" in ignored.stderr
