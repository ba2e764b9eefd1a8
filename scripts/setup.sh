#!/usr/bin/env bash
# Installs everything lcz-annotator needs on a fresh Debian 12 machine (run as root or with sudo):
#   - apt: GDAL, GEOS, PROJ, SpatiaLite (GeoDjango); with --services also PostGIS, Redis, Chromium
#   - a venv in .venv on a Python whose sqlite3 can load extensions (SpatiaLite needs that)
#   - the pinned pip requirements (requirements-dev.txt)
# Idempotent: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_services=0
[ "${1:-}" = "--services" ] && want_services=1

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_packages=(gdal-bin libgdal32 libgeos-c1v5 libproj25 libsqlite3-mod-spatialite)
if [ "$want_services" = 1 ]; then
  pg_major=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1 || true)
  pg_major=${pg_major:-15}
  apt_packages+=("postgresql-$pg_major" "postgresql-$pg_major-postgis-3" redis-server chromium chromium-driver)
fi

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A Python whose sqlite3 allows extension loading (pyenv builds here often do not).
pick_python() {
  for candidate in "${LCZ_PYTHON:-}" /usr/bin/python3.11 /usr/bin/python3 python3.11 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sqlite3, sys, venv; sys.exit(0 if hasattr(sqlite3.Connection, "enable_load_extension") and sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(pick_python) || { echo "No Python 3.11 with sqlite3 extension loading found; apt-get install python3.11-venv" >&2; exit 1; }
  echo "==> creating .venv with $py"
  "$py" -m venv .venv
fi

stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> pip install -r requirements-dev.txt (torch comes from local disk; first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
