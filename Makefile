# Two commands do all the set-up on a fresh machine:
#   make repro   create .venv, install the locked environment, run the whole DVC pipeline (dvc repro,
#                two stages at a time: stages/parallel.py)
#   make test    create .venv, install the locked environment with the test tools, run the test suite
# After a dvc repro that changed metrics: make readme   (regenerates the README's results section)
# After editing the dependencies in pyproject.toml: make lock   (re-resolves requirements.lock)
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
UV := $(BIN)/uv
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0
# The version of uv that installs and refreshes the lock (itself locked, with hashes, in
# requirements-bootstrap.lock).
UV_VERSION := 0.13.9

.PHONY: install repro test check-reproduction test-fast readme lock plots-template

# uv itself, from its own hashed lock: pip installs one wheel, uv installs the rest (much faster).
$(UV): requirements-bootstrap.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-bootstrap.lock
	touch $@

# Every package at the version and hash of requirements.lock, then the project itself (no deps).
$(VENV)/.installed: $(UV) requirements.lock pyproject.toml
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes --compile-bytecode -r requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# DVC's HTML template for `dvc plots show/diff` with Vega bundled (no CDN, so plots draw offline):
# generated from the installed vl-convert-python, not tracked (.dvc/config points at it).
PLOTS_TEMPLATE := .dvc/plots/offline.html
$(PLOTS_TEMPLATE): $(VENV)/.installed stages/reporting/vega.py
	python -m stages.reporting.vega --dvc-template $@

plots-template: $(PLOTS_TEMPLATE)

install: $(VENV)/.installed $(PLOTS_TEMPLATE)

# dvc repro, two stages at a time: each TensorFlow stage uses one core (stages/parallel.py).
repro: install
	python -m stages.parallel

# Every test but the clean reproduction, on two workers; --dist loadfile keeps each file (and its
# module fixtures) on one worker. -rs prints every skip reason; --durations the slowest tests.
test: install
	python -m pytest -n 2 --dist loadfile -rs --durations=30 -m "not reproduction"

# The clean reproduction (tests/test_reproduce.py): every committed output from a copy with no data,
# no models and no cache, about 10 minutes; one worker, since the reproduction itself runs two
# stages at a time. CI (.ci/run) runs it after make test.
check-reproduction: install
	python -m pytest -rs --durations=10 -m reproduction

# The fast tier (under 2 minutes here): every test not marked slow, including a smoke run of the
# pretrain, finetune and evaluate stages on a tiny made-up cohort. CI runs the full `make test`
# and `make check-reproduction`.
# --dist load (test by test) balances the two workers better than whole files here.
test-fast: install
	python -m pytest -n 2 --dist load -rs -m "not slow"

readme: install
	python -m stages.checks.reported --write-readme

# Re-resolve the environment from pyproject.toml (needs the package index): every platform and
# Python the project supports, exact versions and sha256 hashes; tests/test_lock.py fails when
# the two disagree.
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra test --universal --fork-strategy fewest --generate-hashes \
		--quiet --custom-compile-command "make lock" -o requirements.lock
	echo "uv==$(UV_VERSION)" | $(UV) pip compile - --universal --generate-hashes --quiet \
		--custom-compile-command "make lock" -o requirements-bootstrap.lock
