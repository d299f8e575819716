# The README's two commands: `make run` (the whole service) and `make test` (the suite).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# compat mode puts the checkout itself on sys.path, so top-level modules such as
# cli.py and beat_schedule.py import the same way in every process.
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -q --config-settings editable_mode=compat

TS_DIR := clients/typescript
# npm ci (exact versions from the lock file, cache first) runs when the lock file changes;
# without npm on the machine the TypeScript tests skip (under CI they fail).
TS_DEPS := $(if $(shell command -v npm 2>/dev/null),$(TS_DIR)/node_modules/.package-lock.json)

.PHONY: run test bench clean openapi types

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[dev]'
	touch $@ $(VENV)/.installed

$(TS_DIR)/node_modules/.package-lock.json: $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --prefer-offline --no-audit --no-fund

run: $(VENV)/.installed
	$(BIN)/devora run

test: $(VENV)/.installed-dev $(TS_DEPS)
	$(BIN)/python -m pytest

# openapi.yaml from the app, then the TypeScript types from openapi.yaml.
openapi: $(VENV)/.installed
	$(BIN)/devora openapi export

types: openapi $(TS_DIR)/node_modules/.package-lock.json
	cd $(TS_DIR) && npm run generate

# The benchmarks load the servers with wrk, which the tests do not need (so CI does not install it).
bench: $(VENV)/.installed-dev
	@command -v wrk >/dev/null || { echo "the benchmarks need wrk on PATH (Debian: apt-get install wrk)" >&2; exit 1; }
	$(BIN)/python bench/web.py

clean:
	rm -rf $(VENV) build *.egg-info $(TS_DIR)/node_modules
