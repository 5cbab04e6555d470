# stmask_d2 — the two commands:
#   make demo   the main job: install, synthetic data, train, evaluate, demo video   (see README.md)
#   make test   install what is missing and run the whole test suite (CI runs exactly this)
#   make test-fast   the quick loop: the suite without the tests marked slow (pytest -m "not slow")
#   make clean-demo  remove what `make demo` wrote (output/demo, output/main_job, datasets/synthetic_vis)
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: install test test-fast demo clean-demo

install:
	@bash tools/install_env.sh

test: install
	$(PY) -m pytest -q --durations=25 tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

demo: install
	$(PY) tools/main_job.py

clean-demo:
	rm -rf output/demo output/main_job datasets/synthetic_vis
