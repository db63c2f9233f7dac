# slidepy: the two commands a new user needs are `make quickstart` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-test quickstart test test-fast bench bench-quick clean

install:
	$(PIP) install -q -e .

install-test:
	$(PIP) install -q -e ".[test]"

# Install, then train on built-in synthetic data (no download) and print P@1/P@3/P@5.
quickstart: install
	slidepy train --config configs/quickstart.yaml --overwrite

# Install with the test extra and run the whole suite.
test: install-test
	$(PYTHON) -m pytest -q

test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow"

# Benchmarks: slidepy (the shipped configs) beside dense PyTorch, Omikuji and PECOS, on the
# synthetic 670K shape and every dataset in ../shared/data; writes bench/results.md (the targets
# table), bench/results.json and bench/curve-<dataset>.png. The bench extra brings Omikuji, PECOS
# and matplotlib; the PyTorch baseline wants `pip install torch==2.13.0` (the torch extra).
# BENCH_ARGS caps each neural run's training seconds, e.g. make bench BENCH_ARGS="--datasets debian-deps --threads 2".
BENCH_ARGS ?= --max-seconds 1200
bench: install
	$(PIP) install -q -e ".[bench]" || true
	$(PYTHON) scripts/bench.py --out bench $(BENCH_ARGS)

# A few minutes: the 670K shape for 8 steps, Bibtex and the first 4,000 DebianDeps samples for one
# epoch each, every system that imports (trees included).
bench-quick: install
	$(PYTHON) scripts/bench.py --out bench --quick $(BENCH_QUICK_ARGS)

clean:
	rm -rf runs bench .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
