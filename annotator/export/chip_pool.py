"""Chip cutting for export_dataset in a process pool (no Django here: spawned workers import it).

Each worker opens the campaign's mosaic once (the pool's initializer) and cuts and writes the
chips of the chunks of blocks it is handed (lcz_model.chips: the same function inference uses).
Every block writes only its own files, so the package does not depend on the number of workers
or the order chunks finish in. The parent hands out at most 2 chunks per worker at a time and
pulls blocks from a generator, so memory stays bounded however many blocks there are.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

_STATE: dict = {}
CHIP_CHUNK = 16  # blocks per task handed to a worker


# GDAL's block cache per worker (MB): its default (5 % of RAM) let a worker reading the mosaic grow
# to ~700 MB at 5,000 blocks; chips read each block's window once, so a small cache costs nothing
CACHE_MB = "128"


def _open(mosaic: str, out_dir: str, size: int, max_local: int) -> None:
    os.environ.setdefault("GDAL_CACHEMAX", CACHE_MB)  # read by GDAL at its first raster read
    import rasterio

    _STATE.update(ds=rasterio.open(mosaic), out=out_dir, size=size, max_local=max_local)


def _cut(items: list[tuple[str, bytes]]) -> list[tuple[str, int, list | None]]:
    """(block key, local patches written, their boxes in the global image (BlockChips.boxes: the
    package's images/local_boxes.csv rows); 0 and None: no imagery inside the outline, nothing written)."""
    import shapely

    from lcz_model.chips import cut_block_chips, save_chips

    done = []
    for key, wkb in items:
        try:
            chips = cut_block_chips(_STATE["ds"], shapely.from_wkb(wkb), polygon_crs="EPSG:4326",
                                    size=_STATE["size"], max_local=_STATE["max_local"])
        except ValueError:
            chips = None
        if chips is None or not chips.local:
            done.append((key, 0, None))
            continue
        save_chips(chips, _STATE["out"], key)
        done.append((key, chips.n_local, chips.boxes()))
    return done


def _chunks(items: Iterable[tuple[str, bytes]], n: int) -> Iterator[list[tuple[str, bytes]]]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def cut_chips(mosaic: str, items: Iterable[tuple[str, bytes]], out_dir: str, *, size: int, max_local: int,
              workers: int | None = None, on_done=None, boxes: dict | None = None) -> dict[str, int]:
    """Chips of (block key, polygon WKB in EPSG:4326) items from the mosaic: {key: local patches}.
    `workers` processes (default: the CPU count; 1, or a single chunk of blocks: in this process,
    where starting a pool would cost more than it saves); `on_done(n)` after each chunk; `boxes`,
    when given, is filled with {key: each local patch's box in the global image} of the blocks cut."""
    workers = workers or os.cpu_count() or 1
    result: dict[str, int] = {}
    chunks = _chunks(items, CHIP_CHUNK)
    head = list(itertools.islice(chunks, 2))
    chunks = itertools.chain(head, chunks)
    if workers <= 1 or len(head) < 2:
        _open(mosaic, out_dir, size, max_local)
        try:
            for part in chunks:
                _merge(_cut(part), result, boxes)
                on_done and on_done(len(part))
        finally:
            _STATE.pop("ds").close()
        return result
    ctx = multiprocessing.get_context("spawn")  # never fork a process holding DB connections
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_open,
                             initargs=(mosaic, out_dir, size, max_local)) as pool:
        pending = set()
        for part in chunks:
            if len(pending) >= 2 * workers:  # bounded: wait for one before handing out more
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    _collect(fut, result, on_done, boxes)
            pending.add(pool.submit(_cut, part))
        for fut in pending:
            _collect(fut, result, on_done, boxes)
    return result


def cut_in_process(mosaic: str, items: Iterable[tuple[str, bytes]], out_dir: str, *, size: int,
                   max_local: int, boxes: dict | None = None) -> dict[str, int]:
    """`cut_chips` in this process, the mosaic kept open between calls (a Celery chips worker cuts
    chunk after chunk of the same mosaic: GDAL's block cache survives from one to the next); opened
    again when the file or the chip options change."""
    try:
        version = os.stat(mosaic).st_mtime_ns
    except OSError:  # not a local file (/vsis3/): by name
        version = None
    key = (mosaic, version, size, max_local)
    if _STATE.get("key") != key or "ds" not in _STATE:  # (cut_chips closes what it opened)
        if "ds" in _STATE:
            _STATE.pop("ds").close()
        _open(mosaic, out_dir, size, max_local)
        _STATE["key"] = key
    _STATE["out"] = out_dir
    result: dict[str, int] = {}
    _merge(_cut(list(items)), result, boxes)
    return result


def _merge(done, result: dict, boxes: dict | None) -> None:
    """_cut's rows into {key: local patches} and, when collected, {key: boxes} (blocks with chips)."""
    for key, n, bx in done:
        result[key] = n
        if boxes is not None and n:
            boxes[key] = bx


def _collect(fut, result: dict, on_done, boxes: dict | None = None) -> None:
    done = fut.result()
    _merge(done, result, boxes)
    on_done and on_done(len(done))
