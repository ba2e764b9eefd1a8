"""Benchmark (not a test): imagery tile latency on the demo COG, in process and through real HTTP.

    DATABASE_URL=... MEDIA_ROOT=... .venv/bin/python scripts/bench_tiles.py [--formats jpeg,webp]

Uses the database and MEDIA_ROOT of the environment (runs `load_demo` when the demo campaign is
missing). Prints, for every tile of the demo scene at zooms 15-18:
  1. in process: rio-tiler read time and Pillow encode time per format (jpeg/png/webp);
  2. through HTTP, against a gunicorn it starts (`-k gthread`, keep-alive; gunicorn sets
     TCP_NODELAY) with a logged-in session cookie, one keep-alive connection, requests one at a
     time: p50/p95 cold (server restarted, tile cache emptied: every tile read and encoded once)
     and cached (the same tiles again);
  3. a viewport: the z17 tiles over 6 parallel keep-alive connections, as a browser fetches them.
The server runs config.settings plus a tile cache chosen by --cache, through a small settings
module written to a temporary folder (the project's files are not touched).
"""
from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_REDIS = "redis://127.0.0.1:6379/13"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formats", default="jpeg,webp", help="formats fetched over HTTP (default jpeg,webp)")
    p.add_argument("--zooms", default="15-18", help="zoom range, e.g. 15-18")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--cache", choices=["auto", "redis", "locmem", "settings"], default="auto",
                   help="tile cache of the server: redis (shared by workers; %s), locmem (per worker), "
                        "settings (whatever config.settings says); auto = settings when it defines a "
                        "'tiles' cache, else redis when reachable, else locmem" % BENCH_REDIS)
    return p.parse_args()


def redis_reachable(url=BENCH_REDIS) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def write_bench_settings(folder: Path, cache: str) -> None:
    if cache == "redis":
        tiles_cache = (f'{{"BACKEND": "django.core.cache.backends.redis.RedisCache", '
                       f'"LOCATION": "{BENCH_REDIS}", "KEY_PREFIX": "bench-tiles"}}')
    elif cache == "locmem":
        tiles_cache = ('{"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tiles", '
                       '"OPTIONS": {"MAX_ENTRIES": 20000}}')
    else:
        tiles_cache = None
    (folder / "bench_tiles_settings.py").write_text(textwrap.dedent(f"""\
        from config.settings import *  # noqa: F401,F403
        ROOT_URLCONF = "bench_tiles_urls"
        {"CACHES = {**CACHES, 'tiles': " + tiles_cache + "}" if tiles_cache else ""}
        """))
    (folder / "bench_tiles_urls.py").write_text(textwrap.dedent("""\
        from django.urls import include, path
        from config.urls import urlpatterns as _project
        urlpatterns = list(_project)
        if not any(getattr(p, "app_name", None) == "tiles" for p in urlpatterns):
            urlpatterns.insert(0, path("tiles/", include("annotator.tile_urls")))
        """))
    # import every URLconf and view (rio-tiler, rasterio) when a worker boots, not on its first
    # request: a cold tile then measures reading and encoding, not Python imports
    (folder / "bench_tiles_wsgi.py").write_text(textwrap.dedent("""\
        from config.wsgi import application  # noqa: F401
        from django.urls import get_resolver
        get_resolver().url_patterns
        """))


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def fmt_ms(values):
    return (f"p50 {pct(values, 50) * 1000:6.1f} ms  p95 {pct(values, 95) * 1000:6.1f} ms  "
            f"max {max(values) * 1000:6.1f} ms  (n={len(values)})")


class Server:
    def __init__(self, folder: Path, workers: int, threads: int):
        self.folder, self.workers, self.threads = folder, workers, threads
        self.proc = None
        self.port = None

    def start(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench_tiles_settings",
                   PYTHONPATH=os.pathsep.join([str(self.folder), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.log = open(self.folder / "gunicorn.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "bench_tiles_wsgi:application", "-b", f"127.0.0.1:{self.port}",
             "-w", str(self.workers), "-k", "gthread", "--threads", str(self.threads), "--keep-alive", "60",
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {self.folder / 'gunicorn.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("gunicorn did not start within 60 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None


class Client:
    """One keep-alive HTTP/1.1 connection with the session cookie."""

    def __init__(self, port: int, cookie: str):
        self.port, self.cookie = port, cookie
        self.conn = None

    def get(self, path: str) -> tuple[int, bytes, float]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.perf_counter()
            try:
                self.conn.request("GET", path, headers={"Cookie": self.cookie, "Host": "127.0.0.1"})
                resp = self.conn.getresponse()
                body = resp.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            elapsed = time.perf_counter() - t0
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return resp.status, body, elapsed
        raise AssertionError("unreachable")


def main() -> None:
    args = parse_args()
    z0, _, z1 = args.zooms.partition("-")
    zooms = range(int(z0), int(z1 or z0) + 1)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]

    folder = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    sys.path.insert(0, str(folder))
    cache_choice = args.cache
    if cache_choice == "auto":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import importlib

        project_settings = importlib.import_module("config.settings")
        if "tiles" in getattr(project_settings, "CACHES", {}):
            cache_choice = "settings"
        else:
            cache_choice = "redis" if redis_reachable() else "locmem"
    write_bench_settings(folder, cache_choice)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench_tiles_settings"

    import django

    django.setup()

    import morecantile
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client as DjangoClient

    from annotator import tiles
    from annotator.management.commands.load_demo import DEMO_CAMPAIGN
    from annotator.models import Campaign, ImageryScene

    if not Campaign.objects.filter(name=DEMO_CAMPAIGN).exists():
        print("demo campaign missing: running load_demo ...")
        call_command("load_demo")
    scene = ImageryScene.objects.filter(campaign__name=DEMO_CAMPAIGN).order_by("id").first()
    try:
        sf = tiles.scene_file(scene)
    except tiles.ImageryMissing as exc:
        raise SystemExit(f"{exc}\n(the database's demo scene was imported under another MEDIA_ROOT: run "
                         f"the benchmark with that MEDIA_ROOT, or with a fresh database)") from None
    info = tiles.scene_tile_info(scene, sf)
    tms = morecantile.tms.get("WebMercatorQuad")
    with tiles.readers.reader(sf) as rdr:
        addresses = [(t.z, t.x, t.y) for t in tms.tiles(*info["bounds"], zooms=list(zooms))
                     if rdr.tile_exists(t.x, t.y, t.z)]
    cache_desc = settings.CACHES.get("tiles", settings.CACHES["default"])
    print(f"scene {scene.pk} {scene.name!r}: {scene.width}x{scene.height} px, {scene.crs}, "
          f"{sf.path.stat().st_size / 1e6:.1f} MB COG; rio-tiler zooms {info['minzoom']}-{info['maxzoom']}")
    print(f"tiles: {len(addresses)} at z{zooms.start}-{zooms.stop - 1}; database {connection.vendor}; "
          f"DEBUG={settings.DEBUG}; tile cache {cache_choice}: {cache_desc['BACKEND'].rsplit('.', 1)[-1]}"
          f" {cache_desc.get('LOCATION', '')}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    # 1. in process -------------------------------------------------------------------------
    print("\n[in process] per tile, wall time (CPU time in brackets)")
    tiles.readers.clear()
    pixels, read_w, read_c = {}, [], []
    for a in addresses:
        w0, c0 = time.perf_counter(), time.process_time()
        pixels[a] = tiles.read_tile(sf, *a)
        read_w.append(time.perf_counter() - w0)
        read_c.append(time.process_time() - c0)
    pixels = {a: p for a, p in pixels.items() if p is not None}
    print(f"  read (rio-tiler)  {fmt_ms(read_w)}  [cpu p50 {pct(read_c, 50) * 1000:.1f} ms]")
    for fmt in ("jpeg", "png", "webp"):
        enc_w, enc_c, sizes = [], [], []
        for rgb, mask in pixels.values():
            w0, c0 = time.perf_counter(), time.process_time()
            data = tiles.encode(rgb, mask, fmt)
            enc_w.append(time.perf_counter() - w0)
            enc_c.append(time.process_time() - c0)
            sizes.append(len(data))
        print(f"  encode {fmt:<5}      {fmt_ms(enc_w)}  [cpu p50 {pct(enc_c, 50) * 1000:.1f} ms]  "
              f"median {statistics.median(sizes) / 1024:.1f} KiB")

    # 2. through HTTP ----------------------------------------------------------------------
    user = User.objects.filter(is_active=True, username="interpreter1").first() or \
        User.objects.filter(is_active=True).first()
    dj = DjangoClient()
    dj.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={dj.cookies[settings.SESSION_COOKIE_NAME].value}"
    prefix = f"/tiles/{scene.pk}"
    cache = tiles.tile_cache()
    server = Server(folder, args.workers, args.threads)

    def fresh_server():
        server.stop()
        cache.delete_many([tiles.tile_key(scene, sf, *a, f) for a in addresses for f in tiles.FORMATS])
        server.start()
        warm = Client(server.port, cookie)
        for _ in range(2 * args.workers):  # import and URL-resolver warm-up, not tiles
            status, _, _ = warm.get(f"{prefix}/tilejson.json")
            assert status == 200, status

    print(f"\n[HTTP] gunicorn -w {args.workers} -k gthread --threads {args.threads}, one keep-alive "
          f"connection, one request at a time")
    try:
        for fmt in formats:
            fresh_server()
            client = Client(server.port, cookie)
            result = {}
            for label in ("cold", "cached"):
                times, statuses = [], {}
                for a in addresses:
                    status, body, elapsed = client.get(f"{prefix}/{a[0]}/{a[1]}/{a[2]}.{fmt}")
                    statuses[status] = statuses.get(status, 0) + 1
                    times.append(elapsed)
                result[label] = times
                print(f"  {fmt:<5} {label:<6} {fmt_ms(times)}  statuses {statuses}")

        print("\n[HTTP] viewport: the z17 tiles over 6 parallel keep-alive connections (like a browser)")
        z17 = [a for a in addresses if a[0] == 17] or addresses
        for fmt in formats:
            fresh_server()
            for label in ("cold", "cached"):
                queue = list(z17)
                lock = threading.Lock()
                times = []

                def worker():
                    c = Client(server.port, cookie)
                    while True:
                        with lock:
                            if not queue:
                                return
                            a = queue.pop()
                        status, _, elapsed = c.get(f"{prefix}/{a[0]}/{a[1]}/{a[2]}.{fmt}")
                        assert status in (200, 204), status
                        with lock:
                            times.append(elapsed)

                t0 = time.perf_counter()
                threads = [threading.Thread(target=worker) for _ in range(6)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                wall = time.perf_counter() - t0
                print(f"  {fmt:<5} {label:<6} {len(z17)} tiles in {wall * 1000:6.0f} ms "
                      f"({len(z17) / wall:5.0f} tiles/s); per tile {fmt_ms(times)}")
    finally:
        server.stop()
    print(f"\nload average {os.getloadavg()[0]:.1f} at end (2-core machines: other work skews wall times)")


if __name__ == "__main__":
    main()
