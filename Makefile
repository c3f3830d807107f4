# The interface to the project: CI and people call the same targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
APP ?= samples.app:app
DATA ?= bayou-data/silo.db
PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: run test test-unit test-cluster lint format clean bench bench-quick bench-peers

# A virtualenv with bayou installed in editable mode and the dev tools; redone when
# pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/bayou silo --app $(APP) --data $(DATA) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-cluster: $(STAMP)
	$(BIN)/python -m pytest tests/cluster $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The benchmark (bench/README.md): every scenario with medians of several runs (~15 min),
# or all of them once in under 2 minutes; reports land in bench/results/.
bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# Optional: the same call workload on Ray and Restate (bench/README.md, "Peers"), which it
# installs into virtualenvs of their own under ~/.cache/bayou-bench-peers (npm for the
# Restate server); ~8 minutes. PEERS_ARGS="--runs 1 --duration 2 --only restate" and so on.
PEERS_ARGS ?=
bench-peers: $(STAMP)
	$(BIN)/python -m bench.peers $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bayou-data

# The chaos suite (tests/chaos): a fault every few seconds under load from several client
# processes, then every history checked. `make chaos` is the short run the test suite also
# does (under 3 minutes, every kind of fault); `make chaos DURATION=600` injects faults for
# ten minutes; SEED=N replays a schedule. Reports land in bayou-data/chaos/.
DURATION ?=
SEED ?=
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos $(if $(DURATION),--duration $(DURATION)) $(if $(SEED),--seed $(SEED))
