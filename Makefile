# `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
# The system's Python when it is recent enough: services (an agent, exporters) can then run as
# other users; a Python under someone's home directory (pyenv's, say) isn't theirs to run.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ffwatt-installed

.PHONY: deps demo demo-local down lint test test-all dashboards clean

deps: $(STAMP)

$(STAMP): pyproject.toml infra/bootstrap.sh
	PYTHON=$(PYTHON) ./infra/bootstrap.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The real path: master stack, an agent for this machine, `prefect deployment run`.
demo: deps
	$(BIN)/ffwatt demo

# The same campaign in-process, without a stack.
demo-local: deps
	$(BIN)/ffwatt campaign run deployments/campaigns/quick.yaml
	$(BIN)/ffwatt report latest --campaign quick

down: deps
	$(BIN)/ffwatt demo --stop

# ruff and mypy first: a typing or lint error fails in seconds, not after the suite.
lint: deps
	$(BIN)/ruff check .
	$(BIN)/mypy

# The fast tier, for every change: what needs no Prefect server, stack, ingest, network namespace or long
# encode (under 3 minutes). Its slowest tests are printed, so a slow newcomer shows.
test: lint
	$(BIN)/python -m pytest -m "not e2e and not fleet" --durations=15

# Every tier, as CI runs it: the fast one, the end-to-end tests (real Prefect server, stack, FFmpeg,
# VictoriaMetrics, nginx-rtmp) and the fleet in network namespaces (as root).
test-all: lint
	$(BIN)/python -m pytest --durations=15

# The Grafana dashboards' JSON, from the code that builds them (a test checks the two agree).
dashboards: deps
	$(BIN)/python infra/grafana/dashboards.py

clean:
	rm -rf $(VENV) .ffwatt results *.egg-info
