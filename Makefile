# vpnadmin: `make run` serves the app, `make test` installs and runs every check,
# `make bench` runs the benchmark suites. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
SUITE ?=
ARGS ?=

# The test and benchmark environment: own databases and an own Redis key prefix.
TEST_ENV := DATABASE_URL=postgres://postgres@127.0.0.1:5432/vpnadmin REDIS_URL=redis://127.0.0.1:6379/0 \
	STATICFILES_BACKEND=django.contrib.staticfiles.storage.StaticFilesStorage

.PHONY: help run test lint format bench prepare clean lock

help:
	@echo "make run    install, start PostgreSQL and Redis under var/, migrate, serve web + worker on 127.0.0.1:8000"
	@echo "make test   install what the tests need, start services, lint and run every test"
	@echo "make bench  run benchmark suites (SUITE=name for one), rows in var/bench/<suite>.json"

PYTHON ?= python3

# pyproject.toml's requires-python, enforced before anything is installed.
$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
		|| { echo "vpnadmin needs Python 3.11 (with venv); '$(PYTHON)' is $$($(PYTHON) -V 2>&1). Set PYTHON=python3.11." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt $(RUN_STAMP)
	$(PY) -m pip install -q --require-hashes -r requirements-dev.txt
	touch $@

# vpnadmin.embedded holds the run lock (a second run is refused), starts the embedded
# PostgreSQL and Redis under var/ unless DATABASE_URL / REDIS_URL name servers, and stops
# them after the rest has ended. honcho runs the Procfile (web, worker; both restarted if
# they die, both stopped by Ctrl-C) once the database is migrated; `-p` because honcho
# hands each process its own PORT, counting from this one (web is first).
run: $(RUN_STAMP)
	@$(PY) -m vpnadmin.embedded -- $(SHELL) -ec '\
		$(PY) manage.py migrate --noinput; \
		$(PY) manage.py collectstatic --noinput --verbosity 0; \
		$(PY) manage.py createadmin; \
		exec $(VENV)/bin/honcho start --no-colour -p "$${PORT:-8000}" -f Procfile'

prepare: $(DEV_STAMP)
	bash scripts/prepare-test-machine.sh

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
# Types, with django-stubs (config in pyproject.toml); settings read like the tests read them.
	$(TEST_ENV) $(VENV)/bin/mypy .
# Security lint: bandit at medium severity and up over the code (tests excluded: they
# start processes and open loopback URLs on purpose), and known vulnerabilities in the
# lock files (scripts/audit-dependencies.py; AUDIT_STRICT=1 also fails on what it cannot audit).
# (bandit warns about every other check on a line that carries a reviewed nosec: noise, filtered.)
	set -o pipefail; $(VENV)/bin/bandit -q -r vpnadmin users containers perf bench -x '*/tests/*' \
		--severity-level medium 2>&1 | { grep -v 'nosec encountered' || true; }
	$(PY) scripts/audit-dependencies.py requirements.txt requirements-dev.txt

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: prepare lint
	$(TEST_ENV) $(PY) manage.py check
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(PY) -m pytest $(ARGS)

bench: prepare
	$(TEST_ENV) $(PY) -m bench $(SUITE)

clean:
	rm -rf $(VENV) var/static var/bench

# Recompile the hashed lock files from requirements.in / requirements-dev.in.
lock: $(DEV_STAMP)
	$(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 requirements.in -o requirements.txt
	$(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 requirements-dev.in -o requirements-dev.txt
