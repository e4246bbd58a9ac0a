# Two entry points (see README): `make demo` and `make test`. Each installs what it
# needs first: uv (through pip, if missing), then the locked environment in .venv.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: setup browser demo test selfcheck bench lock clean

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python >= 3.11"; exit 1; }
	@$(PYTHON) -m pip --version >/dev/null 2>&1 || { echo "error: pip is missing for $(PYTHON); on Debian: apt-get install python3-pip"; exit 1; }
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --user --quiet --break-system-packages uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: .venv/.synced

demo: setup
	$(UV) run --frozen protein-care demo --out $(DEMO_OUT)

selfcheck: setup
	$(UV) run --frozen protein-care selfcheck

# The app's end-to-end test drives Debian's Chromium and ChromeDriver.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "error: the browser tests need Chromium: sudo apt-get install chromium chromium-driver"; exit 1; fi; \
	fi

test: setup browser
	$(UV) run --frozen pytest $(PYTEST_ARGS)

bench: setup
	$(UV) run --frozen python benchmarks/bench_losses.py

lock:
	$(UV) lock

clean:
	rm -rf .venv .pytest_cache .hypothesis
