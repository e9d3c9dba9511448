# Two entry points a new user needs: `make demo` (the main job on the tiny preset) and
# `make test` (the test suite). Both create and fill .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,app]'
	touch $(STAMP)

install: $(STAMP)

# Main job on the `tiny` preset: 256 synthetic samples, then a summary and a contact sheet.
# Tiny images are NOT faces: random-weight networks exercising the real code paths.
demo: $(STAMP)
	$(BIN)/mm2latent synth-data --preset tiny --n 256 --out data/tiny
	$(BIN)/mm2latent dataset inspect data/tiny
	$(BIN)/mm2latent dataset grid data/tiny --out data/tiny-grid.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf data/tiny data/tiny-grid.png
