"""The guidelines panel's server side on PostGIS: Markdown rendered safely, set by an admin (form and
command, audited), the pure-block examples (threshold, order, statuses), blindness, who may see the
examples, and the example images' ETag."""
from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from PIL import Image

from annotator import curation, guidelines, selectors, services, tiles
from annotator.models import Assignment, AuditEvent, Campaign, StreetBlock
from lcz_model.classes import CLASSES, KEYS, index_of
from tests.annotator.helpers import split, submit_block
from tests.conftest import ORIGIN, write_geotiff

ROOT = Path(__file__).resolve().parents[2]
LCZ6 = index_of("6")


@pytest.fixture(autouse=True)
def private_tile_cache(settings):
    """A private in-memory cache for images (never clear() a shared Redis)."""
    settings.CACHES = {**settings.CACHES, "tiles": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "test-guidelines"}}
    tiles.tile_cache().clear()
    tiles.readers.clear()
    yield
    tiles.readers.clear()


# --- rendering ------------------------------------------------------------------------------------

def test_markdown_renders_and_nothing_active_survives():
    text = "\n".join([
        "## Built types",
        "Count **roofs**, not *shadows*; see [the LCZ paper](https://doi.org/10.1175/BAMS-D-11-00019.1).",
        "",
        "| class | hint |", "|---|---|", "| 6 | gardens |",
        "",
        "<script>alert('x')</script>",
        '<img src="x" onerror="alert(1)">',
        '<a href="javascript:alert(2)" onclick="alert(3)">click</a>',
        "[bad](javascript:alert(4)) [data](data:text/html;base64,PHNjcmlwdD4=)",
        '<iframe src="https://evil.example/"></iframe><style>body{display:none}</style>',
        '<p style="color:red" class="x">styled</p>',
    ])
    html = guidelines.render_guidelines(text)
    assert "<h2>Built types</h2>" in html
    assert "<strong>roofs</strong>" in html and "<em>shadows</em>" in html
    assert "<table>" in html and "<td>gardens</td>" in html
    assert re.search(r'<a href="https://doi.org/10.1175/BAMS-D-11-00019.1" rel="noopener noreferrer">', html)
    lowered = html.lower()
    for bad in ("<script", "alert(", "onerror", "onclick", "javascript:", "data:text", "<img", "<iframe",
                "<style", "style=", "class="):
        assert bad not in lowered, (bad, html)
    assert "styled" in html and "click" in html  # the text stays, the markup goes
    assert guidelines.render_guidelines("") == "" and guidelines.render_guidelines("  \n") == ""


def test_set_guidelines_is_audited_and_bounded(campaign):
    assert guidelines.set_guidelines(campaign, "# Hello\r\nworld") is True
    campaign.refresh_from_db()
    assert campaign.guidelines == "# Hello\nworld"
    event = AuditEvent.objects.get(action="set_guidelines", campaign=campaign)
    assert event.before["chars"] == 0 and event.after["chars"] == len("# Hello\nworld")
    assert guidelines.set_guidelines(campaign, "# Hello\nworld") is False  # unchanged: no second event
    assert AuditEvent.objects.filter(action="set_guidelines").count() == 1
    with pytest.raises(guidelines.GuidelinesError):
        guidelines.set_guidelines(campaign, "x" * (guidelines.MAX_GUIDELINES_CHARS + 1))
    campaign.refresh_from_db()
    assert campaign.guidelines == "# Hello\nworld"


def test_set_guidelines_command(campaign, tmp_path, capsys):
    md = tmp_path / "guide.md"
    md.write_text("# Our rules\n\n- trees over roofs: count the crowns\n", encoding="utf-8")
    call_command("set_guidelines", campaign.name, str(md))
    campaign.refresh_from_db()
    assert campaign.guidelines.startswith("# Our rules")
    assert "guidelines set" in capsys.readouterr().out
    with pytest.raises(CommandError, match="does not exist"):
        call_command("set_guidelines", "No such campaign", str(md))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("set_guidelines", campaign.name, str(tmp_path / "missing.md"))
    call_command("set_guidelines", campaign.name, "-", stdin=io.StringIO("from *stdin*"))
    campaign.refresh_from_db()
    assert campaign.guidelines == "from *stdin*"


def test_admin_edits_guidelines_through_the_service(campaign):
    admin = User.objects.create_superuser("root", password="pw-root-12345")
    client = Client()
    client.force_login(admin)
    url = f"/admin/annotator/campaign/{campaign.pk}/change/"
    page = client.get(url).content.decode()
    assert '<textarea name="guidelines"' in page
    assert "Raw HTML, scripts and images are removed" in page  # the note on supported Markdown
    data = {"name": campaign.name, "city": campaign.city, "description": "", "imagery_licence": "CC0",
            "imagery_attribution": "", "interpreters_per_block": 3, "dispute_tv_threshold": 0.25,
            "acquisition_strategy": "bald", "assisted_rounds": "[]", "active_model_version": "", "mosaic_path": "",
            "guidelines": "## Rule one\n<script>alert(1)</script>", "_save": "Save"}
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign.refresh_from_db()
    assert campaign.guidelines.startswith("## Rule one") and campaign.imagery_licence == "CC0"
    assert AuditEvent.objects.filter(action="set_guidelines", actor=admin, campaign=campaign).exists()
    preview = client.get(url).content.decode()
    assert "<h2>Rule one</h2>" in preview and "<script>alert(1)" not in preview


# --- examples -------------------------------------------------------------------------------------

@pytest.fixture
def imagery(team, campaign, media_root, tmp_path):
    """A 300 m x 300 m random RGB scene over the team's 4 blocks."""
    tif = write_geotiff(tmp_path / "scene.tif", width=300, height=300, origin=ORIGIN)
    scene, _ = services.import_imagery(campaign, tif, licence="CC0 test imagery", attribution="test")
    return scene


@pytest.fixture
def labelled(team, campaign):
    """Block 0: 100 % LCZ 6 by all (TV 0). Block 1: LCZ 6 100/90/80 % (consensus exactly 90 %, TV > 0).
    Block 2: LCZ 6 90/88/89 % (consensus 89 %: not pure). Block 3: still open."""
    b = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    submit_block(b[0], [split(lcz_6=1000)] * 3)
    submit_block(b[1], [split(lcz_6=1000), split(lcz_6=900, lcz_b=100), split(lcz_6=800, lcz_b=200)])
    submit_block(b[2], [split(lcz_6=900, lcz_b=100), split(lcz_6=880, lcz_b=120), split(lcz_6=890, lcz_b=110)])
    for block in b:
        block.refresh_from_db()
    assert [x.status for x in b[:3]] == ["complete"] * 3
    assert b[1].final_permille[LCZ6] == 900 and b[1].agreement_tv > 0
    assert b[2].final_permille[LCZ6] == 890
    return b


def _ids(rows):
    return [r["id"] for r in rows]


def test_pure_examples_threshold_order_and_statuses(team, campaign, labelled):
    b = labelled
    pure = selectors.pure_example_blocks(team["rev"], campaign, per_class=4, threshold=900)
    assert list(pure) == [LCZ6]                               # no other class has a pure block
    assert _ids(pure[LCZ6]) == [b[0].pk, b[1].pk]             # 89 % is not pure; best agreement first
    assert [r["share"] for r in pure[LCZ6]] == [1000, 900]
    assert _ids(selectors.pure_example_blocks(team["rev"], campaign, per_class=1)[LCZ6]) == [b[0].pk]

    # an adjudicated block counts by its final split; a disputed one never
    curation.adjudicate(b[2], team["rev"], split=split(lcz_6=950, lcz_b=50), reason="the lawn is tiny",
                        request_id=uuid.uuid4())
    assert b[2].pk in _ids(selectors.pure_example_blocks(team["rev"], campaign)[LCZ6])
    StreetBlock.objects.filter(pk=b[1].pk).update(status=StreetBlock.Status.DISPUTED)
    assert b[1].pk not in _ids(selectors.pure_example_blocks(team["rev"], campaign)[LCZ6])


def test_an_interpreter_never_gets_examples_of_a_block_they_label_blind(team, campaign, imagery, labelled):
    b0 = labelled[0]
    holders = set(Assignment.objects.filter(block=b0).values_list("interpreter__username", flat=True))
    outsider = next(u for name, u in team.items() if name in ("ann", "bob", "cat", "dan") and name not in holders)
    insider = team[sorted(holders)[0]]
    # the outsider is given b0 blind (as a later assignment pass would): it is now blind-pending for them
    Assignment.objects.create(campaign=campaign, block=b0, interpreter=outsider, round=1)
    assert b0.pk in selectors.blind_pending_block_ids(outsider, campaign)

    assert b0.pk not in _ids(selectors.pure_example_blocks(outsider, campaign).get(LCZ6, []))
    assert b0.pk in _ids(selectors.pure_example_blocks(insider, campaign)[LCZ6])

    def example_urls(user):
        c = Client()
        c.force_login(user)
        body = c.get(f"/api/campaigns/{campaign.pk}/guidelines/").json()
        return c, [e["url"] for e in body["classes"][LCZ6]["examples"]]

    c_out, urls_out = example_urls(outsider)
    c_in, urls_in = example_urls(insider)
    image_url = f"/api/campaigns/{campaign.pk}/guidelines/examples/{b0.pk}/"
    assert image_url in urls_in and image_url not in urls_out
    assert c_in.get(image_url).status_code == 200
    assert c_out.get(image_url).status_code == 404           # not even the picture of it


def test_payload_classes_and_synthetic_fallback(team, campaign, imagery, labelled):
    guidelines.set_guidelines(campaign, "Look at **roofs** first.")
    c = Client()
    c.force_login(team["rev"])
    response = c.get(f"/api/campaigns/{campaign.pk}/guidelines/")
    assert response.status_code == 200
    body = response.json()
    assert body["guidelines_html"] == "<p>Look at <strong>roofs</strong> first.</p>"
    assert [k["key"] for k in body["classes"]] == list(KEYS)
    assert [k["colour"] for k in body["classes"]] == [c.colour for c in CLASSES]
    assert [k["keyboard"] for k in body["classes"]][:10] == list("1234567890")
    own = body["classes"][LCZ6]["examples"]
    assert [e["source"] for e in own] == ["campaign", "campaign"]
    assert own[0]["url"] == f"/api/campaigns/{campaign.pk}/guidelines/examples/{labelled[0].pk}/"
    for cls in body["classes"]:
        if cls["index"] == LCZ6:
            continue
        assert [e["source"] for e in cls["examples"]] == ["synthetic"] * guidelines.SYNTHETIC_PER_CLASS
        for e in cls["examples"]:   # the committed files the static URL points at
            rel = e["url"].split("/static/", 1)[1]
            path = ROOT / "frontend" / "static" / rel
            assert path.is_file() and path.stat().st_size < 60_000, path
            assert "synthetic" in e["alt"]
    script = (ROOT / "scripts" / "make_class_examples.py").read_text()
    assert f"SYNTHETIC_PER_CLASS = {guidelines.SYNTHETIC_PER_CLASS}" in script


def test_without_imagery_every_class_shows_synthetic_examples(team, campaign, labelled):
    c = Client()
    c.force_login(team["rev"])
    body = c.get(f"/api/campaigns/{campaign.pk}/guidelines/").json()
    assert {e["source"] for k in body["classes"] for e in k["examples"]} == {"synthetic"}
    assert c.get(f"/api/campaigns/{campaign.pk}/guidelines/examples/{labelled[0].pk}/").status_code == 404


def test_only_members_see_the_panel_and_only_pure_blocks_are_served(team, campaign, imagery, labelled):
    other, _ = services.create_campaign("Other campaign", city="Elsewhere")
    stranger, _ = services.ensure_user("eve", "pw-eve-12345", role="interpreter")
    services.add_member(other, stranger, "interpreter")
    panel = f"/api/campaigns/{campaign.pk}/guidelines/"
    image = f"/api/campaigns/{campaign.pk}/guidelines/examples/{labelled[0].pk}/"

    anonymous = Client()
    assert anonymous.get(panel).status_code == 403 and anonymous.get(image).status_code == 403
    c = Client()
    c.force_login(stranger)
    assert c.get(panel).status_code == 404 and c.get(image).status_code == 404
    c.force_login(team["adm"])                                 # admins see every campaign
    assert c.get(panel).status_code == 200 and c.get(image).status_code == 200
    c.force_login(team["ann"])
    for block in (labelled[2], labelled[3]):                   # not pure / not released: no such example
        assert c.get(f"/api/campaigns/{campaign.pk}/guidelines/examples/{block.pk}/").status_code == 404
    # the block through another campaign's address: no
    c.force_login(team["adm"])
    assert c.get(f"/api/campaigns/{other.pk}/guidelines/examples/{labelled[0].pk}/").status_code == 404
    User.objects.filter(pk=team["ann"].pk).update(is_active=False)
    assert Client().get(image).status_code == 403


def test_example_image_is_the_block_clipped_with_an_etag(team, campaign, imagery, labelled):
    c = Client()
    c.force_login(team["ann"])
    url = f"/api/campaigns/{campaign.pk}/guidelines/examples/{labelled[0].pk}/"
    first = c.get(url)
    assert first.status_code == 200 and first["Content-Type"] == "image/png"
    etag = first["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{24}"', etag) and "private" in first["Cache-Control"]
    img = Image.open(io.BytesIO(first.content))
    assert img.mode == "RGBA" and img.size == (guidelines.EXAMPLE_SIZE, guidelines.EXAMPLE_SIZE)
    alpha = img.getchannel("A")
    assert alpha.getextrema() == (0, 255)                     # clipped: outside the block transparent

    again = c.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag and not again.content
    assert c.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    other = c.get(f"/api/campaigns/{campaign.pk}/guidelines/examples/{labelled[1].pk}/")
    assert other.status_code == 200 and other["ETag"] != etag

    # a rebuilt mosaic (new imagery identity) turns the ETag over
    services.rebuild_mosaic(Campaign.objects.get(pk=campaign.pk))
    fresh = c.get(url, HTTP_IF_NONE_MATCH=etag)
    assert fresh.status_code == 200 and fresh["ETag"] != etag
