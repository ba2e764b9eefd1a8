"""The coordinator's dashboard, the plots, the map layer, the review queue and the adjudication page
(Django test client on PostGIS): who may see them, that the figures are the ones
``selectors.campaign_agreement`` computes, valid non-blank PNGs, and the "not enough data" states."""
from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from django.core.cache import cache
from django.urls import include, path
from PIL import Image

import config.urls
from annotator import selectors, services
from annotator.models import Assignment, StreetBlock
from frontend import plots
from tests.annotator.helpers import split, submit_block

# Until config/urls.py mounts the dashboard, these tests mount it themselves (and only then).
urlpatterns = list(config.urls.urlpatterns)
if not any(getattr(p, "namespace", None) == "dashboard" for p in urlpatterns):
    urlpatterns.insert(0, path("dashboard/", include("frontend.dashboard_urls")))

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def curated(team, campaign):
    """Block 0 complete (LCZ 6), block 1 disputed (thirds), block 2 complete (LCZ 8), block 3 one draft."""
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    near6 = {"ann": split(lcz_6=600, lcz_b=400), "bob": split(lcz_6=700, lcz_b=300),
             "cat": split(lcz_6=650, lcz_b=350), "dan": split(lcz_6=550, lcz_b=450)}
    submit_block(blocks[0], near6.__getitem__)
    users = list(Assignment.objects.filter(block=blocks[1]).order_by("interpreter__username")
                 .values_list("interpreter__username", flat=True))
    thirds = dict(zip(users, [split(lcz_6=1000), split(lcz_b=1000), split(lcz_d=1000)]))
    submit_block(blocks[1], thirds.__getitem__)
    near8 = {"ann": split(lcz_8=800, lcz_e=200), "bob": split(lcz_8=750, lcz_e=250),
             "cat": split(lcz_8=900, lcz_e=100), "dan": split(lcz_8=850, lcz_e=150)}
    submit_block(blocks[2], near8.__getitem__)
    draft = Assignment.objects.filter(block=blocks[3]).order_by("interpreter__username").first()
    services.save_annotation(draft, draft.interpreter, request_id=uuid.uuid4(), version=None,
                             split=split(lcz_6=500), submit=False)
    for b in blocks:
        b.refresh_from_db()
    assert [b.status for b in blocks] == ["complete", "disputed", "complete", "in_progress"]
    return blocks


def login(client, user):
    client.force_login(user)
    return client


def png_of(response) -> Image.Image:
    assert response.status_code == 200, response.content[:200]
    assert response["Content-Type"] == "image/png"
    img = Image.open(io.BytesIO(response.content))
    img.load()
    assert img.format == "PNG" and img.width > 200 and img.height > 150
    return img


def non_blank(img: Image.Image) -> bool:
    a = np.asarray(img.convert("RGB"), dtype=float)
    return a.std() > 10 and len(np.unique(a.reshape(-1, 3), axis=0)) > 20


# --- access control ---------------------------------------------------------------------------

def test_only_reviewers_and_admins_get_in(client, team, campaign, curated):
    disputed = curated[1]
    urls = [f"/dashboard/campaigns/{campaign.pk}/", f"/dashboard/campaigns/{campaign.pk}/review/",
            f"/dashboard/review/{disputed.pk}/", f"/dashboard/campaigns/{campaign.pk}/agreement.geojson"]
    urls += [f"/dashboard/campaigns/{campaign.pk}/plots/{k}.png" for k in plots.KINDS]
    # anonymous: pages send to the login page, data endpoints refuse
    for url in urls:
        r = client.get(url)
        assert (r.status_code, url) == ((302, url) if url.endswith("/") else (403, url))
        if r.status_code == 302:
            assert r["Location"].startswith("/accounts/login/")
    # an interpreter of the campaign: 403 everywhere, including the review page of their own block
    own = Assignment.objects.filter(interpreter=team["ann"], block__status="disputed").first()
    assert own is not None
    login(client, team["ann"])
    for url in urls + ["/dashboard/"]:
        assert (client.get(url).status_code, url) == (403, url)
    # the campaign's reviewer and an admin: 200 (every plot kind: see the PNG test)
    for who in ("rev", "adm"):
        login(client, team[who])
        for url in urls[:5] + ["/dashboard/"]:
            assert (client.get(url).status_code, url) == (200, url)
    # unknown campaign or block: 404; a block not every interpreter has submitted: 404
    login(client, team["rev"])
    assert client.get("/dashboard/campaigns/999999/").status_code == 404
    assert client.get("/dashboard/campaigns/999999/plots/tv.png").status_code == 404
    assert client.get("/dashboard/review/999999/").status_code == 404
    assert client.get(f"/dashboard/review/{curated[3].pk}/").status_code == 404
    assert client.get(f"/dashboard/campaigns/{campaign.pk}/plots/nope.png").status_code == 404


def test_reviewer_of_another_campaign_is_refused(client, team, campaign, curated):
    other, _ = services.create_campaign("Other campaign", city="Espoo")
    stranger, _ = services.ensure_user("eve", "pw-eve-12345", role="reviewer")
    services.add_member(other, stranger, "reviewer")
    login(client, stranger)
    assert client.get(f"/dashboard/campaigns/{other.pk}/").status_code == 200
    assert client.get(f"/dashboard/campaigns/{campaign.pk}/").status_code == 403
    assert client.get(f"/dashboard/campaigns/{campaign.pk}/plots/alpha.png").status_code == 403
    assert client.get(f"/dashboard/review/{curated[1].pk}/").status_code == 403
    index = client.get("/dashboard/").content.decode()
    assert "Other campaign" in index and "Test campaign" not in index


# --- the figures ------------------------------------------------------------------------------

def test_dashboard_shows_the_agreement_figures_and_progress(client, team, campaign, curated):
    figures = selectors.campaign_agreement(campaign)
    assert figures["n_blocks"] == 3 and figures["fleiss_kappa_dominant"]["kappa"] is not None
    html = login(client, team["rev"]).get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    assert "Not enough data yet" not in html
    kappa = figures["fleiss_kappa_dominant"]["kappa"]
    assert f'<td class="value">{kappa:.3f}</td>' in html
    assert f'{figures["alpha_nominal_dominant"]:.3f}' in html
    assert f'{figures["weighted_dominant_agreement"]:.3f}' in html
    assert f'{figures["alpha_interval"]["mean"]:.3f}' in html
    tv = figures["tv"]
    assert f'{tv["mean"]:.3f} / {tv["median"]:.3f} / {tv["p90"]:.3f}' in html
    assert f'{figures["disputed"]["count"]} (' in html
    for key in ("lcz_6", "lcz_8", "lcz_b"):
        value = figures["alpha_interval"]["per_class"][key]
        assert value is not None and f"{value:.3f}" in html
    # progress per campaign: 2 complete, 1 disputed, 1 in progress; per interpreter
    assert '<td data-status="complete"><strong>2</strong>' in html
    assert '<td data-status="disputed"><strong>1</strong>' in html
    assert '<td data-status="in_progress"><strong>1</strong>' in html
    for name in ("ann", "bob", "cat", "dan"):
        assert f'<tr data-interpreter="{name}">' in html
    stats = {p["name"]: p for p in figures["interpreters"]}
    assert f'{stats["dan"]["tv_to_others"]:.3f}' in html
    # the plots and the map are on the page, and the next disputed block is one click away
    for kind in plots.KINDS:
        assert f"/dashboard/campaigns/{campaign.pk}/plots/{kind}.png?v=" in html
    assert 'id="dash-map"' in html and f'href="/dashboard/review/{curated[1].pk}/"' in html


def test_warm_dashboard_reads_no_assignment_yet_shows_every_new_save(client, team, campaign, curated):
    """The statistics are cached under the campaign's version stamp (annotator.tile_stamps): a second
    view reads no assignment or split; any save moves the stamp, so the next view is fresh."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    login(client, team["rev"])
    url = f"/dashboard/campaigns/{campaign.pk}/"
    client.get(url)
    with CaptureQueriesContext(connection) as q:
        html = client.get(url).content.decode()
    assert not [x["sql"] for x in q.captured_queries if "annotator_assignment" in x["sql"]
                or "annotator_annotation" in x["sql"]]
    assert '<td data-status="in_progress"><strong>1</strong>' in html
    rows = html.count('data-interpreter=')
    submit_block(curated[3], lambda u: split(lcz_d=1000))      # the draft block's splits, through services
    html = client.get(url).content.decode()
    assert '<td data-status="in_progress"><strong>1</strong>' not in html
    assert '<td data-status="complete"><strong>3</strong>' in html
    assert html.count('data-interpreter=') == rows


def test_plot_endpoints_return_valid_non_blank_pngs_and_revalidate(client, team, campaign, curated):
    login(client, team["rev"])
    etags = {}
    for kind in plots.KINDS:
        r = client.get(f"/dashboard/campaigns/{campaign.pk}/plots/{kind}.png")
        assert non_blank(png_of(r)), kind
        etags[kind] = r["ETag"]
        again = client.get(f"/dashboard/campaigns/{campaign.pk}/plots/{kind}.png", HTTP_IF_NONE_MATCH=r["ETag"])
        assert again.status_code == 304
    # new data changes the state: a new ETag, a fresh plot
    submit_block(curated[3], lambda u: split(lcz_d=1000))
    r = client.get(f"/dashboard/campaigns/{campaign.pk}/plots/tv.png", HTTP_IF_NONE_MATCH=etags["tv"])
    assert r.status_code == 200 and r["ETag"] != etags["tv"]


def test_each_plot_keeps_its_place_on_the_page_at_the_size_it_is_drawn(client, team, campaign, curated):
    """Every plot's <img> carries the width and height of the PNG the endpoint serves, so the page
    reserves the place before the plot arrives and the map below does not jump."""
    import re

    login(client, team["rev"])
    html = client.get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    for kind in plots.KINDS:
        m = re.search(rf'data-kind="{kind}"\s+width="(\d+)" height="(\d+)"', html)
        assert m, kind
        assert png_of(client.get(f"/dashboard/campaigns/{campaign.pk}/plots/{kind}.png")).size == \
            (int(m[1]), int(m[2])), kind


@pytest.mark.parametrize("n_raters", [1, 2, 3, 7, 19, 32])
def test_plot_size_is_the_drawn_size_for_any_number_of_interpreters_and_classes(n_raters):
    """size_px, which the page lays out with, is the rendered PNG's size, with or without enough
    data for the plot (placeholder) and however many interpreters and dominant classes there are."""
    from annotator import agreement

    rng = np.random.default_rng(n_raters)
    n_blocks, per_block = 40, min(3, n_raters)
    splits = np.zeros((n_blocks, n_raters, 17), dtype=np.int64)
    present = np.zeros((n_blocks, n_raters), dtype=bool)
    for b in range(n_blocks):
        for r in rng.choice(n_raters, per_block, replace=False):
            cls = rng.choice(n_raters % 17 + 1, 2, replace=False)     # 2 to 17 dominant classes in use
            splits[b, r, cls] = (600, 400)
            present[b, r] = True
    figures = agreement.campaign_agreement(splits, present, rater_names=[f"r{i}" for i in range(n_raters)])
    for kind in plots.KINDS:
        assert Image.open(io.BytesIO(plots.render(kind, figures))).size == plots.size_px(kind, figures), kind


def test_empty_campaign_shows_not_enough_data(client, team, campaign):
    login(client, team["rev"])
    html = client.get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    assert 'id="not-enough-data"' in html and "Not enough data yet" in html
    assert "0 of 4 blocks so far" in html
    assert "plots/alpha.png" not in html and 'id="dash-map"' not in html
    # progress is still there: 4 open blocks, 3 assigned to each interpreter
    assert '<td data-status="open"><strong>4</strong>' in html
    # the endpoints still answer with an image that says so
    for kind in plots.KINDS:
        assert non_blank(png_of(client.get(f"/dashboard/campaigns/{campaign.pk}/plots/{kind}.png")))
    assert client.get(f"/dashboard/campaigns/{campaign.pk}/agreement.geojson").json()["features"] == []
    queue = client.get(f"/dashboard/campaigns/{campaign.pk}/review/").content.decode()
    assert "Nothing to review yet" in queue


def test_plots_say_not_enough_data_for_a_single_interpreter():
    from annotator import agreement

    one = agreement.campaign_agreement(np.array([[[1000] + [0] * 16]]), rater_names=["solo"])
    assert one["n_blocks"] == 1
    for kind in ("pairs", "bias", "alpha", "tv", "drift", "confusion"):
        with pytest.raises(plots.NotEnoughData):
            plots._DRAW[kind](one)
        img = Image.open(io.BytesIO(plots.render(kind, one)))
        assert img.format == "PNG" and non_blank(img)
        assert img.size == plots.size_px(kind, one) == plots.size_px(kind, {})      # the placeholder's


# --- map layer, queue, review page ---------------------------------------------------------------

def test_agreement_layer_has_released_blocks_only(client, team, campaign, curated):
    data = login(client, team["rev"]).get(f"/dashboard/campaigns/{campaign.pk}/agreement.geojson").json()
    by_id = {f["id"]: f["properties"] for f in data["features"]}
    assert set(by_id) == {curated[0].pk, curated[1].pk, curated[2].pk}
    assert by_id[curated[1].pk]["status"] == "disputed" and by_id[curated[1].pk]["dominant_agrees"] is False
    assert by_id[curated[0].pk]["tv"] == pytest.approx(curated[0].agreement_tv, abs=1e-4)
    assert "split" not in str(data) and "ann" not in str(data)   # no split, no name


def test_review_queue_lists_disputed_first(client, team, campaign, curated):
    html = login(client, team["rev"]).get(f"/dashboard/campaigns/{campaign.pk}/review/").content.decode()
    rows = [html.index(f'<tr data-block="{b.pk}"') for b in curated[:3]]
    assert rows[1] < rows[0] and rows[1] < rows[2]
    assert f'<tr data-block="{curated[3].pk}"' not in html
    only = client.get(f"/dashboard/campaigns/{campaign.pk}/review/?status=complete").content.decode()
    assert f'<tr data-block="{curated[1].pk}"' not in only and f'<tr data-block="{curated[0].pk}"' in only


def test_review_page_shows_the_splits_side_by_side(client, team, campaign, curated):
    block = curated[1]
    r = login(client, team["rev"]).get(f"/dashboard/review/{block.pk}/")
    html = r.content.decode()
    assert "csrftoken" in r.cookies
    names = list(Assignment.objects.filter(block=block).order_by("interpreter__username")
                 .values_list("interpreter__username", flat=True))
    for name in names:
        assert '<th class="split-col" data-col="a' in html and f">{name}</th>" in html
    assert f"Block {block.block_key}" in html and 'data-status="disputed">Disputed</span>' in html
    assert html.count('class="split-col"') == 3 and 'class="consensus-col"' in html
    assert html.count('class="pct"') == 17
    # consensus of thirds: 33.4 / 33.3 / 33.3 %, and the block's TV
    assert "33.4" in html and "33.3" in html
    assert f"{block.agreement_tv:.3f}" in html
    assert 'data-start="consensus"' in html
    for a in Assignment.objects.filter(block=block):
        assert f'data-start="{a.pk}"' in html
    # no other disputed block: "n" goes back to the queue
    assert f'href="/dashboard/campaigns/{campaign.pk}/review/"' in html


def test_next_disputed_link_follows_the_queue(client, team, campaign, curated):
    submit_block(curated[3], lambda u: {"ann": split(lcz_a=1000), "bob": split(lcz_g=1000)}.get(
        u, split(lcz_c=1000)))
    curated[3].refresh_from_db()
    assert curated[3].status == "disputed"
    login(client, team["rev"])
    first = client.get(f"/dashboard/review/{curated[1].pk}/").content.decode()
    second = client.get(f"/dashboard/review/{curated[3].pk}/").content.decode()
    assert f'id="next-link" href="/dashboard/review/{curated[3].pk}/"' in first
    assert f'id="next-link" href="/dashboard/review/{curated[1].pk}/"' in second
