# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ML_ASSETS_HOME ?= $(CURDIR)/.ml_assets
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DAYS ?= 10

.PHONY: install chromium demo test ui clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Headless Chromium for the UI test (ml_assets_tests/ui): Debian's package, installed when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null || echo sudo)
chromium:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ml-assets demo --days $(DAYS)

test: install chromium
	$(BIN)/pytest

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1

clean:
	rm -rf $(ML_ASSETS_HOME) $(DAGSTER_HOME)
