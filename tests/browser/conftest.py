"""Browser-test fixtures: Debian's Chromium driven by Playwright against pytest-django's live server.

Playwright's sync API keeps an asyncio loop running in the test thread while it is started, and
Django then refuses ORM calls there (SynchronousOnlyOperation). The ORM calls these tests make
between browser steps (and pytest-django's database flush after each test) are plain synchronous
ones, so the guard is lifted exactly while the browser runs: for this module, restored afterwards,
so no other test or subprocess inherits it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.annotator.conftest import team  # noqa: F401  (shared fixture, re-exported)
from tests.conftest import METRIC_CRS, grid_roads

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                yield b
            finally:
                b.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture(autouse=True)
def _generous_login_rate(settings):
    """The tests log in a few times a minute from 127.0.0.1; the login rate limit is tested elsewhere."""
    from django.core.cache import cache

    settings.LOGIN_RATE = "1000/m"
    cache.clear()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser tab. The test fails on any uncaught exception or console.error of the page's
    own code, and on any of its scripts or style sheets that does not load. The browser's own
    "Failed to load resource" lines are not counted: tests provoke refused API calls on purpose
    (403, 409, a dropped connection), and the page shows those to the person itself."""
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))

    def on_console(msg):
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(f"console.error: {msg.text} ({msg.location.get('url')})")

    def on_response(response):
        if response.request.resource_type in ("script", "stylesheet") and response.status >= 400:
            errors.append(f"HTTP {response.status}: {response.url}")

    pg.on("console", on_console)
    pg.on("response", on_response)
    pg.on("requestfailed", lambda r: r.resource_type in ("script", "stylesheet")
          and errors.append(f"not loaded: {r.url} ({r.failure})"))
    pg.js_errors = errors
    in_flight: set = set()  # the tab's requests still unanswered (e.g. the save a closing tab sends)
    context.on("request", lambda r: in_flight.add(r))
    context.on("requestfinished", lambda r: in_flight.discard(r))
    context.on("requestfailed", lambda r: in_flight.discard(r))
    try:
        yield pg
    finally:
        _leave_quietly(pg, in_flight)
        context.close()
        _wait_for_server_queries()
    assert not errors, f"errors on the page: {errors}"


def _wait_for_server_queries(timeout_s: float = 30.0) -> None:
    """Wait until no other connection to the test database is running a query or holds an open
    transaction: a request the closing tab sent (a beacon Playwright may not report) still running
    on the live server while the database is flushed deadlocks the flush."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline, quiet = time.monotonic() + timeout_s, 0
    with connection.cursor() as cursor:
        while quiet < 4 and time.monotonic() < deadline:   # quiet for ~200 ms: nothing arriving late
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')")
            quiet = quiet + 1 if cursor.fetchone()[0] == 0 else 0
            time.sleep(0.05)


def _leave_quietly(pg, in_flight: set, timeout_s: float = 30.0) -> None:
    """Let the page send what it would send on closing (the workspace saves an unsaved edit when the
    tab is hidden) now, and wait until every request is answered: a save still running on the live
    server while the test's database is flushed deadlocks the flush."""
    try:
        pg.evaluate("""() => {
            Object.defineProperty(document, "hidden", { value: true, configurable: true });
            Object.defineProperty(document, "visibilityState", { value: "hidden", configurable: true });
            document.dispatchEvent(new Event("visibilitychange"));
        }""")
    except Exception:  # the page is gone already (a test that closed it)
        return
    deadline, quiet = time.monotonic() + timeout_s, 0
    while quiet < 3 and time.monotonic() < deadline:  # answered, and nothing new for ~150 ms
        pg.wait_for_timeout(50)  # lets Playwright deliver the request events we wait on
        quiet = 0 if in_flight else quiet + 1


@pytest.fixture
def imagery(team, campaign, media_root, tmp_path):
    """A SYNTHETIC 1 m RGB scene painted over the team's 4 blocks (fixtures.synthetic_city), imported
    as the campaign's COG."""
    import geopandas as gpd
    import shapely

    from annotator import services
    from annotator.models import StreetBlock
    from fixtures.synthetic_city import assign_truth, paint_city

    rows = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    blocks = gpd.GeoDataFrame({"block_id": [b.block_key for b in rows]},
                              geometry=[shapely.from_wkt(b.geom.wkt) for b in rows], crs="EPSG:4326").to_crs(METRIC_CRS)
    tif = paint_city(blocks, assign_truth(len(blocks), seed=5), tmp_path / "city.tif", roads=grid_roads(n=3),
                     seed=5, progress=False)
    scene, _ = services.import_imagery(campaign, tif, licence="CC0 test imagery",
                                       attribution="Synthetic test imagery", name="test city (synthetic)")
    return scene


@pytest.fixture
def disputed_block(team, campaign):
    """The first block, submitted by its 3 interpreters as LCZ 6 / LCZ B / LCZ D: disputed, and its
    consensus is 33.4 / 33.3 / 33.3 %. The second block is complete (LCZ 8 90 %, LCZ E 10 %)."""
    import uuid

    from annotator import services
    from annotator.models import Assignment, StreetBlock
    from lcz_model.classes import KEYS

    def submit_block(block, split_of) -> None:
        for a in Assignment.objects.filter(block=block).select_related("interpreter").order_by("interpreter__username"):
            split = dict.fromkeys(KEYS, 0) | split_of(a.interpreter.username)
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=None, split=split, submit=True)

    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    names = list(Assignment.objects.filter(block=blocks[0]).order_by("interpreter__username")
                 .values_list("interpreter__username", flat=True))
    thirds = dict(zip(names, [{"lcz_6": 1000}, {"lcz_b": 1000}, {"lcz_d": 1000}]))
    submit_block(blocks[0], thirds.__getitem__)
    submit_block(blocks[1], lambda username: {"lcz_8": 900, "lcz_e": 100})
    blocks[0].refresh_from_db()
    assert blocks[0].status == StreetBlock.Status.DISPUTED
    return blocks[0]


def login(page, live_server, username: str) -> None:
    """Log in through the real form, as a person would."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}-12345")
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def open_workspace(page, live_server, campaign) -> None:
    """From the home page, follow the campaign's workspace link and wait for its blocks."""
    page.click(f'a[href="/campaigns/{campaign.pk}/work/"]')
    page.wait_for_url(f"{live_server.url}/campaigns/{campaign.pk}/work/")
    wait_for_blocks(page)


def wait_for_blocks(page, n: int = 4) -> None:
    page.wait_for_function(f"window.lczWorkspace && window.lczWorkspace.blockLayers.size >= {n}")


def block_screen_point(page, block, map_js: str = "window.lczWorkspace.map") -> tuple[float, float]:
    """Where a block's interior lies on screen, for the Leaflet map `map_js`."""
    p = block.geom.point_on_surface
    return page.evaluate(
        f"""([lat, lng]) => {{
            const m = {map_js};
            const pt = m.latLngToContainerPoint([lat, lng]);
            const r = m.getContainer().getBoundingClientRect();
            return [r.left + pt.x, r.top + pt.y];
        }}""", [p.y, p.x])


def click_block(page, block) -> None:
    """A real mouse click on the block's interior, on the map's canvas (once the map stands still)."""
    page.wait_for_function("!window.lczWorkspace.moving")
    x, y = block_screen_point(page, block)
    page.mouse.click(x, y)


def drop_first_answer(page, url_glob: str, method: str) -> list[str]:
    """From now on, the first `method` request to `url_glob` reaches the server, which applies it,
    and its answer never comes back (the connection is reset); later ones go through. Returns the
    request_id of each such request sent, as they are sent."""
    sent: list[str] = []

    def route(r):
        if r.request.method != method:
            r.continue_()
            return
        sent.append(r.request.post_data_json["request_id"])
        if len(sent) == 1:
            r.fetch()                                # the server applies it ...
            r.abort("connectionreset")               # ... and the answer never arrives
        else:
            r.continue_()

    page.route(url_glob, route)
    return sent


def load_plots(page) -> None:
    """Scroll to each dashboard plot in turn (they load lazily, as a reader scrolls to them) and wait
    until every one has decoded as an image."""
    from playwright.sync_api import expect

    expect(page.locator("#plots img")).to_have_count(6)
    for img in page.locator("#plots img").all():
        img.scroll_into_view_if_needed()
    page.wait_for_function("""() => [...document.querySelectorAll('#plots img')]
        .every((img) => img.complete && img.naturalWidth > 200)""", timeout=30_000)


def wait_for_still_map(page, map_js: str, min_tiles: int = 6) -> None:
    """Until the Leaflet map `map_js` stands still with its imagery drawn: no pan or zoom under way,
    every tile layer done loading (at least `min_tiles` tiles) and faded in, and no CSS transition
    (a tooltip fading in) still running."""
    page.wait_for_function(
        f"""(minTiles) => {{
            const map = {map_js};
            if (map._animatingZoom || (map._panAnim && map._panAnim._inProgress)) return false;
            const grids = [];
            map.eachLayer((l) => {{ if (l instanceof L.GridLayer) grids.push(l); }});
            const tiles = [...map.getPane("tilePane").querySelectorAll("img.leaflet-tile")];
            return grids.length > 0 && grids.every((g) => !g.isLoading())
                && tiles.filter((t) => t.classList.contains("leaflet-tile-loaded")).length >= minTiles
                && tiles.every((t) => t.style.opacity === "" || t.style.opacity === "1")
                && document.getAnimations().every((a) => a.playState !== "running");
        }}""", arg=min_tiles, timeout=30_000)


def save_docs_screenshot(page, map_selector: str) -> str:
    """Screenshot to $LCZ_DOCS_SCREENSHOT, kept under 1 MB: if needed, fewer colour levels in the
    imagery only (noisy synthetic textures compress badly); the interface keeps its exact colours."""
    import io

    from PIL import Image, ImageOps

    out = os.environ["LCZ_DOCS_SCREENSHOT"]
    png = page.screenshot(path=out)
    if len(png) >= 1_000_000:
        img = Image.open(io.BytesIO(png)).convert("RGB")
        box = page.locator(map_selector).bounding_box()
        region = tuple(int(v) for v in (box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]))
        for bits in (6, 5, 4):
            shot = img.copy()
            shot.paste(ImageOps.posterize(img.crop(region), bits), region[:2])
            shot.save(out, optimize=True)
            if os.path.getsize(out) < 1_000_000:
                break
    assert os.path.getsize(out) < 1_000_000
    return out


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1):
    """Poll a database condition while the browser works in the live server's thread."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
