# Two commands: `make demo` and `make test`. Both build .venv from scratch if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench lock floors clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "voicemail-worker needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[worker,local]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/voicemail demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The suite picks its Redis itself: REDIS_URL if it answers, else 127.0.0.1:6379 (db 15),
# else an embedded redis-server it starts and stops (see tests/conftest.py).
test: lint typecheck
	$(BIN)/python -m pytest

unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not integration"

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/roundtrip.py

# The Docker image's pinned dependencies.
lock: $(VENV)/.installed-test
	$(BIN)/uv pip compile pyproject.toml --extra worker --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -q -o requirements.lock

# The fault and race tests (with those filed by area: sentinel, breaker, client, engine,
# logs, the shared bulk) at the lowest versions pyproject allows (.ci/run runs it too).
FLOORS ?= .venv-floors
floors: $(VENV)/.installed-test
	$(BIN)/uv venv -q --allow-existing --python $(BIN)/python $(FLOORS)
	VIRTUAL_ENV=$(FLOORS) $(BIN)/uv pip install -q --resolution lowest-direct -e '.[test]'
	$(FLOORS)/bin/python -m pytest -q tests/test_faults.py tests/test_races.py \
		tests/test_liveness.py tests/test_structure.py tests/test_pipeline.py \
		tests/test_kombu_patches.py tests/test_partition.py tests/test_sentinel.py \
		tests/test_breaker.py tests/test_client.py tests/test_engine.py tests/test_logs.py \
		tests/test_bulk.py::test_two_workers_share_one_bulk

clean:
	rm -rf $(VENV) .venv-floors .pytest_cache .mypy_cache .ruff_cache
