"""Benchmark (not a test): imagery tiles and model chips read from an S3 API server vs from local disk.

    .venv/bin/python scripts/bench_s3.py [--size 4096] [--tiles 200] [--blocks 100]

Needs no database: it writes a synthetic 8-bit RGB display COG (--size px square, 0.5 m pixels,
512 px blocks, overviews: what import_imagery writes) and the campaign mosaic VRT over it into a
temp folder, starts moto's S3 API server (moto[server], a dev requirement) on 127.0.0.1 and
uploads both, then reads the same work twice through annotator.media, once with MEDIA_ROOT on
local disk and once with STORAGE_URL=s3://...:
  - tiles: `tiles.mosaic_file` (os.stat locally, one HEAD request on S3) + `tiles.read_tile` +
    WebP encoding, for distinct z18 tiles over the image in random order, readers pooled as in
    the server (GDAL's block cache and /vsicurl chunk cache warm up alike); the Django tile cache
    is not used (every tile is read);
  - chips: `lcz_model.chips.cut_block_chips` of 100 m square blocks at random places, from the
    mosaic opened once (as export_dataset and prediction jobs do).
Prints p50/p95 per source and the S3/local ratio. The S3 server is moto (Python, in this
process's machine): a real store adds network latency per range request; MinIO on the LAN is
closer to these figures than AWS S3 across a WAN.
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for name, value in {"DJANGO_DEBUG": "1", "SECRET_KEY": "bench-only-key", "DOTENV_PATH": "",
                    "DJANGO_SETTINGS_MODULE": "config.settings"}.items():
    os.environ.setdefault(name, value)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096, help="side of the synthetic COG in px (default 4096)")
    p.add_argument("--tiles", type=int, default=200, help="tiles read per source (default 200)")
    p.add_argument("--blocks", type=int, default=100, help="blocks chipped per source (default 100)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def make_media(root: Path, size: int) -> tuple[str, str]:
    """A display COG and the mosaic VRT over it under root/imagery/campaign-1/; their relative keys."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from annotator.ingest.imagery import write_cog, write_mosaic

    folder = root / "imagery" / "campaign-1"
    folder.mkdir(parents=True)
    src = root / "source.tif"
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 40, size=(size, size))
    data = np.stack([(xx // 3 + noise) % 256, (yy // 3 + noise) % 256, ((xx + yy) // 5 + noise) % 256]).astype("uint8")
    with rasterio.open(src, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:3067",
                       transform=from_origin(385_000.0, 6_672_000.0, 0.5, 0.5), tiled=True) as ds:
        ds.write(data)
    cog = write_cog(src, folder / "scene.tif")
    write_mosaic([cog], folder / "mosaic.vrt")
    src.unlink()
    return "imagery/campaign-1/scene.tif", "imagery/campaign-1/mosaic.vrt"


def bench_source(label: str, mosaic_rel: str, tile_list, polygons) -> dict:
    import rasterio

    from annotator import media, tiles
    from lcz_model.chips import cut_block_chips

    tiles.readers.clear()
    owner = SimpleNamespace(pk=1, mosaic_path=mosaic_rel)
    t0 = time.perf_counter()
    sf = tiles.mosaic_file(owner)
    with tiles.readers.reader(sf):
        pass
    first_open = time.perf_counter() - t0
    tile_ms = []
    for t in tile_list:
        t0 = time.perf_counter()
        sf = tiles.mosaic_file(owner)  # what each request does: the file's identity (stat or HEAD)
        pixels = tiles.read_tile(sf, t.z, t.x, t.y)
        if pixels is not None:
            tiles.encode(*pixels, "webp")
        tile_ms.append((time.perf_counter() - t0) * 1000)
    chip_ms = []
    with rasterio.open(media.gdal_path(mosaic_rel)) as ds:
        for poly in polygons:
            t0 = time.perf_counter()
            cut_block_chips(ds, poly, size=256, max_local=8)
            chip_ms.append((time.perf_counter() - t0) * 1000)
    tiles.readers.clear()
    return {"label": label, "open_ms": first_open * 1000, "tile": tile_ms, "chip": chip_ms}


def main() -> None:
    args = parse_args()
    import django

    django.setup()
    import morecantile
    from django.conf import settings
    from moto.server import ThreadedMotoServer
    from pyproj import Transformer
    from shapely.geometry import box

    from annotator import media

    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    local_root = work / "media"
    print(f"writing a {args.size} px COG and its mosaic under {local_root} ...", flush=True)
    cog_rel, mosaic_rel = make_media(local_root, args.size)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        store = dict(STORAGE_URL="s3://bench/media", AWS_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                     AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_S3_REGION_NAME="us-east-1")

        def use(remote: bool) -> None:
            settings.MEDIA_ROOT = local_root
            for k, v in store.items():
                setattr(settings, k, v if remote or k != "STORAGE_URL" else "")

        use(True)
        media.client().create_bucket(Bucket="bench")
        for rel in (cog_rel, mosaic_rel):
            media.put_file(local_root / rel, rel)

        # distinct z18 tiles over the image, and 100 m blocks inside it, in one random order for both
        rng = random.Random(args.seed)
        half = args.size * 0.5
        to_wgs = Transformer.from_crs("EPSG:3067", "EPSG:4326", always_xy=True)
        west, south = to_wgs.transform(385_000.0, 6_672_000.0 - half)
        east, north = to_wgs.transform(385_000.0 + half, 6_672_000.0)
        tms = morecantile.tms.get("WebMercatorQuad")
        tile_list = list(tms.tiles(west, south, east, north, [18]))
        rng.shuffle(tile_list)
        tile_list = tile_list[:args.tiles]
        polygons = []
        for _ in range(args.blocks):
            x = 385_000.0 + rng.uniform(0, half - 100)
            y = 6_672_000.0 - rng.uniform(100, half)
            polygons.append(box(x, y, x + 100, y + 100))

        results = []
        for remote in (False, True):
            use(remote)
            results.append(bench_source("S3 (moto)" if remote else "local disk", mosaic_rel, tile_list, polygons))
    finally:
        server.stop()

    print(f"\n{len(tile_list)} z18 tiles (WebP) and {len(polygons)} block chip sets (global + mask + up to 8 local, "
          f"256 px) from a {args.size} px COG via its mosaic VRT\n")
    print(f"{'source':<12} {'first open ms':>13} {'tile p50':>9} {'tile p95':>9} {'chips p50':>10} {'chips p95':>10}")
    for r in results:
        print(f"{r['label']:<12} {r['open_ms']:>13.1f} {pct(r['tile'], 50):>9.1f} {pct(r['tile'], 95):>9.1f} "
              f"{pct(r['chip'], 50):>10.1f} {pct(r['chip'], 95):>10.1f}")
    local, s3 = results
    print(f"{'S3 / local':<12} {s3['open_ms'] / local['open_ms']:>13.1f} "
          f"{pct(s3['tile'], 50) / pct(local['tile'], 50):>9.2f} {pct(s3['tile'], 95) / pct(local['tile'], 95):>9.2f} "
          f"{pct(s3['chip'], 50) / pct(local['chip'], 50):>10.2f} {pct(s3['chip'], 95) / pct(local['chip'], 95):>10.2f}")
    print(f"\n(mean tile ms: local {statistics.mean(local['tile']):.1f}, S3 {statistics.mean(s3['tile']):.1f})")
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
