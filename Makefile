# seriesforge: two commands do all set-up.
#   make demo   create .venv, then train T2S on a small stand-in corpus and generate (embedded local Ray)
#   make test   create .venv, then run the test suite (what CI runs, through .ci/run)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SF     := $(VENV)/bin/seriesforge
STAMP  := $(VENV)/.seriesforge-installed
DEMO   ?= demo_out

.PHONY: env demo test test-fast bench clean

env: $(STAMP)

# torch first: without CUDA the CPU wheel (2.13.0), so the package's loose torch range pulls no CUDA wheels.
$(STAMP): pyproject.toml scripts/install_torch.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	sh scripts/install_torch.sh $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: env
	rm -rf $(DEMO)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sh scripts/demo.sh $(DEMO)

test: env
	$(PY) -m pytest tests -q

test-fast: env
	$(PY) -m pytest tests -q -m "not slow"

bench: env
	$(PY) benchmarks/train_overhead.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/embed.py --limit 20000
	$(PY) benchmarks/serve_load.py
	$(PY) benchmarks/cluster_failover.py

clean:
	rm -rf $(DEMO) .pytest_cache
