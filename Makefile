# The two commands of the README: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo test lint typecheck forge-test unit test-long bench clean

setup: $(STAMP) node_modules/.package-lock.json

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# The devnet: anvil, contracts, 4 staked solver nodes over libp2p, 200 accounts living through 14 market days
# (priced trades, funding, expiries settled and rolled, withdrawals), about three minutes.
demo: setup
	$(VENV)/bin/pmoracle devnet --nodes 4 --accounts 200 --days 14 --summary runs/demo-summary.json

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: setup
	$(VENV)/bin/mypy

test: setup lint typecheck forge-test
	$(VENV)/bin/pytest -q -m "not slow"

# Fuzz and invariant tests of the contracts (tests/foundry/, foundry.toml): forge and forge-std come from npm
# (package.json), solc is the pinned solcjs through the tests/foundry/solc shim. About a minute from a cold cache.
forge-test: node_modules/.package-lock.json
	node_modules/.bin/forge test

test-long: setup
	$(VENV)/bin/pytest -q -m slow

clean:
	rm -rf $(VENV) node_modules build runs .pytest_cache .mypy_cache .ruff_cache
