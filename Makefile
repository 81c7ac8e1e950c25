# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-fast bench study example-model clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# DATASET=fashion_mnist: the same job on a local copy of Fashion-MNIST (see README.md, Data).
demo: $(STAMP)
	$(PY) scripts/demo.py $(if $(DATASET),--dataset $(DATASET))

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# The Fashion-MNIST studies, at equal params and at equal MACs (hours on 2 cores; resumable;
# needs the data, see benchmarks/study.py).
study: $(STAMP)
	$(PY) benchmarks/study.py

# Regenerate the committed example model saved_models/digits/1 (a few seconds on CPU).
example-model: $(STAMP)
	$(PY) scripts/make_example_model.py

clean:
	rm -rf runs .pytest_cache build *.egg-info
