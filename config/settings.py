"""Django settings for lcz-annotator: one module, driven by the environment.

Environment variables (a git-ignored `.env` beside manage.py fills in those the environment leaves
unset; `make demo` writes one; DOTENV_PATH names another file, empty: read none)
  DJANGO_DEBUG        "1" for development. Only then do the defaults below apply.
  SECRET_KEY          required when DEBUG is off.
  DATABASE_URL        postgis://user@host:port/db (production, tests) or spatialite:///path
                      (embedded default, DEBUG only).
  CELERY_BROKER_URL   redis://127.0.0.1:6379/0; unset with DEBUG on = tasks run in-process.
  MEDIA_ROOT          where imagery (COGs) and generated files live.
  STORAGE_URL         s3://bucket/prefix: media on an S3-compatible store instead (annotator/media.py),
                      with AWS_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_S3_REGION_NAME.
  ALLOWED_HOSTS       comma-separated, required when DEBUG is off.
  TRUSTED_PROXIES     comma-separated IPs/CIDRs of the reverse proxies whose X-Forwarded-For is
                      believed (client address for login rate limits); default none.
  LOGIN_RATE, LOGIN_RATE_PER_ADDRESS  login attempts per account / per client address.
  MEDIA_ACCEL_REDIRECT_PREFIX  e.g. /protected-media/: downloads answer with X-Accel-Redirect (nginx).
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# KEY=value lines of a local `.env` (`make demo` writes one) fill in what the environment leaves
# unset: a variable set in the environment always wins over the file. The test runs set
# DOTENV_PATH empty, so a developer's .env never reaches them.
DOTENV_PATH = os.environ.get("DOTENV_PATH", str(BASE_DIR / ".env"))
if DOTENV_PATH and Path(DOTENV_PATH).is_file():
    environ.Env.read_env(DOTENV_PATH, overwrite=False)
_SET_IT = "set it in the environment or in .env (make demo writes one)"


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _required(name: str, dev_default: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set when DJANGO_DEBUG is off: {_SET_IT}.")


DEBUG = _env_bool("DJANGO_DEBUG", False)
SECRET_KEY = _required("SECRET_KEY", "dev-only-insecure-key-never-use-in-production")
ALLOWED_HOSTS = [h for h in _required("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "rest_framework",
    "django_ratelimit",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc served from our static files, not a CDN
    "leaflet",
    "annotator",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
_DEFAULT_DB = f"spatialite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(_required("DATABASE_URL", _DEFAULT_DB), conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.contrib.gis.db.backends.spatialite":
    # One transaction per save plus a busy timeout: SQLite writers queue instead of failing
    # (see machine notes on lost/duplicated saves under concurrency).
    # SQLite loads mod_spatialite with RTLD_GLOBAL, which puts the system GEOS/PROJ/SQLite symbols
    # first in line for every library loaded later: shapely, pyproj, pyogrio and rasterio wheels
    # then bind to the wrong copies and crash (segfault writing a GeoPackage). Loading the
    # wheels' own copies first keeps each library on its own. Measured; see README "Notes".
    import pyogrio  # noqa: F401
    import pyproj  # noqa: F401
    import rasterio  # noqa: F401
    import shapely  # noqa: F401

    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # IMMEDIATE: a save (services run each write in one transaction) takes the write lock when its
    # transaction begins, so concurrent saves queue on the busy timeout instead of failing on a
    # read-to-write lock upgrade. Requests are not wrapped in transactions: reads never lock.
    # (The file is switched to WAL once, after migrate: readers then never block the writer.)
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA synchronous=NORMAL;"})
    SPATIALITE_LIBRARY_PATH = os.environ.get("SPATIALITE_LIBRARY_PATH", "mod_spatialite")
elif DATABASES["default"]["ENGINE"] not in {"django.contrib.gis.db.backends.postgis"}:
    raise ImproperlyConfigured(
        "DATABASE_URL must be postgis://... or spatialite:///...; got engine "
        + DATABASES["default"]["ENGINE"]
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(_required("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Object storage (annotator/media.py): STORAGE_URL=s3://bucket/prefix puts MEDIA (imagery COGs,
# packages, maps, checkpoints) on an S3-compatible store, at AWS_S3_ENDPOINT_URL (e.g.
# http://minio:9000; unset = AWS) with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
# AWS_S3_REGION_NAME. Unset: the local MEDIA_ROOT, the default. PACKAGE_CACHE_DIR keeps the
# packages train_msunet downloads from the store (once each).
STORAGE_URL = os.environ.get("STORAGE_URL", "")
AWS_S3_ENDPOINT_URL = os.environ.get("AWS_S3_ENDPOINT_URL") or None
AWS_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID") or None
AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY") or None
AWS_S3_REGION_NAME = os.environ.get("AWS_S3_REGION_NAME", "us-east-1")
PACKAGE_CACHE_DIR = Path(os.environ.get("PACKAGE_CACHE_DIR", str(VAR_DIR / "cache" / "packages")))
if STORAGE_URL:
    from urllib.parse import urlsplit as _urlsplit

    _store = _urlsplit(STORAGE_URL)
    if _store.scheme != "s3" or not _store.netloc:
        raise ImproperlyConfigured(f"STORAGE_URL must be s3://bucket/prefix; got {STORAGE_URL!r}.")
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": _store.netloc, "location": _store.path.strip("/"), "endpoint_url": AWS_S3_ENDPOINT_URL,
        "access_key": AWS_ACCESS_KEY_ID, "secret_key": AWS_SECRET_ACCESS_KEY, "region_name": AWS_S3_REGION_NAME,
        "addressing_style": "path", "file_overwrite": True, "default_acl": None}}

# --- security (production) ------------------------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# GDAL on Debian 12 is 3.6: GeoDjango warns gis.W001 (GDAL < 3.9); silence only that one.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "annotator.api.exceptions.domain_exception_handler",
    # JSON only, bounded in size and nesting (a 10,000-deep [[[...]]] is a 400, not a 500).
    "DEFAULT_PARSER_CLASSES": ["annotator.api.parsers.BoundedJSONParser"],
    # NaN/Infinity parse as numbers so the split validator can name the field that holds them
    # (strict parsing would answer a bare 400 without saying which field was wrong).
    "STRICT_JSON": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "lcz-annotator API",
    "DESCRIPTION": "Mixed Local Climate Zone labels for OSM street blocks.",
    "VERSION": "0.1.0",
    # the docs pages load Swagger UI / Redoc from drf-spectacular-sidecar's static files
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "annotator.api.schema.postprocess_api_schema"],
    "ENUM_NAME_OVERRIDES": {"GeoJSONFeatureTypeEnum": ["Feature"],
                            "GeoJSONFeatureCollectionTypeEnum": ["FeatureCollection"]},
    # ids in paths are non-negative 64-bit integers (annotator/url_converters.py, "id64")
    "PATH_CONVERTER_OVERRIDES": {"id64": {"type": "integer", "format": "int64", "minimum": 0,
                                          "maximum": 2**63 - 1}},
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
if not CELERY_BROKER_URL and not DEBUG:
    raise ImproperlyConfigured(f"CELERY_BROKER_URL must be set when DJANGO_DEBUG is off: {_SET_IT}.")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL  # embedded default: tasks run in-process
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL or None)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Queues by kind of work, so each kind gets the machines it needs (docs/deploy.md):
#   predict  model inference (GPU workers:  celery -A config worker -Q predict)
#   chips    chip cutting and map rendering (CPU workers: -Q chips)
#   default  everything else (small bookkeeping tasks)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "annotator.tasks.predict_*": {"queue": "predict"},
    "annotator.tasks.chips_*": {"queue": "chips"},
}
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # a chunk whose worker died goes back to the queue

# --- caches (login rate limits, tiles) --------------------------------------------------------
# CACHE_URL=redis://host:6379/1 shares the cache between workers and machines; in production it
# falls back to a Redis broker's URL, in development to a per-process memory cache.
CACHE_URL = os.environ.get("CACHE_URL", "")
if not CACHE_URL and not DEBUG and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CACHE_URL = CELERY_BROKER_URL
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
    # django-ratelimit only lists django-redis as supported; Django's own RedisCache has the
    # atomic add/incr it relies on.
    SILENCED_SYSTEM_CHECKS += ["django_ratelimit.W001"]
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # the login rate limit works per process with a memory cache: fine for one-process development
    SILENCED_SYSTEM_CHECKS += ["django_ratelimit.E003", "django_ratelimit.W001"]
# Block tile requests carry a signed pass instead of reading the session and user rows
# (annotator/tile_pass.py); only with a shared cache, where a logout reaches every process.
TILE_PASS = _env_bool("TILE_PASS", bool(CACHE_URL))
# Login attempts (frontend/auth_views.py), on /accounts/login/ and /admin/login/ together.
# Per account (the username, lowercased): tight, since no one mistypes a password ten times a
# minute, and it is what stops guessing one account from many addresses. Per client address:
# looser, because a whole office or campus can sit behind one NAT/proxy address and one person's
# typos must not lock out the rest; it still stops spraying many accounts from one address.
LOGIN_RATE = os.environ.get("LOGIN_RATE", "10/m")
LOGIN_RATE_PER_ADDRESS = os.environ.get("LOGIN_RATE_PER_ADDRESS", "60/m")
# The reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed: the client
# is the right-most address there that is not one of them (frontend/client_ip.py). Empty: the
# client is REMOTE_ADDR and X-Forwarded-For is ignored (anyone could write it).
TRUSTED_PROXIES = [p.strip() for p in os.environ.get("TRUSTED_PROXIES", "").split(",") if p.strip()]
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network.") from None
# Generated files (frontend/download_views.py) are sent by Django, or, with this set (e.g.
# "/protected-media/", an nginx `internal` location aliased to MEDIA_ROOT), handed to nginx with
# an X-Accel-Redirect header once the permission check passed.
MEDIA_ACCEL_REDIRECT_PREFIX = os.environ.get("MEDIA_ACCEL_REDIRECT_PREFIX") or None
# Encoded imagery tiles (annotator.tiles). Keys carry the COG's identity: entries never go stale.
TILE_CACHE_URL = os.environ.get("TILE_CACHE_URL", CACHE_URL)
CACHES["tiles"] = (
    {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": TILE_CACHE_URL,
     "KEY_PREFIX": "tiles", "TIMEOUT": 7 * 24 * 3600}
    if TILE_CACHE_URL else
    {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tiles",
     "TIMEOUT": 7 * 24 * 3600, "OPTIONS": {"MAX_ENTRIES": 5000}}
)

# --- Leaflet --------------------------------------------------------------------------------
LEAFLET_CONFIG = {"DEFAULT_CENTER": (60.17, 24.94), "DEFAULT_ZOOM": 15, "MAX_ZOOM": 21, "RESET_VIEW": False}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
