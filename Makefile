# Two entry points that do all set-up on a fresh machine:
#   make demo   — install into .venv and run geoseg on the bundled Kampala sample scene
#   make test   — install into .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= outputs/kampala_west
SCENE ?= data/samples/kampala_oam_west.tif
# glibc malloc settings for the client process too (workers get them from geoseg itself).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 68719476736
export MALLOC_ARENA_MAX := 1
export HF_HUB_OFFLINE := 1

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/geoseg run $(SCENE) --out $(OUT) --overwrite
	$(BIN)/python -c "import json,sys; d=json.load(open('$(OUT)/run.json')); print(json.dumps(d['properties']['geoseg:timing'], indent=1))"

test: $(STAMP)
	$(BIN)/ruff check geoseg tiles tests benchmarks
	$(BIN)/pytest -q --durations=15

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --sizes 2048,8192,16384 --batch 8 --tile 512 --overlap 64 --results benchmarks/RESULTS.md

lint: $(STAMP)
	$(BIN)/ruff check geoseg tiles tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache
