# Two entry points a new user needs: `make demo` (the main job on the tiny preset) and
# `make test` (the test suite). Both install the locked dependencies (uv.lock) into .venv
# first; that takes about a second when .venv already matches the lock.
PYTHON ?= python3
VENV   ?= .venv
# uv installs the lock (parallel wheel downloads, no resolver run); it lives in its own small
# venv so that syncing .venv never removes the tool doing the syncing.
UV_VERSION := 0.13.9
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
BIN    := $(VENV)/bin
EXTRAS ?= --extra test --extra app
# Never let uv fetch a Python build: use the interpreter named by PYTHON.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Compile the installed packages' bytecode at install time (about 20 s once, 1 s after): where
# PYTHONDONTWRITEBYTECODE is set, as on many CI images and containers, Python never caches it,
# and every command would compile torch and Prefect from source again (seconds per start).
export UV_COMPILE_BYTECODE := 1

.PHONY: demo test install lock clean-demo clean-venv

# The stamp is written last: an interrupted bootstrap is redone from scratch next time.
$(UV_STAMP):
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) \
	  || { echo "make: could not install uv $(UV_VERSION) from PyPI into $(TOOLS) (see pip's error above); check the network and rerun make" >&2; exit 1; }
	touch $@

# `uv sync --locked` refuses a uv.lock that no longer matches pyproject.toml, and repairs a
# .venv left half-built by an interrupted install, so it runs every time (no stamp to trust).
install: $(UV_STAMP)
	@$(UV) sync --locked --python $(PYTHON) $(EXTRAS) \
	  || { echo "make: installing the locked dependencies into $(VENV) failed (see above). If uv.lock is stale, run 'make lock'; otherwise run 'make clean-venv' and rerun." >&2; exit 1; }

# Refresh uv.lock after editing pyproject.toml's dependencies (keeps other pins as they are;
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest allowed release).
lock: $(UV_STAMP)
	$(UV) lock $(LOCK_ARGS)

# Main job on the `tiny` preset: 256 synthetic samples, then a summary and a contact sheet.
# Tiny images are NOT faces: random-weight networks exercising the real code paths.
demo: install
	$(BIN)/mm2latent synth-data --preset tiny --n 256 --out data/tiny
	$(BIN)/mm2latent dataset inspect data/tiny
	$(BIN)/mm2latent dataset grid data/tiny --out data/tiny-grid.png

# Test files run in parallel, one file per worker at a time (a file's module fixtures are built
# once, and the README test's blocks run in order): most tests wait on CLI subprocesses, so
# even 2 cores finish in about half the time. TEST_ARGS adds pytest options (TEST_ARGS=-n0: serial).
TEST_WORKERS ?= auto
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --durations=15 $(TEST_ARGS)

clean-demo:
	rm -rf data/tiny data/tiny-grid.png

clean-venv:
	rm -rf $(VENV) $(TOOLS)
