# slidepy: the two commands a new user needs are `make quickstart` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-test quickstart test test-all bench bench-quick bench-ray scaling clean

# Without build isolation pip skips making a fresh build environment (about 3 s of the quick
# start); where the installed setuptools cannot build the package, the isolated build runs. Where
# every runtime dependency is already installed at an allowed version (scripts/deps_satisfied.py),
# pip installs slidepy alone and skips resolving them (about 1 s more).
install:
	@if $(PYTHON) scripts/deps_satisfied.py; then NODEPS=--no-deps; else NODEPS=; fi; \
	echo "$(PIP) install -q $$NODEPS -e ."; \
	$(PIP) install -q $$NODEPS --no-build-isolation -e . 2>/dev/null || $(PIP) install -q $$NODEPS -e .

install-test:
	$(PIP) install -q -e ".[test]"

# Install, then train on built-in synthetic data (no download) and print P@1/P@3/P@5.
quickstart: install
	$(PYTHON) -m slidepy train --config configs/quickstart.yaml --overwrite

# Install with the test extra and run the suite (a few minutes on 2 cores; long end-to-end runs
# are marked slow and left to test-all).
test: install-test
	$(PYTHON) -m pytest -q -m "not slow"

test-all: install-test
	$(PYTHON) -m pytest -q

# Benchmarks: slidepy (the shipped configs) beside dense PyTorch, Omikuji and PECOS, on the
# synthetic 670K shape and every dataset in ../shared/data; writes bench/results.md (the targets
# table), bench/results.json and bench/curve-<dataset>.png. The bench extra brings Omikuji, PECOS
# and matplotlib, and the PyTorch baseline's torch 2.13.0 (PyPI's wheel carries CUDA; for the CPU one first
# `pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu`).
# BENCH_ARGS caps each neural run's training seconds, e.g. make bench BENCH_ARGS="--datasets debian-deps --threads 2".
BENCH_ARGS ?= --max-seconds 1200
bench: install
	$(PIP) install -q -e ".[bench]" || true
	$(PYTHON) scripts/bench.py --out bench $(BENCH_ARGS)
	$(MAKE) bench-ray

# A few minutes: the 670K shape for 8 steps, Bibtex and the first 4,000 DebianDeps samples for one
# epoch each, every system that imports (trees included).
bench-quick: install
	$(PYTHON) scripts/bench.py --out bench --quick $(BENCH_QUICK_ARGS)

# Data-parallel on Ray (README "Training on several processes"): the quick start as one process x 2
# threads, 1 Ray worker x 2 threads and 2 Ray workers x 1 thread; compare P@1 and samples/s.
bench-ray: install
	$(PIP) install -q -e ".[ray]"
	$(PYTHON) -m slidepy train --config configs/quickstart.yaml --out runs/bench-ray/single --threads 2 --overwrite --no-progress
	$(PYTHON) -m slidepy train --config configs/quickstart.yaml --out runs/bench-ray/w1t2 --workers 1 --threads 2 --overwrite --no-progress
	$(PYTHON) -m slidepy train --config configs/quickstart.yaml --out runs/bench-ray/w2t1 --workers 2 --threads 1 --overwrite --no-progress

# Thread scaling (issue 10) on a many-core machine: slidepy and dense PyTorch at 1-16 threads,
# interleaved, on the 670K shape and DebianNextWord; about 5 minutes on 16 cores.
SCALING_ARGS ?= --threads 1,2,4,8,16 --repeats 2 --segment-seconds 5
scaling: install
	$(PIP) install -q -e ".[bench]" || true
	$(PYTHON) scripts/bench.py --out bench/scaling --datasets amazon670k,debian-nextword --systems lsh,torch \
		--no-accuracy $(SCALING_ARGS)

# The bench's outputs go; its committed records (bench/measured-*) stay.
clean:
	rm -rf runs .pytest_cache build *.egg-info
	rm -rf bench/results.md bench/results.json bench/bench.log bench/curve-*.png bench/cache bench/scaling
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
