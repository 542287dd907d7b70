# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SYNAPSE_VENV := .venv-synapse
STAMP := $(VENV)/.installed

.PHONY: demo test lint format install synapse bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Synapse lives in its own venv so its pins never clash with ours; the Matrix
# suite starts it as a subprocess. A failed install makes that suite skip, loudly.
$(SYNAPSE_VENV)/.installed:
	-$(PYTHON) -m venv $(SYNAPSE_VENV) && \
	  $(SYNAPSE_VENV)/bin/pip install --quiet 'matrix-synapse>=1.100' && \
	  touch $(SYNAPSE_VENV)/.installed

synapse: $(SYNAPSE_VENV)/.installed

demo: $(STAMP)
	$(BIN)/seva run --sandbox

test: $(STAMP) $(SYNAPSE_VENV)/.installed
	$(BIN)/pytest -q -ra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bot adapters handlers entrypoints
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
