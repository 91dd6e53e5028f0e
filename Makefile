# Every command the README names. Nothing else hides set-up: `make demo` and `make test` work
# on a fresh machine with only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9

.PHONY: demo lab test test-fast protos check-protos bench lint clean

# Create the virtualenv with the locked dependencies (uv comes from PyPI into the venv itself).
$(VENV)/.synced: pyproject.toml uv.lock Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null; \
	                   $(PY) -m pip install -q "uv==$(UV_VERSION)"; }
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync -q --frozen --extra dev --extra dspy --extra parquet --python $(PY)
	touch $@

## demo: set up, then run notebooks/quickstart.ipynb on the embedded server (prints every output)
demo: $(VENV)/.synced
	$(PY) scripts/run_notebook.py notebooks/quickstart.ipynb

## lab: open the notebooks in JupyterLab (needs `pip install jupyterlab` into .venv)
lab: $(VENV)/.synced
	$(VENV)/bin/jupyter lab notebooks/

## test: set up, check generated protobuf code, lint and type-check, run the whole test suite
test: $(VENV)/.synced check-protos lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(VENV)/.synced
	$(PY) -m pytest -q -x -p no:cacheprovider

## protos: regenerate dspex_notebook/_proto from protos/
protos: $(VENV)/.synced
	$(PY) scripts/gen_protos.py

check-protos: $(VENV)/.synced
	$(PY) scripts/gen_protos.py --check

## bench: run the benchmarks (tables go to docs/performance.md by hand)
bench: $(VENV)/.synced
	$(PY) benchmarks/foundation.py
	$(PY) benchmarks/watch.py
	$(PY) benchmarks/optimizers.py
	$(PY) benchmarks/optimization_runs.py
	$(PY) benchmarks/widgets.py
	$(PY) benchmarks/scaleout.py

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check dspex_notebook tests benchmarks scripts
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
