# lcz-annotator. The two set-up commands: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PY := .venv/bin/python
DEMO_ENV := DJANGO_DEBUG=1
# The test database and broker (override e.g. TEST_DATABASE_URL=postgis://lcz@127.0.0.1:5432/other)
TEST_DATABASE_URL ?= postgis://lcz@127.0.0.1:5432/lcz
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
TEST_ENV := DJANGO_DEBUG=1 SECRET_KEY=test-only-key DOTENV_PATH= \
	DATABASE_URL=$(TEST_DATABASE_URL) \
	CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	MEDIA_ROOT=$(CURDIR)/var/test-media

.PHONY: demo test setup setup-services services bench-ingest bench-annotate bench-export bench-city clean

## make demo: embedded SpatiaLite database, in-process Celery, demo data, serves http://127.0.0.1:8000
## It writes a local, git-ignored .env (development settings, a random SECRET_KEY) if there is none,
## so that `.venv/bin/python manage.py ...` runs as the README shows; the environment wins over it.
demo: setup
	@test -e .env || { key=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') && (umask 077 && \
		printf '%s\n' "# written by make demo: local development settings (git-ignored; never commit)" \
		DJANGO_DEBUG=1 "SECRET_KEY=$$key" "DATABASE_URL=spatialite:///$(CURDIR)/var/db.sqlite3" \
		"MEDIA_ROOT=$(CURDIR)/var/media" > .env) && echo "==> wrote .env (local development settings)"; }
	$(DEMO_ENV) $(PY) manage.py migrate --no-input -v 0
	$(DEMO_ENV) $(PY) manage.py load_demo
	$(DEMO_ENV) $(PY) manage.py runserver 127.0.0.1:8000

## make test: PostGIS + Redis on 127.0.0.1, the whole pytest suite
test: setup-services services
	$(TEST_ENV) $(PY) -m pytest

setup:
	bash scripts/setup.sh

setup-services:
	bash scripts/setup.sh --services

services:
	bash scripts/services.sh

bench-ingest: setup-services services
	$(TEST_ENV) $(PY) scripts/bench_ingest.py

clean:
	rm -rf var/

bench-annotate: setup-services services
	$(TEST_ENV) $(PY) scripts/bench_annotate.py

bench-export: setup-services services
	$(TEST_ENV) $(PY) scripts/bench_export.py

## make bench-city: the city-scale campaign of issue #14 (20,000 blocks; its own database, not the test one)
BENCH_CITY_DATABASE_URL ?= postgis://lcz@127.0.0.1:5432/lcz_bench_city
bench-city: setup-services services
	psql -q -h 127.0.0.1 -U lcz lcz -tc "SELECT 1 FROM pg_database WHERE datname = 'lcz_bench_city'" | grep -q 1 \
		|| psql -q -h 127.0.0.1 -U lcz lcz -c "CREATE DATABASE lcz_bench_city OWNER lcz"
	$(TEST_ENV) DATABASE_URL=$(BENCH_CITY_DATABASE_URL) MEDIA_ROOT=$(CURDIR)/var/bench-media \
		$(PY) manage.py migrate --no-input -v 0
	$(TEST_ENV) DATABASE_URL=$(BENCH_CITY_DATABASE_URL) MEDIA_ROOT=$(CURDIR)/var/bench-media \
		nice $(PY) scripts/bench_city.py $(BENCH_CITY_ARGS)
