"""Benchmark (not a test): the annotation API under load, through a real HTTP server.

Prints: viewport GeoJSON p50/p95 with 10,000 blocks (random map views at zoom 15-17, and the
whole city at zoom 13), and save p50/p95 with 32 concurrent interpreters, plus the count of
saves lost or duplicated (must be 0). Each interpreter retries one save of every five with the
same request id (a flaky network), and every save is checked against the database afterwards.

Usage (PostGIS, as `make test` sets it up):  make bench-annotate
  or any DATABASE_URL:  DJANGO_DEBUG=1 DATABASE_URL=... .venv/bin/python scripts/bench_annotate.py
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.db import connection  # noqa: E402

from annotator import selectors, services  # noqa: E402
from annotator.ingest.blocks import finalise_blocks  # noqa: E402
from annotator.models import Annotation, Assignment, AuditEvent, Campaign, StreetBlock  # noqa: E402
from fixtures.synthetic_city import make_street_network  # noqa: E402
from lcz_model.classes import KEYS  # noqa: E402

CAMPAIGN = "bench-annotate"
PORT = 8766


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def setup(n_blocks: int, n_interpreters: int):
    Campaign.objects.filter(name=CAMPAIGN).delete()
    campaign, _ = services.create_campaign(CAMPAIGN, city="Synthetic")
    city = make_street_network(n_blocks, seed=3)
    blocks = finalise_blocks(city.blocks[["geometry"]])
    services.import_street_blocks(campaign, blocks, source=StreetBlock.Source.POLYGONS)
    users = []
    for i in range(n_interpreters):
        user, _ = services.ensure_user(f"bench-int-{i:02d}", secrets.token_urlsafe(12), role="interpreter")
        services.add_member(campaign, user, "interpreter")
        users.append(user)
    services.assign_blocks(campaign, per_block=3)
    return campaign, users


def session_cookie(user) -> str:
    s = SessionStore()
    s[SESSION_KEY] = str(user.pk)
    s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    s[HASH_SESSION_KEY] = user.get_session_auth_hash()
    s.create()
    csrf = secrets.token_hex(16)
    return f"sessionid={s.session_key}; csrftoken={csrf}", csrf


class Client:
    """One keep-alive HTTP connection, as a browser tab would hold."""

    def __init__(self, user):
        self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        self.cookie, self.csrf = session_cookie(user)

    def request(self, method, path, body=None):
        headers = {"Cookie": self.cookie, "X-CSRFToken": self.csrf, "Referer": f"http://127.0.0.1:{PORT}/"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        t0 = time.perf_counter()
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data, time.perf_counter() - t0


def start_server(workers: int, threads: int):
    # production settings (DEBUG off), plain HTTP on loopback
    env = dict(os.environ, ALLOWED_HOSTS="127.0.0.1,localhost", DJANGO_DEBUG="0", SECURE_SSL_REDIRECT="0",
               SECRET_KEY=settings.SECRET_KEY,  # the sessions made here must verify there
               MEDIA_ROOT=str(settings.MEDIA_ROOT), CELERY_BROKER_URL=os.environ.get(
                   "CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"))
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{PORT}", "-w", str(workers),
         "-k", "gthread", "--threads", str(threads), "--log-level", "warning"],
        cwd=ROOT, env=env)
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=1)
            c.request("GET", "/api/classes/")
            c.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def bench_viewport(campaign, user, n=200):
    client = Client(user)
    minx, miny, maxx, maxy = selectors.campaign_extent(campaign)
    rng = random.Random(0)
    out = {}
    for zoom in (17, 16, 15):
        # a 1600 x 900 px screen at this zoom, in degrees (Web Mercator, near this latitude)
        w = 1600 * 360 / (256 * 2 ** zoom)
        h = 900 * 360 / (256 * 2 ** zoom) * 0.5  # cos(60°)
        times, feats = [], []
        for _ in range(n):
            x, y = rng.uniform(minx, maxx - w), rng.uniform(miny, maxy - h)
            status, data, dt = client.request("GET", f"/api/campaigns/{campaign.pk}/blocks/"
                                                     f"?bbox={x},{y},{x + w},{y + h}&zoom={zoom}")
            assert status == 200, data[:300]
            times.append(dt)
            feats.append(data.count(b'"Feature"'))
        out[zoom] = (times, feats)
    times = []
    for _ in range(20):
        status, data, dt = client.request("GET", f"/api/campaigns/{campaign.pk}/blocks/"
                                                 f"?bbox={minx},{miny},{maxx},{maxy}&zoom=13")
        times.append(dt)
    out[13] = (times, [data.count(b'"Feature"')] * len(times))
    return out


def bench_saves(users, saves_per_user: int):
    results, errors, lock = [], [], threading.Lock()
    barrier = threading.Barrier(len(users))

    def work(user):
        client = Client(user)
        mine = list(Assignment.objects.filter(interpreter=user, campaign__name=CAMPAIGN)
                    .order_by("id").values_list("id", flat=True)[:saves_per_user])
        connection.close()
        rng = random.Random(user.pk)
        barrier.wait()
        for k, assignment_id in enumerate(mine):
            split = {key: 0 for key in KEYS}
            a, b = rng.sample(KEYS, 2)
            split[a] = rng.randrange(0, 1001)
            split[b] += 1000 - split[a]
            body = {"request_id": str(uuid.uuid4()), "version": 0, "split": split, "submit": True}
            tries = 2 if k % 5 == 0 else 1  # a retried request (same id), as after a lost response
            for _ in range(tries):
                status, data, dt = client.request("PUT", f"/api/assignments/{assignment_id}/annotation/", body)
                with lock:
                    if status == 200:
                        results.append((assignment_id, body["request_id"], split, dt))
                    else:
                        errors.append((status, data[:200]))

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    t0 = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results, errors, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=10_000)
    ap.add_argument("--interpreters", type=int, default=32)
    ap.add_argument("--saves", type=int, default=25, help="saves per interpreter")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    print(f"database: {connection.vendor} {settings.DATABASES['default']['NAME']}; "
          f"server: gunicorn gthread {args.workers} workers x {args.threads} threads; cores: {os.cpu_count()}")
    t0 = time.perf_counter()
    campaign, users = setup(args.blocks, args.interpreters)
    print(f"set-up: {StreetBlock.objects.filter(campaign=campaign).count()} blocks, "
          f"{Assignment.objects.filter(campaign=campaign).count()} assignments in {time.perf_counter() - t0:.1f} s")
    connection.close()
    server = start_server(args.workers, args.threads)
    try:
        views = bench_viewport(campaign, users[0])
        print("\nviewport GeoJSON (keep-alive, one client)")
        for zoom, (times, feats) in views.items():
            print(f"  zoom {zoom:2d}: p50 {pct(times, 50) * 1000:6.1f} ms  p95 {pct(times, 95) * 1000:6.1f} ms  "
                  f"({statistics.mean(feats):.0f} blocks per view, {len(times)} requests)")
        results, errors, wall = bench_saves(users, args.saves)
    finally:
        server.terminate()
        server.wait()
    times = [r[3] for r in results]
    print(f"\nsaves: {args.interpreters} concurrent interpreters, {len(times)} answered 200 in {wall:.1f} s "
          f"({len(times) / wall:.0f} saves/s); errors: {len(errors)} {errors[:3]}")
    print(f"  p50 {pct(times, 50) * 1000:.1f} ms  p95 {pct(times, 95) * 1000:.1f} ms  max {max(times) * 1000:.1f} ms")
    # every acknowledged save must be in the database exactly once, with its split
    expected = {}
    for assignment_id, request_id, split, _ in results:
        expected[assignment_id] = (request_id, [split[k] for k in KEYS])
    stored = {a.assignment_id: a for a in Annotation.objects.filter(assignment_id__in=expected)}
    lost = sum(1 for aid, (_, permille) in expected.items() if aid not in stored or stored[aid].permille != permille)
    events = AuditEvent.objects.filter(request_id__in=[r for r, _ in expected.values()])
    per_request = {}
    for rid in events.values_list("request_id", flat=True):
        per_request[rid] = per_request.get(rid, 0) + 1
    duplicated = sum(n - 1 for n in per_request.values()) + sum(1 for a in stored.values() if a.version != 1)
    print(f"  saves acknowledged: {len(expected)} distinct; lost: {lost}; duplicated: {duplicated}")
    Campaign.objects.filter(name=CAMPAIGN).delete()


if __name__ == "__main__":
    main()
