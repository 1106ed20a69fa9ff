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

# Two workers: the clean reproduction (tests/test_reproduce.py, about 10 minutes, collected first so
# it starts at once) runs beside the rest of the suite; --dist loadfile keeps each file on one worker.
test: install
	python -m pytest -n 2 --dist loadfile

readme: install
	python -m stages.checks.reported --write-readme
