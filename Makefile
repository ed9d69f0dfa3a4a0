# One command per habit, the same locally and in CI (.ci/run calls `make test` and `make lint`).
# Everything runs in a virtual environment (.venv, made on first use): Debian's and Ubuntu's system
# Python refuses `pip install` outside one (PEP 668, "externally-managed-environment").
VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
PYTHON ?= python3

.PHONY: install run test lint format bench lock

$(VENV)/bin/python:
	python3 -m venv $(VENV)

install: $(VENV)/bin/python
	$(PYTHON) -m pip install -q -e '.[dev]'

run: $(VENV)/bin/python
	$(PYTHON) -m pip install -q -e . && agentbot web

test: install
	$(PYTHON) -m pytest

lint: install
	ruff check .
	ruff format --check .
	mypy
	shellcheck agentbot/sandbox/docker/wrapper.sh scripts/docker-engine-2
	lint-imports
	scripts/check-compose

format:
	ruff format .
	ruff check --fix .

bench:
	$(PYTHON) -m bench.engine_overhead

# requirements.lock: the runtime dependencies pinned with hashes (the Dockerfile installs from it).
lock: install
	$(PYTHON) -m pip install -q pip-tools
	pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --no-emit-trusted-host -o requirements.lock pyproject.toml
