# Emotion AI Pipeline. `make run` and `make test` do all set-up from nothing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
UV        := $(VENV)/bin/uv
UV_VERSION := 0.13.8
# Empty: `emotion-ai run` picks `sample` for the embedded sample data, `full` for any other.
PROFILE   ?=
PYTEST_ARGS ?=
# `make lock` resolves for manylinux_2_39: ml-metadata / tensorflow-data-validation 1.21 exist
# only as such wheels. tools/install_pinned.sh installs those two for that tag, everything else
# for the host, and tools/glibc_compat.py patches the two where glibc is older.
PLATFORM  := $(shell uname -m)-manylinux_2_39

# A Python 3.11: on PATH, else pyenv's, else Debian's. (Debian 13's python3 is 3.13.)
PYTHON311 ?= $(shell for p in python3.11 $$HOME/.pyenv/versions/3.11*/bin/python3.11 /usr/local/bin/python3.11 /usr/bin/python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)

.PHONY: help setup run test lint browser lock clean distclean image image-gpu kubeflow-e2e

help:
	@echo "make run    set up .venv and run the whole pipeline on data/ (sample data generated if empty; PROFILE=full|sample|smoke to choose)"
	@echo "make test   set up .venv and run the test suite"
	@echo "make lint   ruff (configured in pyproject.toml)"
	@echo "make lock   re-resolve constraints.txt from requirements.in"
	@echo "make image  build the Kubeflow image (kubeflow/Dockerfile) in a Docker engine of its own"
	@echo "make kubeflow-e2e  run the compiled Kubeflow spec task by task in fresh containers of that image"

setup: $(VENV)/.installed

$(VENV)/.installed: constraints.txt requirements.in setup.py tools/install_pinned.sh tools/glibc_compat.py tools/glibc_shim.cc
	@if [ -z "$(PYTHON311)" ]; then echo "error: no Python 3.11 found (install python3.11 or set PYTHON311=/path/to/python3.11)" >&2; exit 1; fi
	@start=$$(date +%s); \
	set -e; \
	if [ ! -x $(PY) ]; then echo "creating $(VENV) with $(PYTHON311)"; $(PYTHON311) -m venv $(VENV); fi; \
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); \
	tools/install_pinned.sh $(UV) --python $(PY); \
	$(UV) pip install --python $(PY) --no-deps -e .; \
	$(PY) tools/glibc_compat.py; \
	echo "setup: $$(( $$(date +%s) - start )) s, $(VENV) is $$(du -sh $(VENV) | cut -f1)"
	@touch $@

run: setup
	$(VENV)/bin/emotion-ai run $(if $(PROFILE),--profile $(PROFILE))

test: setup browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# The report test renders the HTML report in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "warning: chromium is missing and cannot be installed here (not root / no apt-get); the report test will fail and say so" >&2; fi; }

# The Kubeflow image: starts its own Docker engine and makes the Debian base image when no
# registry answers (kubeflow/container/). IMAGE_VARIANT=gpu: TensorFlow with CUDA libraries.
IMAGE_VARIANT ?= cpu
image:
	kubeflow/container/build.sh $(IMAGE_VARIANT)

image-gpu:
	kubeflow/container/build.sh gpu

# The compiled spec, every task in a fresh container of the image, as open-source KFP runs it
# (E2E_ARGS=--results benchmarks/results/kubeflow_e2e.md records the figures).
kubeflow-e2e: setup image
	DOCKER_HOST="$$(kubeflow/container/engine.sh host)" $(PY) -m emotion_ai.kubeflow.container_e2e \
	  --image "$$(cat kubeflow/container/.last-image)" --build "$$(cat kubeflow/container/.last-build)" $(E2E_ARGS)

lock:
	$(UV) pip compile requirements.in --python-version 3.11 --python-platform $(PLATFORM) -o constraints.txt

clean:
	rm -rf pipeline_output serving/model_repository .pytest_cache

distclean: clean
	rm -rf $(VENV)
