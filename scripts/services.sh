#!/usr/bin/env bash
# Starts (or reuses) PostgreSQL with PostGIS and Redis on 127.0.0.1 for the test suite.
# No systemd here: services are started by this script. Idempotent.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

pg_major=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1 || true)
if [ -z "$pg_major" ]; then
  echo "PostgreSQL is not installed; run scripts/setup.sh --services" >&2; exit 1
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "==> starting PostgreSQL $pg_major"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$pg_major" main start 2>/dev/null \
    || $SUDO pg_ctlcluster "$pg_major" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
# A superuser role for the tests: pytest-django creates the test database and the extension.
as_postgres() {
  if psql -q -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
    psql -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
  else  # no trust auth on TCP: use the local socket as the postgres OS user
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- psql -q -d postgres -v ON_ERROR_STOP=1 "$@"
    else sudo -u postgres psql -q -d postgres -v ON_ERROR_STOP=1 "$@"; fi
  fi
}
as_postgres >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lcz') THEN CREATE ROLE lcz LOGIN SUPERUSER; END IF;
END $$;
SELECT 'CREATE DATABASE lcz OWNER lcz' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'lcz')\gexec
SQL
psql -q -h 127.0.0.1 -U lcz lcz -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "==> starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
echo "==> PostGIS on 127.0.0.1:5432 (role lcz) and Redis on 127.0.0.1:6379 are up"
