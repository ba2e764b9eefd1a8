"""Generated files of a campaign, for the app's admins only.

MEDIA_ROOT is never served as a whole (the imagery COGs and every interpreter's split in a
learning round's annotations.csv live there). What can be downloaded, by admins only:

    /downloads/campaigns/<pk>/learning/<path>  ->  MEDIA_ROOT/learning/campaign-<pk>/<path>
                                                    (active-learning rounds: annotator/learning.py)
    /downloads/campaigns/<pk>/maps/<path>      ->  MEDIA_ROOT/maps/campaign-<pk>/<path>
                                                    (`export_maps --out MEDIA_ROOT/maps/campaign-<pk>`)

Imagery is only ever read through the member-checked tile views (annotator/tile_views.py).
Everyone else gets a 404 (the anonymous a login redirect), as does anything that is not a
regular file inside that campaign's folder once every symlink is resolved. With the setting
MEDIA_ACCEL_REDIRECT_PREFIX the file is handed to nginx (X-Accel-Redirect) instead of being
streamed by Django.

With object storage (STORAGE_URL=s3://..., annotator/media.py) the same path checks apply to the
object's key and Django streams the object from the store through its default storage after
the permission check (no presigned URL: a link that outlives the check could be passed on).
"""
from __future__ import annotations

import mimetypes
import os
import stat
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_safe

from annotator import media as media_store
from annotator import selectors

KINDS = ("learning", "maps")   # folders under MEDIA_ROOT holding campaign-<pk>/ subfolders


def _not_found() -> Http404:
    return Http404("no such file")


def _checked_parts(relpath: str) -> tuple[str, list[str]]:
    """(kind, the rest) of `<kind>/<path>`; Http404 for anything but plain names under a known kind."""
    if "\\" in relpath or "\x00" in relpath or relpath.startswith("/"):
        raise _not_found()
    parts = relpath.split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise _not_found()
    kind, rest = parts[0], parts[1:]
    if kind not in KINDS:
        raise _not_found()
    return kind, rest


def resolve_campaign_key(pk: int, relpath: str) -> str:
    """The object-storage key (relative to the store's prefix) of `<kind>/<path>` of campaign `pk`;
    Http404 for a bad path or a missing object."""
    kind, rest = _checked_parts(relpath)
    key = "/".join([kind, f"campaign-{pk}", *rest])
    if not media_store.exists(key):
        raise _not_found()
    return key


def resolve_campaign_file(pk: int, relpath: str) -> tuple[Path, str]:
    """(the real path, its path under MEDIA_ROOT as requested) for `<kind>/<path>` of campaign
    `pk`; Http404 for anything outside that campaign's folder or not a regular file."""
    kind, rest = _checked_parts(relpath)
    media = Path(settings.MEDIA_ROOT)
    try:
        kind_root = (media / kind).resolve(strict=True)
        folder = (media / kind / f"campaign-{pk}").resolve(strict=True)
        real = (media / kind / f"campaign-{pk}").joinpath(*rest).resolve(strict=True)
    except (OSError, RuntimeError):       # missing, or a symlink loop
        raise _not_found() from None
    if not folder.is_relative_to(kind_root) or not real.is_relative_to(folder) or real == folder:
        raise _not_found()
    try:
        imagery = (media / "imagery").resolve()
    except (OSError, RuntimeError):
        imagery = None
    if imagery is not None and real.is_relative_to(imagery):   # never, whatever links say
        raise _not_found()
    return real, "/".join([kind, f"campaign-{pk}", *rest])


def _open_regular(path: Path):
    """Open without following a symlink and without blocking on a FIFO; only a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        raise _not_found() from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_found()
    return os.fdopen(fd, "rb")


@require_safe
@login_required
def campaign_file(request, pk: int, relpath: str):
    if not selectors.is_admin(request.user):
        raise _not_found()
    campaign = get_object_or_404(selectors.campaigns(), pk=pk)
    filename = relpath.rsplit("/", 1)[-1]
    if media_store.is_remote():  # streamed from the object store, after the same checks
        response = FileResponse(media_store.open(resolve_campaign_key(campaign.pk, relpath)), as_attachment=True,
                                filename=filename)
        response["Cache-Control"] = "private, no-store"
        return response
    real, media_path = resolve_campaign_file(campaign.pk, relpath)
    prefix = getattr(settings, "MEDIA_ACCEL_REDIRECT_PREFIX", None)
    if prefix:
        _open_regular(real).close()
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + quote(media_path)
        response["Content-Disposition"] = content_disposition_header(True, filename)
    else:
        response = FileResponse(_open_regular(real), as_attachment=True, filename=filename)
    response["Cache-Control"] = "private, no-store"
    return response
