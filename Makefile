# Two commands for a new machine: `make run` (set up + main job) and `make test` (set up + tests).
# `make setup` is idempotent: it reinstalls only when setup.cfg or pyproject.toml changed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mfed-installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup run test unit integration lint clean

setup: $(STAMP)

# torch goes in first and pinned: anything that pulls an unpinned torch fetches a CUDA build.
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: setup
	$(BIN)/mfed train $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check mfed ray_jobs tests benchmarks
	$(BIN)/mypy mfed

clean:
	rm -rf $(VENV) outputs wandb .pytest_cache
