# durafunc: two commands on a fresh machine -- `make start` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: install start test test-stress test-sdk-oldest bench clean chromium

install: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

$(NODE_STAMP): package.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 18+ with npm (e.g. apt-get install nodejs npm)"; exit 1; }
	@npm install --no-audit --no-fund --loglevel=error >/dev/null
	@touch $(NODE_STAMP)

# make start [APP=samples/hello] [PORT=7072] [HUB=MyHub] [START_ARGS="--verbose --functions a b"]
APP ?= samples/hello
PORT ?=
HUB ?=
START_ARGS ?=
start: install
	cd $(APP) && $(CURDIR)/$(VENV)/bin/durafunc start $(if $(PORT),--port $(PORT)) \
		$(if $(HUB),--task-hub-name $(HUB)) $(START_ARGS)

test: install chromium
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The dashboard's browser tests (make test) drive Debian's chromium through Playwright (Playwright's own browser
# downloads are not used): installed with apt-get when missing (as root, else through sudo).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "chromium not found: install it (apt-get install chromium) for the browser tests"; exit 1; fi; \
	  command -v apt-get >/dev/null || { echo "chromium not found and no apt-get: install chromium and put it on PATH"; exit 1; }; \
	  echo "Installing chromium (Debian package) for the dashboard's browser tests..."; \
	  $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null; }

test-stress: install
	$(PY) -m pytest -q -m stress $(PYTEST_ARGS)

# The oldest azure-functions-durable users may pin (1.2.x), in a venv of its own.
test-sdk-oldest: $(NODE_STAMP)
	@test -x .venv-sdk12/bin/python || $(PYTHON) -m venv .venv-sdk12
	@.venv-sdk12/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 'azure-functions-durable==1.2.10'
	.venv-sdk12/bin/python -m pytest -q tests/test_durable_logic.py tests/test_triage.py tests/test_reconcile.py \
		tests/test_engine.py tests/test_engine_crash.py tests/test_host_v1.py tests/test_host_v2.py tests/test_auth.py \
		tests/test_extended_sessions.py \
		tests/test_samples.py

bench: install
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-sdk12 node_modules .pytest_cache
