# ephys2tx — the commands of the README. Everything runs in .venv, which these targets create.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= reports_out
N_WORKERS ?= 2

.PHONY: venv test export check-export nbtest pytest reproduce docs bench clean

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools
	# torch pinned to the CPU build that lies on this machine's disk (a bare `torch` pulls CUDA)
	$(BIN)/python -m pip install -q "torch==2.13.0" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

## export the package from the notebooks and fail if the committed package differs
check-export: venv
	rm -rf /tmp/ephys2tx-export-check && cp -r ephys2tx /tmp/ephys2tx-export-check
	$(BIN)/nbdev_export
	@if ! diff -r -q -x __pycache__ /tmp/ephys2tx-export-check ephys2tx; then \
	  echo "ephys2tx/ differs from what the notebooks export: run nbdev_export and commit ephys2tx/"; exit 1; fi

nbtest: venv
	$(BIN)/nbdev_test --n_workers $(N_WORKERS) --do_print --timing

pytest: venv
	$(BIN)/python -m pytest tests/ -q -p no:cacheprovider

test: check-export nbtest pytest

export: venv
	$(BIN)/nbdev_export

reproduce: venv
	$(BIN)/ephys2tx reproduce --out $(OUT)

docs: venv
	$(BIN)/nbdev_docs

bench: venv
	$(BIN)/python bench/run_bench.py

clean:
	rm -rf _docs _proc build dist *.egg-info
