# Set-up and entry points. `make demo` and `make test` work on a fresh machine: they create
# .venv, install the project, and (as root) install missing Debian packages (libngspice0).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint system-packages install

demo: install system-packages  ## train on the default simulated bench
	$(BIN)/hil train bench_configs/sim-digits.yaml

test: install system-packages  ## run the whole test suite
	$(BIN)/python -m pytest -q

lint: install  ## ruff
	$(BIN)/ruff check .

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

system-packages:
	bash scripts/ensure-system-packages.sh
