"""A short-lived signed pass for the block tile requests, so a tile costs no session row and no user
row (a map page asks for dozens of tiles at every pan; those two lookups were most of a small tile's
cost). The session stays the authority: a request without a valid pass goes the whole way (session,
user) and is given a fresh pass in a cookie scoped to the tile URLs.

A pass names the user, whether they are a superuser, a hash of the session key it was issued under
(so it is worth nothing without that session's cookie), and the user's pass version. The version is
a counter in the shared cache, read in the same round trip as the tile stamps, and moved by every
logout and every save of the user (deactivation, password, superuser flag), so any of those ends
every pass of the user at once; a pass also expires after PASS_SECONDS. Membership and roles are
still checked on every tile (`selectors.campaign_with_roles`).

Only with a cache shared by every process (settings.TILE_PASS, on when CACHE_URL is set): with a
per-process cache a logout in one process would not end the passes another process accepts.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.core.cache import cache

from . import tile_stamps

COOKIE = "lcz_tile_pass"
COOKIE_PATH = "/tiles/"
PASS_SECONDS = 15 * 60
_SALT = "annotator.tile_pass"


def enabled() -> bool:
    return bool(getattr(settings, "TILE_PASS", False))


def version_key(user_id: int) -> str:
    return f"tilepass:v:{user_id}"


def _session_hash(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Pass:
    user_id: int
    superuser: bool
    version: str

    def user(self) -> User:
        """The holder as an unsaved User with what the tile code reads (pk, is_superuser, is_active)."""
        return User(pk=self.user_id, is_superuser=self.superuser, is_active=True)


def read(request) -> Pass | None:
    """The request's pass if it is signed by us, unexpired and issued under the session cookie the
    request carries; None otherwise. Its version is still to be compared with `current_version`."""
    token = request.COOKIES.get(COOKIE)
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not (enabled() and token and session_key):
        return None
    try:
        data = signing.loads(token, salt=_SALT, max_age=PASS_SECONDS)
        if data["s"] != _session_hash(session_key):
            return None
        return Pass(user_id=int(data["u"]), superuser=bool(data["a"]), version=str(data["v"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None


def current_version(user_id: int) -> str:
    """The user's pass version (started when missing: a flushed cache ends every pass)."""
    return str(tile_stamps.counter(version_key(user_id), PASS_SECONDS * 2))


def end_passes(user_id: int) -> None:
    """Every pass issued to the user so far stops working (logout, any change to the account)."""
    cache.set(version_key(user_id), time.time_ns(), PASS_SECONDS * 2)


def attach(response, request, user) -> None:
    """Give the request's (authenticated, active) user a fresh pass for their later tile requests."""
    session_key = request.session.session_key if hasattr(request, "session") else None
    if not (enabled() and session_key and user.is_active):
        return
    token = signing.dumps({"u": user.pk, "a": bool(user.is_superuser), "v": current_version(user.pk),
                           "s": _session_hash(session_key)}, salt=_SALT, compress=False)
    response.set_cookie(COOKIE, token, max_age=PASS_SECONDS, path=COOKIE_PATH, httponly=True,
                        secure=settings.SESSION_COOKIE_SECURE, samesite=settings.SESSION_COOKIE_SAMESITE)
