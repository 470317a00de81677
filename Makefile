# The two commands a fresh machine needs: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel by default; GPU users can pass TORCH=torch (or keep the build they already have in the venv).
TORCH ?= torch==2.13.0

.PHONY: install demo test lint format bench-deps

$(BIN)/llava-mixes: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,ray,ann,report]"
	touch $@

install: $(BIN)/llava-mixes

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/llava-mixes demo --out llava_mixes_demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# Baselines for the benchmarks: imagededup without its torchvision models (only its search code runs).
bench-deps: install
	$(BIN)/python -m pip install -q --no-deps imagededup
	$(BIN)/python -m pip install -q scikit-learn matplotlib
