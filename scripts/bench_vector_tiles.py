"""Benchmark (not a test): block vector tiles, the tile view against the bare ST_AsMVT query.

    DATABASE_URL=postgis://... .venv/bin/python scripts/bench_vector_tiles.py "CAMPAIGN NAME" \
        [--layer mine|status|agreement|fractions] [--source consensus] [--user NAME] \
        [--zooms 12-17] [--tiles 40] [--repeat 3]

For each zoom, up to --tiles tiles that hold blocks of the campaign (picked evenly over its
blocks), each requested --repeat times:
  view: GET /tiles/campaigns/<id>/blocks/<layer>/z/x/y.mvt through Django's test client, logged in
        as --user (default: the interpreter with the most assignments for `mine`, else an admin or
        reviewer member): middleware, session, membership checks, the tile SQL, the response;
  fn:   the view function alone (RequestFactory, the user attached: no middleware or session),
        to tell the view's own cost from the framework's;
  bare: the bare query, the blocks' ids and geometry only, for the same tile:
        SELECT ST_AsMVT(...) FROM (SELECT id, ST_AsMVTGeom(ST_Transform(geom, 3857), ...) ...)
        (the ratios' reference); bare3857: the same on the stored Web Mercator column (migration
        0014) instead of ST_Transform, printed beside it;
  grid off (--ab): the view function again with every block through ST_AsMVTGeom (the z12 grid of
        vector_tiles switched off), interleaved with the others: the grid's gain, side by side.
Prints p50/p95 (ms) per zoom, the ratios to bare, the mean tile size, the features per tile and
the database queries of one request (session, user, access check, tile).
PostGIS only (the Python encoder is SpatiaLite's demo path). The goal (issue #14): view p95 <= 30
ms and <= 1.3x the bare query, z12-z17 at 20,000 blocks.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("campaign", help="campaign name")
    p.add_argument("--layer", default="mine", choices=["mine", "status", "agreement", "fractions"])
    p.add_argument("--source", default="consensus", help="fractions: consensus or a model_version")
    p.add_argument("--user", default="", help="username to request as (default: see above)")
    p.add_argument("--zooms", default="12-17", help="zoom range, e.g. 12-17")
    p.add_argument("--tiles", type=int, default=40, help="tiles per zoom (default 40)")
    p.add_argument("--repeat", type=int, default=3, help="requests per tile (default 3)")
    p.add_argument("--ab", action="store_true", help="also time the view function with the z12 grid off")
    return p.parse_args()


def pct(values, q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> int:
    args = parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, transaction
    from django.test import Client, RequestFactory
    from django.test.utils import CaptureQueriesContext

    from annotator.block_tile_views import block_tile as tile_view

    from annotator import selectors, vector_tiles
    from annotator.models import Assignment, Membership

    if connection.vendor != "postgresql":
        print("error: PostGIS only (DATABASE_URL=postgis://...)", file=sys.stderr)
        return 2
    if "testserver" not in settings.ALLOWED_HOSTS and "*" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    try:
        campaign = selectors.campaign_by_name(args.campaign)
    except selectors.NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from django.contrib.auth.models import User
    from django.db.models import Count

    if args.user:
        user = User.objects.get(username=args.user)
    elif args.layer == "mine":
        user = (User.objects.filter(assignments__campaign=campaign).annotate(n=Count("assignments"))
                .order_by("-n").first())
    else:
        user = (User.objects.filter(is_superuser=True).first()
                or User.objects.filter(memberships__campaign=campaign,
                                       memberships__role=Membership.Role.REVIEWER).first())
    if user is None:
        print("error: no user to request as; pass --user", file=sys.stderr)
        return 2
    client = Client()
    client.force_login(user)
    query = f"?source={args.source}" if args.layer == "fractions" else ""
    z0, z1 = (int(v) for v in args.zooms.split("-"))
    n_blocks = selectors.blocks_of(campaign).count()
    print(f"campaign {campaign.name!r}: {n_blocks} blocks; layer {args.layer}{query} as {user.username} "
          f"({Assignment.objects.filter(campaign=campaign, interpreter=user).count()} assignments)")
    bare_sql = (f"SELECT ST_AsMVT(t.*, 'blocks', {vector_tiles.EXTENT}, 'geom', 'id') FROM ("
                f"SELECT b.id, ST_AsMVTGeom(ST_Transform(b.geom, 3857), ST_TileEnvelope(%s, %s, %s), "
                f"{vector_tiles.EXTENT}, {vector_tiles.BUFFER}, true) AS geom "
                f"FROM annotator_streetblock b WHERE b.campaign_id = %s AND b.geom && "
                f"ST_Transform(ST_TileEnvelope(%s, %s, %s, margin => {vector_tiles.BUFFER / vector_tiles.EXTENT}),"
                f" 4326)) t")     # (ST_AsMVT skips NULL geometries; a WHERE on t.geom computes them twice)
    # the same on the stored Web Mercator column (migration 0014) the tile statements read at z15+
    bare_stored_sql = bare_sql.replace("ST_Transform(b.geom, 3857)", "b.geom_3857")
    centres = list(selectors.blocks_of(campaign).order_by("id").values_list("geom", flat=True)
                   .iterator())
    points = [g.point_on_surface.coords for g in centres]
    print(f"{'z':>3} {'tiles':>5} {'feat/tile':>9} {'KiB':>6} {'view p50':>9} {'view p95':>9} "
          f"{'fn p50':>8} {'fn p95':>8} {'bare p50':>9} {'bare p95':>9} {'p95 ratio':>9} {'fn ratio':>8} "
          f"{'queries':>7} {'bare3857 p95':>12}" + (f" {'off p95':>8}" if args.ab else ""))
    factory = RequestFactory()
    import math

    for z in range(z0, z1 + 1):
        n = 1 << z
        tiles = []
        for lon, lat in points:
            x = int((lon + 180) / 360 * n)
            y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
            if (x, y) not in tiles:
                tiles.append((x, y))
        step = max(1, len(tiles) // args.tiles)
        tiles = tiles[::step][:args.tiles]
        view, fn, bare, stored, sizes, feats, off = [], [], [], [], [], [], []
        url = f"/tiles/campaigns/{campaign.pk}/blocks/{args.layer}/{z}/{{x}}/{{y}}.mvt{query}"
        for x, y in tiles:            # warm: plans, caches, the connection
            client.get(url.format(x=x, y=y))
        with CaptureQueriesContext(connection) as captured:
            client.get(url.format(x=tiles[0][0], y=tiles[0][1]))
        queries = len(captured.captured_queries)
        for _ in range(args.repeat):
            for x, y in tiles:
                t = time.perf_counter()
                r = client.get(url.format(x=x, y=y))
                view.append((time.perf_counter() - t) * 1000)
                assert r.status_code in (200, 204), (r.status_code, r.content[:200])
                sizes.append(len(r.content))
                req = factory.get(url.format(x=x, y=y))
                req.user = user
                t = time.perf_counter()
                tile_view(req, campaign.pk, args.layer, z, x, y)
                fn.append((time.perf_counter() - t) * 1000)
                if args.ab:
                    grid_max, vector_tiles.GRID_MAX_ZOOM = vector_tiles.GRID_MAX_ZOOM, vector_tiles.GRID_ZOOM - 1
                    t = time.perf_counter()
                    tile_view(req, campaign.pk, args.layer, z, x, y)
                    off.append((time.perf_counter() - t) * 1000)
                    vector_tiles.GRID_MAX_ZOOM = grid_max
                # the bare query under the tile statement's own settings (no parallel workers, no JIT,
                # vector_tiles.TILE_SETTINGS_SQL), so the ratio is the view's overhead, not the settings
                with transaction.atomic(), connection.cursor() as cur:
                    cur.execute(vector_tiles.TILE_SETTINGS_SQL)
                    t = time.perf_counter()
                    cur.execute(bare_sql, [z, x, y, campaign.pk, z, x, y])
                    data = cur.fetchone()[0]
                    bare.append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    cur.execute(bare_stored_sql, [z, x, y, campaign.pk, z, x, y])
                    cur.fetchone()
                    stored.append((time.perf_counter() - t) * 1000)
                if data:
                    import mapbox_vector_tile

                    if len(feats) < len(tiles):
                        feats.append(len(mapbox_vector_tile.decode(bytes(data))["blocks"]["features"]))
        ratio = pct(view, 0.95) / max(pct(bare, 0.95), 1e-9)
        fn_ratio = pct(fn, 0.95) / max(pct(bare, 0.95), 1e-9)
        print(f"{z:>3} {len(tiles):>5} {statistics.mean(feats) if feats else 0:>9.0f} "
              f"{statistics.mean(sizes) / 1024:>6.1f} {pct(view, .5):>9.2f} {pct(view, .95):>9.2f} "
              f"{pct(fn, .5):>8.2f} {pct(fn, .95):>8.2f} "
              f"{pct(bare, .5):>9.2f} {pct(bare, .95):>9.2f} {ratio:>9.2f} {fn_ratio:>8.2f} {queries:>7} {pct(stored, .95):>12.2f}"
              + (f" {pct(off, .95):>8.2f}" if args.ab else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
