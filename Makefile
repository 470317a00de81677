# The two commands a fresh machine needs: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel by default; GPU users can pass TORCH=torch (or keep the build they already have in the venv).
TORCH ?= torch==2.13.0

# The training tools whose own loaders read the exports in tests/exporters: LLaMA-Factory and ms-swift. Their pins
# on datasets and transformers clash with ours, so they go in with --no-deps, with only the packages their data
# loaders import (torchaudio is left out: its wheels lag torch, and the test stubs it). Pinned, so that a new
# release cannot change what the tests run; peft and accelerate within LLaMA-Factory's own ranges. From PyPI only.
CONSUMER_LOADERS := llamafactory==0.9.5 peft==0.18.1 accelerate==1.11.0 omegaconf==2.4.0 \
	ms-swift==4.6.0 modelscope==1.40.2 modelscope-hub==0.5.1 cryptography==51.0.1 cffi==2.1.1 json-repair==0.64.6 \
	aiohttp==3.14.5 aiohappyeyeballs==2.7.1 aiosignal==1.4.0 frozenlist==1.8.0 multidict==7.2.1 propcache==0.5.4 \
	yarl==1.25.1

.PHONY: install demo test lint format bench-deps

$(BIN)/llava-mixes: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,ray,ann,report]"
	touch $@

# Where PyPI cannot give them, the build goes on and their two tests skip, saying so in the summary.
$(VENV)/consumer-loaders.stamp: Makefile $(BIN)/llava-mixes
	if $(BIN)/python -m pip install -q --no-deps $(CONSUMER_LOADERS); then touch $@; else \
	  echo "LLaMA-Factory and ms-swift could not be installed: their loaders' round-trip tests will skip" >&2; fi

install: $(BIN)/llava-mixes $(VENV)/consumer-loaders.stamp

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
