# Two commands for a new machine: `make run` (set up + main job) and `make test` (set up + tests).
# `make setup` is idempotent: it reinstalls only when setup.cfg or pyproject.toml changed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mfed-installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup setup-data run test unit integration lint gpu-check clean

setup: $(STAMP)

# torch goes in first and pinned: anything that pulls an unpinned torch fetches a CUDA build.
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq torch==2.13.0
	$(BIN)/python -m pip install -qq -e '.[dev]'
	touch $@

# The built-in benchmark's real images: Debian's dataset-fashion-mnist (about 31 MB, MIT).
FASHION_DIR ?= /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
setup-data:
	@test -f $(FASHION_DIR)/train-images-idx3-ubyte.gz || { \
	  echo "installing dataset-fashion-mnist (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null; }

run: setup setup-data
	$(BIN)/mfed train $(ARGS)

# Unit tests on every core (each file on one worker: pytest-xdist), then the Ray tests on one shared cluster.
test: setup
	$(BIN)/python -m pytest tests/unit -n auto --dist loadfile $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

unit: setup
	$(BIN)/python -m pytest tests/unit -n auto --dist loadfile $(PYTEST_ARGS)

integration: setup
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check mfed ray_jobs tests benchmarks examples
	$(BIN)/mypy mfed

# Clients sharing one GPU (benchmarks/README.md); on a machine without CUDA it prints one line.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) outputs wandb .pytest_cache
