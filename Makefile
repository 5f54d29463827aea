# Set-up and entry points. `make demo` and `make test` work on a fresh machine: they create
# .venv, install the project with every extra, and (as root) install missing Debian packages
# (libngspice0, dataset-fashion-mnist).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test check lint system-packages install

demo: install system-packages  ## train on the default simulated bench
	$(BIN)/hil train bench_configs/sim-digits.yaml

test: check system-packages  ## static checks, then the whole test suite
	$(BIN)/python -m pytest -q

check: install  ## ruff, the layering contract (import-linter), the type checker (mypy)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

lint: check

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,test]'
	touch $@

system-packages:
	bash scripts/ensure-system-packages.sh
