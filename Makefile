# Two entry points: `make demo` and `make test`. Each builds its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit sandbox-deps browser-deps bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml $(BIN)/activate
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(BIN)/activate
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python examples/demo.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check kernos tests benchmarks examples
	$(BIN)/ruff format --check kernos tests benchmarks examples

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The shell tool's sandbox needs bubblewrap; install it when missing (CI runs as
# root on Debian). Where that fails the build goes on, and the sandbox tests fail
# saying what to install.
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	  $$sudo apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	  { $$sudo apt-get update -q >/dev/null 2>&1 && $$sudo apt-get install -y -q bubblewrap; }; \
	} || echo "make: could not install bubblewrap (apt-get install bubblewrap); the sandbox tests will fail" >&2

# The dashboard's browser tests drive Debian's chromium through Playwright (never a
# browser downloaded by `playwright install`); install it when missing.
browser-deps:
	@[ -x /usr/bin/chromium ] || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	  $$sudo apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$sudo apt-get update -q >/dev/null 2>&1 && $$sudo apt-get install -y -q chromium; }; \
	} || echo "make: could not install chromium (apt-get install chromium); the browser tests will fail" >&2

# Two pytest-xdist workers (the tests wait on processes, sockets and the databases
# as much as on the CPU); the sandbox escape battery runs alone afterwards, because
# its limits and "host stays responsive" checks must not share the machine.
unit: $(VENV)/.installed-dev sandbox-deps browser-deps
	$(BIN)/pytest -q -n 2 --dist loadgroup --ignore=tests/sandbox
	$(BIN)/pytest -q tests/sandbox

test: lint typecheck unit

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/steps.py --store sqlite
	$(BIN)/python benchmarks/recovery.py --store sqlite

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
