# PointsBridge: `make run` starts the whole system, `make test` runs every test.
# Each target builds what it needs: the venv, the generated code, the tools.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
DEPS   := $(VENV)/.deps-stamp
GEN    := generated/.stamp
BUF    := node_modules/.bin/buf
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: help venv proto lint test screenshots chaos bench run demo migrate certs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(DEPS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

# protoc output goes to generated/; the editable install is refreshed so that
# the `pointsbridge` package root it creates is importable.
$(GEN): $(DEPS) $(PROTOS)
	rm -rf generated/pointsbridge
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m grpc_tools.protoc -Iprotos \
		--python_out=generated --pyi_out=generated \
		--grpc_python_out=generated --mypy_grpc_out=generated $(PROTOS)
	find generated/pointsbridge -type d -exec touch {}/__init__.py \;
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(GEN) ## Create .venv with every dependency and the generated code

proto: $(DEPS) ## Regenerate generated/ from protos/
	rm -f $(GEN)
	$(MAKE) $(GEN)

$(BUF): package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

lint: $(GEN) $(BUF) ## ruff + mypy on hand-written code, buf lint on the contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(wildcard servicekit cardpoints ecommerce pointsbridge_cli storefront bench chaos tests)
	$(BUF) lint

# Most tests wait on servers and processes more than they compute, so two workers
# finish sooner even on two cores; worksteal evens out the long tests at the end.
TEST_WORKERS ?= 2

test: $(GEN) $(BUF) ## Every test, on SQLite and PostgreSQL (TEST_WORKERS=0: in one process)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

screenshots: $(GEN) ## Retake docs/images/ (the storefront's pages) from the browser tests
	POINTSBRIDGE_SCREENSHOT_DIR=docs/images $(BIN)/pytest -q tests/storefront/test_browser*.py

chaos: $(GEN) ## The long fault harness (20 SIGKILLs per run) on SQLite, then PostgreSQL
	$(PY) -m chaos.harness --preset long --db sqlite
	$(PY) -m chaos.harness --preset long --db postgres

bench: $(GEN) ## Throughput and latency against bare gRPC echo baselines; writes docs/PERFORMANCE.md
	$(PY) -m bench

run: $(GEN) ## The whole system on SQLite under var/, storefront on 127.0.0.1:8080, demo data
	$(PY) -m pointsbridge_cli.devstack run

demo: $(GEN) ## Redeem three demo coupons on the running system; show balance and codes
	$(PY) -m pointsbridge_cli.devstack demo

certs: $(GEN) ## A development CA, service certificates and token keys in certs/ (never committed)
	$(PY) -m servicekit.devcerts --out certs

migrate: $(GEN) ## Apply the database migrations to the var/ databases
	$(BIN)/cardpoints-server --migrate-only --database-url sqlite:///var/cardpoints.db
	$(BIN)/ecommerce-server --migrate-only --database-url sqlite:///var/ecommerce.db

clean: ## Remove the venv, generated code and local databases
	rm -rf $(VENV) generated/pointsbridge $(GEN) var node_modules
