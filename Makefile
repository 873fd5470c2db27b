# cvaudit: `make demo` runs the embedded demo audit, `make test` runs the tests (`make test-slow` the slow ones).
# Both create (or reuse) the virtual environment .venv and install what they need.
#
# torch: on a machine without a GPU we install the CPU wheel torch==2.13.0 first, so
# that no requirement pulls the multi-GB CUDA build. A GPU user installs the CUDA build
# of their choice instead, e.g.
#   make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" demo
# (or installs torch into .venv first: an importable torch is kept as it is).
#
# Every later install runs with a constraint file pinning the installed torch (torch==2.13.0
# after a CPU install), so no dependency can replace it (e.g. with a CUDA build).
# `make test` also installs the optional extras the tests exercise, hf (transformers) and
# mlflow, and docs (MkDocs), and builds the documentation site with `mkdocs build --strict`
# into $(SITE) before the tests run (`make docs` builds it alone).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.cvaudit-installed
EXTRAS_STAMP := $(VENV)/.cvaudit-extras-installed
CONSTRAINTS  := $(VENV)/torch-constraint.txt
TORCHATTACKS_SIDE := $(VENV)/side/torchattacks-3.5.1
TORCHATTACKS := $(TORCHATTACKS_SIDE)/torchattacks/__init__.py
PYTEST_ARGS ?=
SITE         := build/site

.PHONY: demo demo-detection test test-slow test-all test-fast lint docs install bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH)
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(CONSTRAINTS)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

$(EXTRAS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,hf,mlflow,docs]'
	touch $(EXTRAS_STAMP)

# torchattacks, the reference the attack tests and benchmarks/bench_autoattack.py compare against: in a
# side folder, without its dependencies (it needs only torch, numpy and scipy, which the venv has). Its
# declared requirements (torchvision, requests~=2.25) would replace cvaudit's pinned torch and requests,
# so it is never installed into the venv; tests put $(TORCHATTACKS_SIDE) on sys.path (tests/reference_tools.py).
# A target of its own (built when missing), so that a deleted side folder is installed again.
$(TORCHATTACKS): | $(STAMP)
	rm -rf $(TORCHATTACKS_SIDE)
	$(PY) -m pip install --quiet --no-deps --target $(TORCHATTACKS_SIDE) torchattacks==3.5.1
	test -f $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cvaudit demo --out cvaudit-demo

demo-detection: $(STAMP)
	$(VENV)/bin/cvaudit demo --task detection --out cvaudit-demo-detection

# `make test` is the suite without the tests marked slow (the end-to-end runs, simulations, browsers and
# torchrun: about half the time); `make test-slow` runs those; CI (.ci/run) runs both, `make test-all` too.
test: lint $(EXTRAS_STAMP) $(TORCHATTACKS) docs
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: $(EXTRAS_STAMP) $(TORCHATTACKS)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

test-all: test test-slow

# The suite without the slow tests and without building the documentation site.
test-fast: lint $(EXTRAS_STAMP) $(TORCHATTACKS)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Property-based fuzzing of every reader of users' files (tests/audit/contract/test_fuzz_*.py) with
# many more examples than `make test` runs (CVAUDIT_FUZZ=ci); CVAUDIT_FUZZ=smoke for a quick pass.
FUZZ ?= long
fuzz: $(STAMP)
	CVAUDIT_FUZZ=$(FUZZ) $(PY) -m pytest -q tests/audit/contract/test_fuzz_*.py $(PYTEST_ARGS)

# Formatting, lint, the import layers (pyproject.toml [tool.importlinter]) and the
# results.json schema generated from the models (python -m audit.contract.schema).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m audit.contract.schema --check

# The documentation site, offline: broken links, anchors and API references fail the build.
docs: $(EXTRAS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(SITE)

bench: $(STAMP)
	$(PY) benchmarks/bench_import.py
	$(PY) benchmarks/bench_stressors.py
	$(PY) benchmarks/bench_attacks.py
	$(PY) benchmarks/bench_overhead.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_report.py

clean:
	rm -rf cvaudit-demo build *.egg-info
