# The two commands of the README, and what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench setup binaries up poll clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# The dependencies only: everything runs from this folder, so the project
	@# itself needs no install.
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	  print('\n'.join(p['dependencies'] + p['optional-dependencies']['test']))" \
	  > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt
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

## up: a local cluster with FNTC installed, kept running until Ctrl-C
up: binaries
	$(PY) -m devenv up

## poll: one poller run against the cluster `make up` keeps running
poll:
	@test -f .cache/local/pid && kill -0 $$(cat .cache/local/pid) 2>/dev/null || \
	  { echo "no local cluster is running; start one with: make up"; exit 1; }
	@. .cache/local/env && $(PY) -m poller

## bench: the benchmarks in bench/
bench: binaries
	$(PY) -m bench

clean:
	rm -rf $(VENV) .cache
