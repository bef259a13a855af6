# ephys2tx — the commands of the README. Everything runs in .venv, which these targets create.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= reports_out
N_WORKERS ?= 2

.PHONY: venv test export check-export nbtest nbdev-test pytest reproduce docs docs-test lab bench clean

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools
	# torch pinned to the CPU build that lies on this machine's disk (a bare `torch` pulls CUDA)
	$(BIN)/python -m pip install -q "torch==2.13.0" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[dev,nwb,docs]"
	touch $(STAMP)

venv: $(STAMP)

## export the package from the notebooks and fail if the committed package differs
check-export: venv
	rm -rf /tmp/ephys2tx-export-check && cp -r ephys2tx /tmp/ephys2tx-export-check
	$(BIN)/nbdev_export
	@if ! diff -r -q -x __pycache__ /tmp/ephys2tx-export-check ephys2tx; then \
	  echo "ephys2tx/ differs from what the notebooks export: run nbdev_export and commit ephys2tx/"; exit 1; fi

## the notebooks' tests: every cell run as nbdev_test runs it (slow/gpu/network skipped), each notebook in a
## fresh process; the executed pages are kept (.cache/docs) so `make docs` does not run them again
nbtest: venv
	$(BIN)/ephys2tx docs --execute-only --out $(OUT) --n-workers $(N_WORKERS)

## the same cells through nbdev's own runner
nbdev-test: venv
	$(BIN)/nbdev_test --n_workers $(N_WORKERS) --do_print --timing

## pytest on both cores: a test file runs whole on one worker (--dist loadfile), so its fixtures are built once
pytest: venv
	$(BIN)/python -m pytest tests/ -q -p no:cacheprovider --ignore=tests/site -n 2 --dist loadfile

test: check-export nbtest pytest

export: venv
	$(BIN)/nbdev_export

## the experiments (cached stages), the HTML reports and $(OUT)/index.html; QUICK=1 for the fast CI-like run
reproduce: venv
	$(BIN)/ephys2tx reproduce --out $(OUT) --n-workers $(N_WORKERS) $(if $(QUICK),--quick,)

## the docs site into _docs/ (Sphinx + myst-nb, offline): the notebooks executed as nbdev_test runs them,
## nbdev's processing, a local MathJax (npm's mathjax@3), the headline and reports of the run in $(OUT)
docs: venv
	$(BIN)/ephys2tx docs --dest _docs --out $(OUT) --n-workers $(N_WORKERS)

## the built site in headless Chromium (images, links, anchors, search, maths, a report): after `make docs`
docs-test: venv
	$(BIN)/python -m pytest tests/site -q -p no:cacheprovider

## JupyterLab on the notebooks
lab: venv
	$(BIN)/jupyter lab --notebook-dir=nbs

## speed and memory benchmarks (scripts, not tests): JSON into bench/results/
bench: venv
	$(BIN)/python bench/bench_bilstm.py --device auto
	$(BIN)/python bench/bench_extract.py --n-files 8 --n-workers $(N_WORKERS)
	$(BIN)/python bench/bench_predict.py

clean:
	rm -rf _docs _proc .cache/docs build dist *.egg-info
