# Two commands do all the set-up on a fresh machine:
#   make repro   create .venv, install the project, run the whole DVC pipeline (dvc repro)
#   make test    create .venv, install the project and test tools, run the test suite
# After a dvc repro that changed metrics: make readme   (regenerates the README's results section)
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0

.PHONY: install repro test readme

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

repro: install
	dvc repro

test: install
	python -m pytest

readme: install
	python -m stages.checks.reported --write-readme
