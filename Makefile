# make test: creates .venv from scratch when missing, installs everything, lints, runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STUBS_ENV := $(VENV)/bpy-stubs-env
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck install clean-venv test-blender-lines

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
	$(MAKE) --no-print-directory test-blender-lines

# The add-on's tests on the other Blender lines that share Python 3.11 (the main environment has bpy
# 5.0.1): one small environment per line holding only that bpy, layered over the main environment's
# packages (a .pth that adds its site-packages), so each costs one cached bpy wheel. The PyPI 4.2
# build has no audio: its sound tests skip.
# Blender 5.1-5.2 run Python 3.13 and numpy 2: their line gets a whole environment of its own (the
# project's dependencies resolve for 3.13 through the markers in pyproject.toml; about 6 GB, as torch
# 2.13 for 3.13 is its CUDA build), made with Python 3.13 from pyenv or the PATH.
BPY_LINES ?= 4.2.23 4.5.15
BPY313_LINES ?= 5.2.3
# (pyenv's own 3.13 first: its python3.13 shim on the PATH exists but refuses when 3.13 is not selected)
PYTHON313 ?= $(shell ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null | tail -1 | grep . || \
               (python3.13 -c "" 2>/dev/null && command -v python3.13))
test-blender-lines: $(STAMP)
	@main_site=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	for v in $(BPY_LINES); do \
	  env=$(VENV)/bpy-$$v; \
	  if [ ! -f $$env/.installed ]; then \
	    rm -rf $$env && $(PYTHON) -m venv $$env || exit 1; \
	    site=$$($$env/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	    echo "import site; site.addsitedir('$$main_site')" > $$site/zz_main_venv.pth; \
	    $$env/bin/python -m pip install --quiet --no-deps "bpy==$$v" || exit 1; \
	    touch $$env/.installed; \
	  fi; \
	  echo "== add-on tests on bpy $$v"; \
	  $$env/bin/python -m pytest -q -p no:cacheprovider tests/addon || exit 1; \
	done
	@if [ -z "$(PYTHON313)" ]; then \
	  echo "== no Python 3.13 (pyenv install 3.13): the add-on is NOT tested on bpy $(BPY313_LINES)"; exit 0; fi; \
	for v in $(BPY313_LINES); do \
	  env=$(VENV)/py313-bpy-$$v; \
	  if [ ! -f $$env/.installed ]; then \
	    rm -rf $$env && $(PYTHON313) -m venv $$env || exit 1; \
	    $$env/bin/python -m pip install --quiet -e . pytest "bpy==$$v" || exit 1; \
	    touch $$env/.installed; \
	  fi; \
	  echo "== add-on tests on bpy $$v (Python 3.13)"; \
	  $$env/bin/python -m pytest -q -p no:cacheprovider tests/addon || exit 1; \
	done

clean-venv:
	rm -rf $(VENV)

# make demo: from a fresh clone, creates .venv and installs (as make test does), then dances to the demo
# song with the default model in assets/ and writes out/demo_song.{npz,bvh,json} (engine, 60 fps) and
# out/demo_song.{mp4,fbx} (the add-on's headless batch renderer, 30 fps, the song in the MP4).
DEMO_SONG := assets/demo_song.ogg
DEMO_OUT := out
ifneq ($(filter demo,$(MAKECMDGOALS)),)
DEMO_T0 := $(shell date +%s%N)
endif

.PHONY: demo
demo: $(STAMP)
	@mkdir -p $(DEMO_OUT)
	@t1=$$(date +%s%N); \
	echo "== generate: $(PY) -m engine generate $(DEMO_SONG) -o $(DEMO_OUT)"; \
	$(PY) -m engine generate $(DEMO_SONG) -o $(DEMO_OUT) --formats npz,bvh,json -q || exit $$?; \
	t2=$$(date +%s%N); \
	echo "== render: $(PY) -m addon.batch $(DEMO_SONG) -o $(DEMO_OUT) --fbx"; \
	$(PY) -m addon.batch $(DEMO_SONG) -o $(DEMO_OUT) --fbx || exit $$?; \
	t3=$$(date +%s%N); \
	stem=$$(basename $(DEMO_SONG) | sed 's/\.[^.]*$$//'); \
	echo; echo "Demo files in $(CURDIR)/$(DEMO_OUT):"; \
	for ext in npz bvh json fbx mp4; do ls -l "$(DEMO_OUT)/$$stem.$$ext" | awk '{printf "  %s (%d KiB)\n", $$NF, $$5/1024}'; done; \
	echo "Timings:"; \
	awk -v a=$(DEMO_T0) -v b=$$t1 -v c=$$t2 -v d=$$t3 'BEGIN { \
	  printf "  set-up (.venv + install; 0 when already installed) %7.1f s\n", (b-a)/1e9; \
	  printf "  generate (features, GPT, decode, rotations, write) %7.1f s\n", (c-b)/1e9; \
	  printf "  render MP4 + FBX (headless Blender, generates again) %5.1f s\n", (d-c)/1e9; \
	  printf "  total                                              %7.1f s\n", (d-a)/1e9 }'
