# Quick start: `make demo` and `make test`. Each sets up .venv/ on a fresh machine (Python 3.11 + Java 17)
# and is fast when it is already in place.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-models test chromium lint bench clean

# torch==2.13.0 first: it is the CPU build on this platform's disk; a bare `torch` would fetch a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medcurate sample-corpus demo-data/corpus
	$(BIN)/medcurate run pipelines/demo.yaml --lake demo-data/lake
	$(BIN)/medcurate releases --lake demo-data/lake

# The demo with every model stage running on tiny random-weight models written here (their text is noise).
demo-models: $(STAMP)
	$(BIN)/medcurate sample-corpus demo-data/corpus
	$(BIN)/medcurate tiny-model demo-data/models/tiny-vlm
	$(BIN)/medcurate tiny-model demo-data/models/tiny-clip --kind clip
	OMP_NUM_THREADS=1 $(BIN)/medcurate run pipelines/demo.yaml --lake demo-data/lake-models \
	    --model caption=demo-data/models/tiny-vlm --model judge=demo-data/models/tiny-vlm \
	    --model embed=demo-data/models/tiny-clip --set stages.semantic_dedup.threshold=0.9999 \
	    --set stages.decontaminate.semantic_threshold=0.9999

# tests/test_viewer.py drives Debian's chromium with Playwright (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null || { \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra

bench: $(STAMP)
	$(BIN)/python bench/normalize_shard.py
	$(BIN)/python bench/pmc_ingest.py
	$(BIN)/python bench/dicom_ingest.py
	$(BIN)/python bench/viewer.py
	$(BIN)/python bench/caption_gpu.py

clean:
	rm -rf demo-data .pytest_cache
