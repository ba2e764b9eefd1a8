"""Where media lives: the one home for it. MEDIA (imagery COGs and mosaics, dataset packages,
fraction maps, checkpoints) is in the local folder MEDIA_ROOT by default, or on an S3-compatible
object store when the setting STORAGE_URL is `s3://bucket/prefix` (with AWS_S3_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_S3_REGION_NAME; config/settings.py).

Paths recorded in the database (`Campaign.mosaic_path`, `ImageryScene.cog_path`) stay keys
relative to the media root either way; this module turns them into what each reader needs:

- GDAL (tiles, chips, the mosaic VRT): `gdal_path(rel)` is the local absolute path, or
  `/vsis3/bucket/prefix/rel`, read with HTTP range requests (only the COG blocks a tile or a
  chip needs; no local copy). `configure_gdal()` puts the endpoint and credentials into the
  process environment, where GDAL reads its config options at each request (rasterio.Env
  would cover only the `with` block, but pooled tile readers fetch blocks long after opening),
  and where the spawned chip-cutting workers inherit them.
- writers stage files in a local temp folder (GDAL and rio-cogeo write seekable local files),
  then `put_file` / `put_tree` upload them.
- downloads (frontend/download_views.py) stream through Django's default storage
  (django-storages' S3Storage when remote), after the permission check.
- a dataset package for training is downloaded once into PACKAGE_CACHE_DIR (`local_package`):
  training reads every chip every epoch, so one verified local copy is cheaper than range reads
  over the network each epoch, and lcz_model stays plain files (it never imports Django).

Local default: every function here answers with MEDIA_ROOT paths and touches no network.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat as stat_module
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

#: Extensions GDAL may fetch from the store (no probing for sidecar files of other kinds).
GDAL_EXTENSIONS = ".tif,.tiff,.vrt,.ovr,.msk"
#: The file a package upload writes last: its presence says the package is complete.
PACKAGE_MARKER = "SHA256SUMS"


class MediaUnavailable(Exception):
    """The object store cannot be reached, or refuses us (endpoint down, no bucket, bad keys)."""


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix in it ("" = the bucket's root)."""

    bucket: str
    prefix: str = ""

    def key(self, rel: str | os.PathLike = "") -> str:
        rel = str(rel).replace(os.sep, "/").strip("/")
        return "/".join(p for p in (self.prefix.strip("/"), rel) if p)

    def child(self, rel: str | os.PathLike) -> "S3Location":
        return S3Location(self.bucket, self.key(rel))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_s3_url(url: str) -> S3Location:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    return S3Location(parts.netloc, parts.path.strip("/"))


def location() -> S3Location | None:
    """The object store's bucket and prefix, or None for the local MEDIA_ROOT (the default)."""
    url = getattr(settings, "STORAGE_URL", "") or ""
    return parse_s3_url(url) if url else None


def is_remote() -> bool:
    return location() is not None


def media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


# --- GDAL ----------------------------------------------------------------------------------------

def gdal_env() -> dict[str, str]:
    """GDAL config options to read the store through /vsis3/ ({} when media is local)."""
    if not is_remote():
        return {}
    opts = {"AWS_VIRTUAL_HOSTING": "FALSE", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": GDAL_EXTENSIONS,
            "GDAL_HTTP_CONNECTTIMEOUT": "5", "GDAL_HTTP_TIMEOUT": "60"}
    endpoint = getattr(settings, "AWS_S3_ENDPOINT_URL", None)
    if endpoint:
        parts = urlsplit(endpoint)
        opts["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
        opts["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
    region = getattr(settings, "AWS_S3_REGION_NAME", None)
    if region:
        opts["AWS_REGION"] = opts["AWS_DEFAULT_REGION"] = region
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        value = getattr(settings, name, None)
        if value:
            opts[name] = value
    return opts


def configure_gdal() -> None:
    """Put `gdal_env()` into the process environment (GDAL reads config options from it at each
    request; spawned workers inherit it). Nothing happens for local media."""
    for name, value in gdal_env().items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def gdal_path(rel: str | os.PathLike) -> str:
    """What GDAL opens for the media file `rel`: MEDIA_ROOT/rel, or /vsis3/bucket/prefix/rel."""
    loc = location()
    if loc is None:
        return str(media_root() / rel)
    configure_gdal()
    return f"/vsis3/{loc.bucket}/{loc.key(rel)}"


# --- the S3 client ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _client(endpoint, key_id, secret, region):
    import boto3
    from botocore.config import Config

    cfg = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                 s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                        region_name=region, config=cfg)


def client():
    """A boto3 S3 client for the configured endpoint (cached; boto3 clients are thread-safe)."""
    return _client(getattr(settings, "AWS_S3_ENDPOINT_URL", None), getattr(settings, "AWS_ACCESS_KEY_ID", None),
                   getattr(settings, "AWS_SECRET_ACCESS_KEY", None), getattr(settings, "AWS_S3_REGION_NAME", None))


@contextmanager
def _s3_errors(what: str):
    """botocore's connection and access errors as MediaUnavailable, saying which store and what to check."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except S3UploadFailedError as exc:  # boto3's transfer wraps the ClientError of an upload
        raise MediaUnavailable(f"object storage refused {what} ({exc}); check STORAGE_URL, the bucket "
                               "and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"404", "NoSuchKey", "NotFound"}:
            raise
        raise MediaUnavailable(f"object storage refused {what} ({code or exc}); check STORAGE_URL, the bucket "
                               "and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.") from None
    except BotoCoreError as exc:
        endpoint = getattr(settings, "AWS_S3_ENDPOINT_URL", None) or "AWS S3"
        raise MediaUnavailable(f"object storage at {endpoint} is unreachable for {what} ({exc}); check "
                               "AWS_S3_ENDPOINT_URL and that the store is up.") from None


def storage_options() -> dict:
    """django-storages S3Storage options for the configured store (STORAGES["default"])."""
    loc = location()
    if loc is None:
        raise ValueError("STORAGE_URL is not an s3:// URL")
    return {"bucket_name": loc.bucket, "location": loc.prefix, "endpoint_url": settings.AWS_S3_ENDPOINT_URL,
            "access_key": settings.AWS_ACCESS_KEY_ID, "secret_key": settings.AWS_SECRET_ACCESS_KEY,
            "region_name": settings.AWS_S3_REGION_NAME, "addressing_style": "path", "file_overwrite": True,
            "default_acl": None}


def storage():
    """Django's default storage: FileSystemStorage over MEDIA_ROOT, or S3Storage over the store."""
    from django.core.files.storage import storages

    return storages["default"]


# --- reading -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stat:
    size: int
    version: str   # changes whenever the file is rewritten: inode+mtime locally, the ETag remotely


def stat(rel: str | os.PathLike) -> Stat | None:
    """Size and version of the media file `rel`, or None when it is not there."""
    if not str(rel):
        return None
    loc = location()
    if loc is None:
        try:
            st = os.stat(media_root() / rel)
        except FileNotFoundError:
            return None
        if not stat_module.S_ISREG(st.st_mode):
            return None
        return Stat(st.st_size, f"{st.st_ino}|{st.st_mtime_ns}")
    from botocore.exceptions import ClientError

    try:
        with _s3_errors(f"s3://{loc.bucket}/{loc.key(rel)}"):
            head = client().head_object(Bucket=loc.bucket, Key=loc.key(rel))
    except ClientError:
        return None
    return Stat(int(head["ContentLength"]), f"{head['ETag'].strip(chr(34))}|{head['LastModified'].isoformat()}")


def exists(rel: str | os.PathLike) -> bool:
    return stat(rel) is not None


def open(rel: str | os.PathLike, mode: str = "rb"):  # noqa: A001 - the storage verb
    """The media file `rel` opened for reading through Django's default storage (streams from the store)."""
    with _s3_errors(str(rel)):
        return storage().open(str(rel).replace(os.sep, "/"), mode)


# --- writing -------------------------------------------------------------------------------------

def put_file(local: str | os.PathLike, rel: str | os.PathLike, *, dest: S3Location | None = None) -> str:
    """Upload the local file to media `rel` (or to `dest`'s bucket at dest.key(rel)); returns the key.
    Locally (no store, no dest) it is copied into MEDIA_ROOT unless it already is that file."""
    dest = dest or location()
    if dest is None:
        target = media_root() / rel
        if Path(local).resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
        return str(rel)
    key = dest.key(rel)
    with _s3_errors(f"uploading s3://{dest.bucket}/{key}"):
        client().upload_file(str(local), dest.bucket, key)
    return key


def put_tree(local_dir: str | os.PathLike, dest: S3Location, *, last: tuple[str, ...] = (PACKAGE_MARKER,)) -> list[str]:
    """Upload every file under `local_dir` to `dest` (keys = dest.prefix/relative path), the files
    named in `last` after all others: a reader that waits for them never sees half a tree."""
    root = Path(local_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(root).as_posix() in last)  # stable: the markers go last
    return [put_file(p, p.relative_to(root).as_posix(), dest=dest) for p in files]


def has_prefix(dest: S3Location) -> bool:
    """Whether any object lies under `dest` (as a folder)."""
    with _s3_errors(f"listing {dest.url}"):
        page = client().list_objects_v2(Bucket=dest.bucket, Prefix=dest.key() + "/", MaxKeys=1)
    return page.get("KeyCount", 0) > 0


def delete(rels) -> None:
    """Remove media files (keys relative to the store's prefix); missing ones are fine. Local: unlink."""
    loc = location()
    for rel in rels:
        if loc is None:
            (media_root() / rel).unlink(missing_ok=True)
        else:
            with _s3_errors(f"deleting {rel}"):
                client().delete_object(Bucket=loc.bucket, Key=loc.key(rel))


@contextmanager
def staging():
    """A local folder to write media into before it is uploaded: MEDIA_ROOT itself when media is
    local (nothing changes), else a temp folder removed afterwards."""
    if not is_remote():
        yield media_root()
        return
    tmp = Path(tempfile.mkdtemp(prefix="lcz-media-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(stage: Path, rels) -> list[str]:
    """Upload the files `rels` written under `stage` (see staging) and drop the local copies; the
    keys uploaded. Nothing to do when media is local (stage is MEDIA_ROOT)."""
    if not is_remote():
        return []
    done = []
    for rel in rels:
        put_file(stage / rel, rel)
        (stage / rel).unlink()
        done.append(str(rel))
    return done


# --- output targets of commands -----------------------------------------------------------------

def resolve_target(out: str) -> Path | S3Location:
    """A command's --out: `s3://bucket/key` (on the configured endpoint), `media:REL` (under the media
    root, local or remote), or a local folder."""
    if out.startswith("s3://"):
        return parse_s3_url(out)
    if out.startswith("media:"):
        rel = out.removeprefix("media:").strip("/")
        loc = location()
        return loc.child(rel) if loc is not None else media_root() / rel
    return Path(out)


# --- packages for training --------------------------------------------------------------------

def local_package(src: S3Location, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local copy of the dataset package at `src`, downloaded once into the package cache
    (PACKAGE_CACHE_DIR, keyed by the package's SHA256SUMS) and checked against SHA256SUMS. A
    package without SHA256SUMS is incomplete (an upload writes it last) and is refused."""
    cache = Path(cache_dir or settings.PACKAGE_CACHE_DIR)
    s3 = client()
    with _s3_errors(f"reading {src.url}"):
        try:
            sums = s3.get_object(Bucket=src.bucket, Key=src.key(PACKAGE_MARKER))["Body"].read()
        except s3.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{src.url}: no {PACKAGE_MARKER} there: not a complete dataset package "
                                    "(an export uploads it last)") from None
        target = cache / hashlib.sha256(sums).hexdigest()[:24]
        if (target / PACKAGE_MARKER).is_file():
            return target  # downloaded before: the same SHA256SUMS names the same bytes
        expected = {}
        for line in sums.decode().splitlines():
            digest, name = line.split(maxsplit=1)
            expected[name.lstrip("*")] = digest
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache))
        try:
            for name, digest in expected.items():
                path = tmp / name
                path.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(src.bucket, src.key(name), str(path))
                if _sha256(path) != digest:
                    raise FileNotFoundError(f"{src.url}/{name}: its SHA-256 is not the one SHA256SUMS lists")
            (tmp / PACKAGE_MARKER).write_bytes(sums)
            try:
                tmp.rename(target)
            except OSError:  # another process finished the same download first
                if not (target / PACKAGE_MARKER).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
