# RELIEF — the README's commands. `make run` and `make test` install whatever is missing first.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned per platform and installed before the project so that nothing pulls an unpinned (CUDA) build.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed-$(shell echo "$(TORCH_SPEC)" | tr -c 'a-zA-Z0-9.' '_')

export FLWR_TELEMETRY_ENABLED = 0
export FLWR_DISABLE_UPDATE_CHECK = 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION = 1

.PHONY: install run test test-fast lint bench clean help

help:
	@echo "make install   create $(VENV), install $(TORCH_SPEC) and relief with its extras (idempotent)"
	@echo "make run       run the default experiment (RELIEF vs FedAvg on synthetic PAMAP2) and print a comparison"
	@echo "make test      install, then run the whole test suite"
	@echo "make lint      ruff + mypy"
	@echo "make bench     benchmarks (clock prediction vs measured wall-clock, ...)"
	@echo "make clean     remove caches, runs/ and $(VENV)"

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (RELIEF needs Python >= 3.11; set PYTHON=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[simulation,plot,dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(PY) -m common.cli simulate configs/default.yaml --compare relief,fedavg,fedavg-deadline

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache runs build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
