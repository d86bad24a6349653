# Fresh machine: Python 3.11+, Node 18+, make. Each target installs what it needs: `install` only what
# production runs (requirements.txt: no Node, no embedded PostgreSQL); `run` adds the development services,
# `test` the test tools.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test install install-dev install-test browser migrate worker bench clean-data help

help:
	@echo "make run   - install, then start PostgreSQL (embedded), Azurite, API and worker; Ctrl-C stops all"
	@echo "make test  - install, then run the whole test suite"
	@echo "make bench - run the benchmarks in bench/"
	@echo "make install - production's Python packages only (requirements.txt); see README, Production"

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-dev test_requirements.txt client/pyproject.toml $(wildcard client/labelstore_client/*.py)
	$(PIP) install --quiet --disable-pip-version-check -r test_requirements.txt
	$(PIP) install --quiet --disable-pip-version-check ./client
	touch $@

# mltable in a virtualenv of its own: it pins azure-identity older than ours (tests/test_azureml.py uses it).
.venv-mltable/.installed: tests/mltable_requirements.txt
	test -x .venv-mltable/bin/python || $(PYTHON) -m venv .venv-mltable
	.venv-mltable/bin/pip install --quiet --disable-pip-version-check -r tests/mltable_requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Headless Chromium for the Swagger UI browser test, from Debian's packages.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install it (Debian: apt-get install chromium)"; exit 1; fi; }

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev node_modules/.installed

install-test: $(VENV)/.installed-test node_modules/.installed .venv-mltable/.installed browser

run: install-dev
	$(PY) -m app run

# Three pytest-xdist workers, each with its own PostgreSQL and Azurite. Many tests wait on real processes
# (workers, servers, browsers), so a third keeps two cores busier (257 s against 296 s with two); four loaded
# them past what the timing tests (a worker's shutdown, a status probe's deadline) allow. TEST_WORKERS=0 runs
# the suite in one process.
TEST_WORKERS ?= 3
test: install-test
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: install-test
	$(PY) bench/run_all.py

migrate: install
	$(PY) -m app migrate

worker: install
	$(PY) -m app worker

clean-data:
	rm -rf var
