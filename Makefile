# One entry point for people and CI. Each target creates the .venv it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit clean bench bench-quick lock soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: start cartsync on 127.0.0.1:8000 (embedded Redis unless CARTSYNC_REDIS_URL is set)
run: $(STAMP)
	$(BIN)/cartsync serve

## test: lint, type-check and run every test against real redis-server processes
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check service tests clients/python bench
	$(BIN)/ruff format --check service tests clients/python bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

## bench: every benchmark on loopback (prints markdown, writes bench/results/*.json); about
## 25 minutes on 2 cores: websocket figures twice (client offering deflate or not), idle at 10,000
bench: $(STAMP)
	$(BIN)/python -m bench all

## bench-quick: smaller counts, a few minutes
bench-quick: $(STAMP)
	$(BIN)/python -m bench all --quick

## soak: the hostile-conditions battery in its long form (issue 10; about 10 minutes): 30,000
## fuzzed frames, 10,000 sockets ended every way, a 3-minute soak of 200 sockets
soak: $(STAMP)
	CARTSYNC_SOAK=1 $(BIN)/pytest -m reliability tests/reliability -p no:cacheprovider -s \
	  --timeout=1200

## lock: pin the runtime dependencies and the otel extra, with hashes, in requirements.lock (the image
## installs exactly these); run it after changing [project] dependencies in pyproject.toml
lock: $(STAMP)
	$(BIN)/pip install --quiet 'uv>=0.5,<1'
	$(BIN)/uv pip compile pyproject.toml --extra otel --quiet --generate-hashes --python-version 3.11 \
	  --python-platform linux --custom-compile-command 'make lock' --output-file requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
