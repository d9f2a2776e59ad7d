# make test: creates .venv from scratch when missing, installs everything, lints, runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STUBS_ENV := $(VENV)/bpy-stubs-env
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck install clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	# fake-bpy-module would shadow the real bpy module, so its stubs live in an environment of their
	# own; mypy reads them from there (--python-executable) for the type check of addon/.
	test -x $(STUBS_ENV)/bin/python || $(PYTHON) -m venv $(STUBS_ENV)
	$(STUBS_ENV)/bin/python -m pip install --quiet "fake-bpy-module-5-0==20260730"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(MAKE) --no-print-directory typecheck

typecheck: $(STAMP)
	$(PY) -m mypy --python-executable $(STUBS_ENV)/bin/python addon

# pytest exits 5 when it collects nothing (e.g. every test deselected): say so instead of failing.
test: lint
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected"; exit 0; fi; exit $$rc

clean-venv:
	rm -rf $(VENV)
