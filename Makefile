# Two commands do all set-up: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv and install torch + tinyasc on first use. Override TORCH for another platform,
# e.g. `make test TORCH=torch` on macOS; the default is the CPU wheel that CI uses.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint
install: $(STAMP)

$(STAMP): pyproject.toml
	@# tcmalloc: tinyasc preloads it when present (2-3x faster CPU training); best effort, never required
	-@ldconfig -p 2>/dev/null | grep -q libtcmalloc || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null; } || \
		echo "tinyasc: libtcmalloc-minimal4 not installed; falling back to glibc malloc settings"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tinyasc demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# the suite without the end-to-end tests marked slow (under a minute on a quiet 2-core machine)
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
