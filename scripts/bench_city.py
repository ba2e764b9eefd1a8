"""Benchmark (not a test): a city-scale campaign, every figure of issue #14 on one machine.

Generates a SYNTHETIC city (fixtures.synthetic_city network, fixtures.city_tiles imagery as 16
COG tiles), imports its road lines through `import_osm_blocks` (timed: the import figure),
32 interpreters assigned 3 per block (services.assign_blocks) and ~60,000 submitted splits in bulk
(annotator.bulk, the same curation as a save). A few blocks per interpreter stay open for the
next-block and save figures. Then measures, with the real stack (gunicorn over HTTP, Chromium,
the management commands in child processes for peak memory):

  import      road lines -> blocks, blocks/s                         goal >= 500 blocks/s
  next        GET /api/campaigns/<id>/next/ p50/p95                  goal p95 <= 20 ms
  save        PUT annotation, 32 concurrent clients p50/p95          goal <= 1.2 x the small campaign's
  agreement   agreement_report --json, whole campaign                goal <= 0.5 s
  export      export_dataset blocks/s and peak memory                goal >= 40 blocks/s, <= 1 GB
  maps        export_maps --resolution 5 s and peak memory           goal <= 30 s, <= 1 GB
  dashboard   dashboard page ready in Chromium (map loaded)          goal <= 1.5 s
  tiles       block vector tiles p95 (scripts/bench_vector_tiles.py if present: HOOK)  goal <= 30 ms

Usage: make bench-city  (or: nice .venv/bin/python scripts/bench_city.py --blocks 5000 [--reuse] [--only FIG])
Prints a table with the machine and writes var/bench/bench_city-<blocks>.json.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

import bench_annotate as ba  # noqa: E402  (the HTTP client, server and session cookies of the save bench)
from annotator import services  # noqa: E402
from annotator.bulk import submit_splits_bulk  # noqa: E402
from annotator.ingest.blocks import finalise_blocks  # noqa: E402
from annotator.models import Assignment, Campaign, StreetBlock  # noqa: E402
from lcz_model.classes import KEYS  # noqa: E402
from lcz_model.package_writer import fractions_to_permille  # noqa: E402

FIGURES = ("import", "next", "save", "agreement", "export", "maps", "dashboard", "tiles")
GOALS = {"import": ">= 500 blocks/s", "next": "p95 <= 20 ms", "save": "p95 <= 1.2 x small",
         "agreement": "<= 0.5 s", "export": ">= 40 blocks/s, <= 1 GB", "maps": "<= 30 s, <= 1 GB",
         "dashboard": "<= 1.5 s", "tiles": "p95 <= 30 ms"}
PORT = 8791
CHROMIUM = "/usr/bin/chromium"
N_INTERPRETERS = 32


def pct(values, q):
    return ba.pct(values, q) if values else float("nan")


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        pg = cur.fetchone()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(mem / 1024 ** 2, 1), "postgresql": pg,
            "python": platform.python_version(), "database": settings.DATABASES["default"]["NAME"]}


# --- generation ---------------------------------------------------------------------------

def generate(name: str, n_blocks: int, work: Path, *, tiles: int, reserve_saves: int, seed: int = 14) -> dict:
    """The city campaign; returns the generation timings and the import figure."""
    from fixtures.city_tiles import paint_tiles
    from fixtures.synthetic_city import assign_truth, make_street_network

    t = {}
    Campaign.objects.filter(name=name).delete()
    t0 = time.perf_counter()
    city = make_street_network(n_blocks, seed=seed)
    truth = assign_truth(len(city.blocks), seed=seed)
    roads = work / "roads.gpkg"
    city.roads.to_file(roads, layer="roads", driver="GPKG")
    t["network_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    paths = paint_tiles(city.blocks, truth, work / "tiles", tiles_per_side=tiles, seed=seed)
    t["paint_tiles_s"] = time.perf_counter() - t0
    campaign, _ = services.create_campaign(name, city="Synthetic city", imagery_licence="CC0 (synthetic)")
    t0 = time.perf_counter()
    services.import_imagery_files(campaign, paths, licence="CC0 (synthetic)")
    t["import_imagery_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    call_command("import_osm_blocks", str(roads), campaign=name, source_name="synthetic road lines",
                 licence="CC0-1.0", verbosity=0)
    dt = time.perf_counter() - t0
    n = StreetBlock.objects.filter(campaign=campaign).count()
    t["import_roads_s"] = dt
    imported = {"blocks": n, "seconds": dt, "blocks_per_s": n / dt}
    t0 = time.perf_counter()
    users = interpreters(campaign, "city")
    services.assign_blocks(campaign, per_block=3)
    t["assign_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_splits = bulk_splits(campaign, reserve_saves, seed)
    t["bulk_splits_s"] = time.perf_counter() - t0
    t["splits"] = n_splits
    return {"timings": t, "import": imported, "users": len(users)}


class _Rollback(Exception):
    pass


def import_again(campaign, roads: Path) -> dict:
    """The import figure on a reused city: the same road lines into a scratch campaign with the same
    imagery scenes, inside a transaction that is rolled back (nothing stays)."""
    from django.db import transaction

    from annotator.models import ImageryScene

    result = {}
    try:
        with transaction.atomic():
            scratch, _ = services.create_campaign(f"{campaign.name}-import", city="Synthetic city")
            for scene in ImageryScene.objects.filter(campaign=campaign):
                scene.pk, scene.campaign = None, scratch
                scene.save()
            t0 = time.perf_counter()
            call_command("import_osm_blocks", str(roads), campaign=scratch.name, source_name="synthetic road lines",
                         licence="CC0-1.0", verbosity=0)
            dt = time.perf_counter() - t0
            n = StreetBlock.objects.filter(campaign=scratch).count()
            result = {"blocks": n, "seconds": dt, "blocks_per_s": n / dt}
            raise _Rollback
    except _Rollback:
        pass
    return result


def interpreters(campaign, tag: str):
    users = []
    for i in range(N_INTERPRETERS):
        user, _ = services.ensure_user(f"bench-{tag}-{i:02d}", secrets.token_urlsafe(12), role="interpreter")
        services.add_member(campaign, user, "interpreter")
        users.append(user)
    return users


def bulk_splits(campaign, reserve_saves: int, seed: int) -> int:
    """Submit every split but those of the last blocks (kept open: ~reserve_saves per interpreter):
    interpreters near a per-block base split, one in six blocks with an interpreter who disagrees."""
    from fixtures.synthetic_city import assign_truth

    block_ids = sorted(set(Assignment.objects.filter(campaign=campaign).values_list("block_id", flat=True)))
    keep_open = set(block_ids[len(block_ids) - min(len(block_ids) // 2,
                                                   math.ceil(reserve_saves * N_INTERPRETERS / 3) + 8):])
    rng = np.random.default_rng(seed)
    base = dict(zip(block_ids, np.asarray(fractions_to_permille(assign_truth(len(block_ids), seed=seed + 1)))))
    rows = []
    for pk, block_id in Assignment.objects.filter(campaign=campaign).order_by("pk").values_list("pk", "block_id"):
        if block_id in keep_open:
            continue
        p = np.array(base[block_id], dtype=np.int64)
        if rng.random() < 0.06:             # one interpreter in ~6 blocks sees another dominant class
            p = np.zeros(len(KEYS), dtype=np.int64)
            p[rng.integers(len(KEYS))] = 1000
        else:                                # move up to 60 per-mille between two classes
            a, b = rng.choice(np.flatnonzero(p > 0)), rng.integers(len(KEYS))
            d = int(min(p[a], rng.integers(0, 61)))
            p[a] -= d
            p[b] += d
        rows.append((pk, [int(v) for v in p]))
    for i in range(0, len(rows), 10_000):
        submit_splits_bulk(campaign, rows[i:i + 10_000])
    return len(rows)


def small_campaign(name: str, n_blocks: int = 61):
    """The small-campaign reference (61 blocks, the demo's size), nothing submitted yet."""
    from fixtures.synthetic_city import make_street_network

    Campaign.objects.filter(name=name).delete()
    campaign, _ = services.create_campaign(name, city="Synthetic city")
    city = make_street_network(n_blocks, seed=3)
    services.import_street_blocks(campaign, finalise_blocks(city.blocks[["geometry"]]),
                                  source=StreetBlock.Source.POLYGONS)
    users = interpreters(campaign, "small")
    services.assign_blocks(campaign, per_block=3)
    return campaign, users


# --- figures ------------------------------------------------------------------------------

def next_block(campaign, user, repeats: int) -> dict:
    client = ba.Client(user)
    times = []
    for _ in range(repeats + 2):
        status, data, dt = client.request("GET", f"/api/campaigns/{campaign.pk}/next/")
        assert status in (200, 204), data[:200]
        times.append(dt)
    times = times[2:]  # the first requests warm the connection and the worker
    return {"p50_ms": pct(times, 50) * 1000, "p95_ms": pct(times, 95) * 1000, "n": len(times)}


def saves(campaign, users, per_user: int) -> dict:
    """32 clients at once, each submitting `per_user` of its open assignments (as bench_annotate)."""
    from lcz_model.classes import KEYS as keys

    results, errors, lock = [], [], threading.Lock()
    todo = {u.pk: list(Assignment.objects.filter(campaign=campaign, interpreter=u, status=Assignment.Status.TODO)
                       .order_by("pk").values_list("pk", flat=True)[:per_user]) for u in users}
    clients = {u.pk: ba.Client(u) for u in users}
    connection.close()
    barrier = threading.Barrier(len(users))

    def work(user):
        client, rng = clients[user.pk], np.random.default_rng(user.pk)
        barrier.wait()
        for assignment_id in todo[user.pk]:
            split = dict.fromkeys(keys, 0)
            a = keys[int(rng.integers(len(keys)))]
            split[a] = 1000
            body = {"request_id": str(uuid.uuid4()), "version": 0, "split": split, "submit": True}
            status, data, dt = client.request("PUT", f"/api/assignments/{assignment_id}/annotation/", body)
            with lock:
                (results if status == 200 else errors).append(dt if status == 200 else (status, data[:200]))

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    t0 = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"saves failed: {errors[:3]}")
    return {"p50_ms": pct(results, 50) * 1000, "p95_ms": pct(results, 95) * 1000, "n": len(results),
            "clients": len(users), "saves_per_s": len(results) / wall}


def agreement(campaign, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call_command("agreement_report", campaign=campaign.name, json=True, stdout=io.StringIO())
        times.append(time.perf_counter() - t0)
    return {"p50_s": pct(times, 50), "max_s": max(times), "n": len(times)}


def child(kind: str, campaign_name: str, work: Path) -> dict:
    """Run export_dataset or export_maps in a child process (this script with --child) for its
    own peak memory: the process itself and its largest worker process."""
    out = work / f"{kind}-out"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--campaign", campaign_name, "--out", str(out)],
                          capture_output=True, text=True, env=os.environ)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name(out.name + ".zip"), ignore_errors=True)
    return result


def run_child(kind: str, campaign_name: str, out: str) -> None:
    campaign = Campaign.objects.get(name=campaign_name)
    t0 = time.perf_counter()
    if kind == "export":
        from annotator.export.dataset import ExportOptions, export_dataset

        report = export_dataset(campaign, out, ExportOptions(include_disputed=True), progress=False)
        n = report.n_blocks
    else:
        from annotator.export.maps import export_maps

        report = export_maps(campaign, "consensus", out, resolution=5.0)
        n = report.n_blocks
    dt = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"blocks": n, "seconds": dt, "blocks_per_s": n / dt, "peak_rss_mb": own,
                      "largest_worker_rss_mb": workers, "workers": os.cpu_count() if kind == "export" else 0,
                      "shape": list(getattr(report, "shape", ()))}))


def dashboard(campaign, admin, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    cookie, csrf = ba.session_cookie(admin)
    session = cookie.split(";")[0].split("=", 1)[1]
    times = []
    url = f"http://127.0.0.1:{PORT}/dashboard/campaigns/{campaign.pk}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_cookies([{"name": "sessionid", "value": session, "url": f"http://127.0.0.1:{PORT}"},
                                 {"name": "csrftoken", "value": csrf, "url": f"http://127.0.0.1:{PORT}"}])
            page = context.new_page()
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                page.goto(url, wait_until="load")
                page.wait_for_selector("#dash-map[data-loaded]", timeout=60_000)   # the view's tiles loaded
                # ... and painted: the second frame after it (SVG paths are laid out and painted there)
                page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
                times.append(time.perf_counter() - t0)
            # whether the tiles after the first came with a tile pass (annotator.tile_pass)
            tile_pass = any(c["name"] == "lcz_tile_pass" for c in context.cookies())
        finally:
            browser.close()
    return {"cold_s": times[0], "p50_s": pct(times[1:], 50), "p95_s": pct(times[1:], 95), "n": len(times) - 1,
            "tile_pass": tile_pass}


def vector_tiles(campaign, repeats: int) -> dict:
    # HOOK: the block vector tiles and scripts/bench_vector_tiles.py are another engineer's; run it
    # when it exists (with the campaign's name), else report that it is missing.
    script = ROOT / "scripts" / "bench_vector_tiles.py"
    if not script.exists():
        return {"hook": "scripts/bench_vector_tiles.py not present yet: not measured"}
    proc = subprocess.run([sys.executable, str(script), campaign.name, "--tiles", str(max(5, min(repeats, 40)))],
                          capture_output=True, text=True, env=os.environ)
    return {"hook": f"scripts/bench_vector_tiles.py exit {proc.returncode}",
            "output": (proc.stdout + proc.stderr).strip()[-2000:]}


# --- main ---------------------------------------------------------------------------------

def measure(results: dict, fig: str, fn, *args) -> None:
    """Run one figure, print it at once; a failure is recorded (and printed) and the rest go on."""
    try:
        results[fig] = fn(*args)
    except (Exception, SystemExit) as exc:  # one broken figure must not lose the others
        results[fig] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    print(f"  {fig}: {summary(fig, results[fig])}", flush=True)


def summary(fig: str, r: dict) -> str:
    if "error" in r:
        return "FAILED: " + r["error"]
    if "hook" in r:
        return r["hook"] + ("\n" + r["output"] if r.get("output") else "")
    return {
        "import": lambda: f"{r['blocks']} blocks in {r['seconds']:.1f} s = {r['blocks_per_s']:.0f} blocks/s",
        "next": lambda: f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms ({r['n']} requests); "
                        f"small campaign p95 {r['small']['p95_ms']:.1f} ms",
        "save": lambda: f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms ({r['n']} saves, {r['clients']} clients); "
                        f"small campaign p95 {r['small']['p95_ms']:.1f} ms: ratio {r['ratio']:.2f}",
        "agreement": lambda: f"p50 {r['p50_s']:.3f} s, max {r['max_s']:.3f} s ({r['n']} runs)",
        "export": lambda: f"{r['blocks']} blocks in {r['seconds']:.1f} s = {r['blocks_per_s']:.1f} blocks/s; peak "
                          f"{r['peak_rss_mb']:.0f} MB + largest of {r['workers']} workers {r['largest_worker_rss_mb']:.0f} MB",
        "maps": lambda: f"{r['seconds']:.1f} s ({r['shape'][0]} x {r['shape'][1]} px at 5 m); peak "
                        f"{r['peak_rss_mb']:.0f} MB",
        "dashboard": lambda: f"cold {r['cold_s']:.2f} s, warm p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s"
                              + (", tiles with a tile pass" if r.get('tile_pass') else ", tiles without a tile pass"),
    }[fig]()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=20_000)
    ap.add_argument("--tiles", type=int, default=4, help="imagery tiles per side (default 4: 16 tiles)")
    ap.add_argument("--reuse", action="store_true", help="skip generation when the campaign exists")
    ap.add_argument("--only", choices=FIGURES, action="append", help="measure only this figure (repeatable)")
    ap.add_argument("--repeats", type=int, default=50, help="requests per latency figure")
    ap.add_argument("--saves", type=int, default=5, help="saves per client (32 clients)")
    ap.add_argument("--out", default=str(ROOT / "var" / "bench"))
    ap.add_argument("--child", choices=("export", "maps"), help=argparse.SUPPRESS)
    ap.add_argument("--campaign", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return run_child(args.child, args.campaign, args.out)
    only = set(args.only or FIGURES)
    name = f"bench-city-{args.blocks}"
    work = Path(args.out) / f"city-{args.blocks}"
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM; PostgreSQL {info['postgresql']} "
          f"(database {info['database']}); Python {info['python']}", flush=True)
    results: dict = {}
    campaign = Campaign.objects.filter(name=name).first()
    generation = None
    if campaign is None or not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t0 = time.perf_counter()
        generation = generate(name, args.blocks, work, tiles=args.tiles, reserve_saves=args.saves)
        generation["timings"]["total_s"] = time.perf_counter() - t0
        results["import"] = generation["import"]
        print("generation: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in generation["timings"].items()), flush=True)
        campaign = Campaign.objects.get(name=name)
    work.mkdir(parents=True, exist_ok=True)
    if generation is None and "import" in only and (work / "roads.gpkg").exists():
        results["import"] = import_again(campaign, work / "roads.gpkg")
    counts = {"blocks": StreetBlock.objects.filter(campaign=campaign).count(),
              "submitted_splits": Assignment.objects.filter(campaign=campaign,
                                                            status=Assignment.Status.SUBMITTED).count()}
    print(f"campaign {name!r}: {counts['blocks']} blocks, {counts['submitted_splits']} submitted splits", flush=True)
    users = list(services.selectors.interpreters_of(campaign).order_by("username"))
    admin, _ = services.ensure_user("bench-city-admin", secrets.token_urlsafe(12), role="admin")

    if "agreement" in only:
        measure(results, "agreement", agreement, campaign, max(3, min(args.repeats, 10)))
    if "export" in only:
        measure(results, "export", child, "export", name, work)
    if "maps" in only:
        measure(results, "maps", child, "maps", name, work)
    if only & {"next", "save", "dashboard"}:
        small, small_users = small_campaign(f"bench-city-small-{args.blocks}")
        connection.close()
        ba.PORT = PORT
        if "dashboard" in only:  # the server runs with production settings: hashed static files
            subprocess.run([sys.executable, str(ROOT / "manage.py"), "collectstatic", "--no-input", "-v", "0"],
                           check=True, env=dict(os.environ, DJANGO_DEBUG="0", SECRET_KEY=settings.SECRET_KEY,
                                                ALLOWED_HOSTS="127.0.0.1,localhost", SECURE_SSL_REDIRECT="0"))
        server = ba.start_server(2, 8)
        try:
            if "next" in only:
                measure(results, "next", lambda: dict(next_block(campaign, users[0], args.repeats),
                                                      small=next_block(small, small_users[0], args.repeats)))
            if "save" in only:
                def both():
                    big, ref = saves(campaign, users, args.saves), saves(small, small_users, args.saves)
                    return dict(big, small=ref, ratio=big["p95_ms"] / ref["p95_ms"])
                measure(results, "save", both)
            if "dashboard" in only:
                measure(results, "dashboard", dashboard, campaign, admin, max(2, min(args.repeats, 10)))
        finally:
            server.terminate()
            server.wait()
            Campaign.objects.filter(pk=small.pk).delete()
    if "tiles" in only:
        measure(results, "tiles", vector_tiles, campaign, args.repeats)

    print(f"\nCity-scale benchmark: {counts['blocks']} blocks, {counts['submitted_splits']} submitted splits")
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, PostgreSQL {info['postgresql']}")
    print(f"{'figure':<10} {'goal':<24} measured")
    for fig in FIGURES:
        if fig in results:
            print(f"{fig:<10} {GOALS[fig]:<24} {summary(fig, results[fig])}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_city-{args.blocks}.json"
    path.write_text(json.dumps({"machine": info, "campaign": counts, "generation": generation,
                                "figures": results, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))
    print(f"written: {path}")
    failed = [fig for fig, r in results.items() if "error" in r]
    if failed:
        raise SystemExit(f"figures that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
