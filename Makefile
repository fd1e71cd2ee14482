# All set-up happens here: a fresh machine needs only python3 (3.11+) and make.
VENV ?= .venv
PY := $(VENV)/bin/python
SCULPT := $(VENV)/bin/sculpt
EXTRAS ?= lstm,api,dev,aws,gcp

.PHONY: install demo first-run test check lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch's CPU wheel, pinned explicitly (a loose range would pull a multi-GB CUDA build)
	$(PY) -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(SCULPT) demo

first-run: $(VENV)/.installed
	$(PY) scripts/first_run.py

test: $(VENV)/.installed
	# every `>>>` example in the package, first (a few seconds). Not folded into the run below: with
	# --doctest-modules pytest would also import tests/'s helper modules, whose basenames repeat (conftest.py, cli_user.py)
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules sculpt
	# two workers, one test file each at a time (files share real processes and ports within themselves)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check sculpt tests stacks policies
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

check: lint test

clean:
	rm -rf $(VENV) .sculpt build *.egg-info
