"""Cheap version stamps for the block vector tiles, so a revalidation (If-None-Match) is answered
304 without building the tile (annotator/block_tile_views.py).

Two counters in the shared cache (Redis in production): one per campaign, bumped by every write
that changes what any block tile shows (block statuses, consensus and labels, new or removed
blocks, assignments, predictions), and one per (campaign, user), bumped when that user's own
assignments change (their map's statuses; which blocks they still label blind). A tile's stamp is
the pair for its viewer. Writers bump before and after their transaction commits (before: tests
and eager callers see it at once; after: no reader can pair the new stamp with the old rows).
A third counter per campaign moves with either kind of bump: `campaign_version` changes whenever
anything any member sees of the campaign changes (the dashboard keys its statistics on it instead of
re-reading every assignment). A missing counter starts at the clock's nanoseconds, and counters
expire after STAMP_SECONDS, so a write that bypasses the services (an admin edit in the database) is
served stale for at most that long, and a flushed cache can never bring back an old stamp.
"""
from __future__ import annotations

import time

from django.core.cache import cache
from django.db import transaction

STAMP_SECONDS = 600


def _key(campaign_id: int, user_id: int | None = None) -> str:
    return f"blocktiles:v:{campaign_id}" + ("" if user_id is None else f":{user_id}")


def _any_key(campaign_id: int) -> str:
    return f"blocktiles:v:{campaign_id}:any"


def counter(key: str, seconds: int = STAMP_SECONDS) -> int:
    """A counter's value; a missing one starts at the clock's nanoseconds (kept `seconds`), so a
    flushed or expired counter never comes back with an old value."""
    value = cache.get(key)
    if value is None:
        cache.add(key, time.time_ns(), seconds)
        value = cache.get(key)
    return int(value) if value is not None else time.time_ns()


def _bump_now(keys: list[str]) -> None:
    for key in keys:
        try:
            cache.incr(key)
            cache.touch(key, STAMP_SECONDS)
        except ValueError:                      # not there (expired or never read): a fresh start
            cache.set(key, time.time_ns(), STAMP_SECONDS)


def _bump(keys: list[str]) -> None:
    _bump_now(keys)
    transaction.on_commit(lambda: _bump_now(keys))


def bump(campaign_id: int) -> None:
    """What the block tiles of `campaign_id` show has changed, for everyone."""
    _bump([_key(campaign_id), _any_key(campaign_id)])


def bump_user(campaign_id: int, user_id: int) -> None:
    """Only `user_id`'s own view changed (their assignment's status)."""
    _bump([_key(campaign_id, user_id), _any_key(campaign_id)])


def stamp(campaign_id: int, user_id: int) -> str:
    """The viewer's stamp of the campaign's block tiles: changes whenever a tile they may see does.
    Both counters in one cache round trip (every tile request asks); a missing one is started."""
    keys = [_key(campaign_id), _key(campaign_id, user_id)]
    return _joined(keys, cache.get_many(keys))


def stamp_and(campaign_id: int, user_id: int, other_key: str) -> tuple[str, str | None]:
    """`stamp` and one more cache value (the viewer's tile pass version) in the same round trip."""
    keys = [_key(campaign_id), _key(campaign_id, user_id)]
    values = cache.get_many([*keys, other_key])
    other = values.get(other_key)
    return _joined(keys, values), None if other is None else str(other)


def _joined(keys: list[str], values: dict) -> str:
    return ".".join(str(int(values[k])) if values.get(k) is not None else str(counter(k)) for k in keys)


def campaign_version(campaign_id: int) -> str:
    """Changes with every bump of the campaign, whoever's view it was for."""
    return str(counter(_any_key(campaign_id)))
