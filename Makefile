# One command per habit, the same locally and in CI (.ci/run calls `make test` and `make lint`).
PYTHON ?= python3

.PHONY: install run test lint format bench

install:
	$(PYTHON) -m pip install -q -e '.[dev]'

run:
	$(PYTHON) -m pip install -q -e . && agentbot web

test: install
	$(PYTHON) -m pytest

lint: install
	ruff check .
	ruff format --check .
	mypy
	lint-imports

format:
	ruff format .
	ruff check --fix .

bench:
	$(PYTHON) -m bench.engine_overhead
