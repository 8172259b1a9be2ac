# The two commands of the README, and what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench setup binaries clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

binaries: setup
	./scripts/build-control-plane.sh

## demo: the whole thing end to end on a local control plane, then tear down
demo: binaries
	$(PY) -m devenv.demo

## test: the test suite, against a real kube-apiserver and etcd
test: binaries
	$(PY) -m pytest $(PYTEST_ARGS)

## bench: the benchmarks in bench/
bench: binaries
	$(PY) -m bench

clean:
	rm -rf $(VENV) .cache
