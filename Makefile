# Two commands set everything up on a fresh machine with Python 3.11+:
#   make demo   install into .venv and run the main job on the embedded default
#   make test   install into .venv and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The CDNOW purchase logs the prediction tests fit (tests/cdnow.py) ship in the wheel of
# lifetimes (MIT), the package the BG/NBD papers' figures are usually reproduced with: it
# is downloaded, never installed or imported, and its data files are read from the wheel.
FIXTURES    := $(VENV)/fixtures
CDNOW_WHEEL := Lifetimes==0.11.3

.PHONY: install demo test test-unit test-integration test-shifted check clean

# Say what is happening (pip is silent for a minute), and keep pip's and setuptools'
# warnings, which look like errors and are not, in $(VENV)/install.log; shown on failure.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nurture needs Python 3.11 or newer; set PYTHON=python3.11")'
	@echo "installing nurture into $(VENV) (first run only, ~1 min; pip's log: $(VENV)/install.log)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --disable-pip-version-check --upgrade pip && \
	   $(BIN)/python -m pip install --disable-pip-version-check -e '.[test]' && \
	   $(BIN)/python -m pip download --disable-pip-version-check --no-deps -d $(FIXTURES) '$(CDNOW_WHEEL)'; } \
	   >$(VENV)/install.log 2>&1 || \
	 { tail -n 40 $(VENV)/install.log; echo "error: installing nurture failed; the whole log is $(VENV)/install.log" >&2; exit 1; }
	@touch $(STAMP)
	@echo "installed"

install: $(STAMP)

demo: install
	$(BIN)/nurture demo

check: install
	$(BIN)/nurture check

# Unit and end-to-end tests need nothing but Python; integration tests use the real
# Redis and PostgreSQL on 127.0.0.1 (skipped locally when missing, failures under CI=true).
test: install browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests
	$(MAKE) --no-print-directory test-shifted

# No test may depend on the hour, the date or the machine's time zone (README, under
# `make test`). `make test` proves it for the send paths: they run again with the
# wall clock at 22:30 Asia/Shanghai, inside the default quiet hours, moved by libfaketime
# (a test extra) in the pytest process and in every worker process it starts.
# By hand: make test-shifted SHIFT_TO=02:00 SHIFTED_TESTS="tests/campaigns tests/workers tests/e2e"
SHIFT_TO      ?= 22:30
SHIFTED_TESTS ?= tests/e2e/test_spine_sqlite.py tests/workers/cli/test_sending.py tests/workers/cli/test_reports.py \
                 tests/workers/cli/test_runreport.py tests/workers/cli/test_campaigns.py tests/e2e/test_test_send.py \
                 tests/integration/test_distributed.py tests/integration/test_rate_limit_processes.py
test-shifted: install
	$(BIN)/python -m tests.clockshift $(SHIFT_TO) --zone Asia/Shanghai -- -q -p no:cacheprovider $(SHIFTED_TESTS)

test-unit: install browser
	$(BIN)/python -m pytest -q -p no:cacheprovider tests --ignore=tests/integration

test-integration: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

# The reliability suite (docs/reliability.md): a 10,000-recipient campaign to a loopback
# sink through 2 worker processes, under each fault in turn (kill -9 a worker, restart
# Redis, a sink failing 20% of requests, dropped database connections, all at once);
# checks every message arrived exactly once. Needs PostgreSQL on 127.0.0.1 and redis-server.
.PHONY: reliability
reliability: install
	$(BIN)/python -m bench.reliability --recipients 10000 --workers 2 --scenario all

# The dashboard test (tests/e2e/test_dashboard_browser.py) loads the page in Debian's
# Chromium, driven by Playwright. Installed here when missing (as root, or with
# passwordless sudo); otherwise the test skips locally and fails under CI=true.
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  if command -v apt-get >/dev/null 2>&1 && { [ -z "$$SUDO" ] || sudo -n true 2>/dev/null; }; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null; } || \
	    echo "note: could not install chromium; the dashboard browser test will skip (fail under CI)"; \
	  else echo "note: chromium is missing and cannot be installed here (apt-get as root); the dashboard browser test will skip (fail under CI)"; fi; }

clean:
	rm -rf $(VENV) var build *.egg-info
