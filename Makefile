# The README's two commands: `make run` (the whole service) and `make test` (the suite).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# compat mode puts the checkout itself on sys.path, so top-level modules such as
# cli.py and beat_schedule.py import the same way in every process.
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -q --config-settings editable_mode=compat

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/devora run

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/web.py

clean:
	rm -rf $(VENV) build *.egg-info
