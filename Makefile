# Two entry points that do all set-up on a fresh machine:
#   make demo   — install into .venv and run geoseg on the bundled Kampala sample scene
#   make test   — install into .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= outputs/kampala_west
SCENE ?= data/samples/kampala_oam_west.tif
export HF_HUB_OFFLINE := 1
# glibc malloc settings for test processes, which run models themselves (geoseg sets them in its workers).
TUNED_MALLOC := MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_ARENA_MAX=1

.PHONY: install demo test test-fast lint bench clean peers-venv

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/geoseg run $(SCENE) --out $(OUT) --overwrite
	$(BIN)/python -c "import json,sys; d=json.load(open('$(OUT)/run.json')); print(json.dumps(d['properties']['geoseg:timing'], indent=1))"

CODE := geoseg tiles tests benchmarks

test: lint
	$(TUNED_MALLOC) $(BIN)/pytest -q --durations=15

test-fast: $(STAMP)
	$(TUNED_MALLOC) $(BIN)/pytest -q -m "not slow"

# The full benchmark of benchmarks/RESULTS.md (peers need the separate venv below; ~15 min, quiet machine).
bench: $(STAMP) peers-venv
	$(BIN)/python -m benchmarks.run --sizes 2048,8192 --peers 4096 --batch 8 --tile 512 --overlap 64 \
		--results benchmarks/RESULTS.md

# Separate venv for the peer scripts in benchmarks/peers: torchgeo and geoai-py (large dependency trees)
# never touch .venv. Same base Python as .venv and the same torch pins (constraints.txt).
PEERS_VENV := .venv-peers
PEERS_PKGS ?= torchgeo==0.8.1 geoai-py==0.40.1
$(PEERS_VENV)/.installed: $(STAMP) pyproject.toml constraints.txt
	"$$($(BIN)/python -c 'import sys; print(sys.base_prefix + "/bin/python%d.%d" % sys.version_info[:2])')" \
		-m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet -c constraints.txt -e . $(PEERS_PKGS)
	touch $@

peers-venv: $(PEERS_VENV)/.installed

# ruff (lint + format) and mypy (pydantic plugin; settings in pyproject.toml) on the code, before any test
lint: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) outputs .pytest_cache
