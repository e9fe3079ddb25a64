# Chaser Jobs — developer and CI entry points.
#
#   make venv      create .venv and install the project editable with dev extras
#   make run       run the whole engine locally (embedded nats-server unless CHASER_NATS_URL is set)
#   make services  install/start what the tests need (Docker, Chromium, test image)
#   make lint      ruff check, ruff format --check, mypy
#   make test      venv + services + lint, then pytest
#   make bench     run every benchmark script in bench/ (each prints JSON)
#
# Variables: PYTHON (interpreter used to create .venv, default python3),
# PYTEST_ARGS (extra pytest arguments), SERVE_ARGS (extra `chaser serve` arguments).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

PYTEST_ARGS ?=
SERVE_ARGS  ?=

.PHONY: help venv run services lint test bench

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

# ---------------------------------------------------------------- venv --
# The stamp makes `make venv` a no-op until pyproject.toml changes.
# A Debian system Python without ensurepip (package python3-venv) leaves a
# .venv with no pip: remove it, install python3-venv when root with apt-get,
# and try once more.
venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/pip ]; then \
	  rm -rf $(VENV); \
	  if ! $(PYTHON) -m venv $(VENV); then \
	    rm -rf $(VENV); \
	    if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
	      echo "make venv: installing python3-venv"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -qq --no-install-recommends python3-venv >/dev/null \
	        && $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }; \
	    else \
	      echo "make venv: '$(PYTHON) -m venv' failed; install python3-venv (needs root)" >&2; \
	      exit 1; \
	    fi; \
	  fi; \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# ----------------------------------------------------------------- run --
run: venv
	$(BIN)/chaser serve $(SERVE_ARGS)

# ------------------------------------------------------------ services --
services:
	@bash scripts/test-services.sh

# ---------------------------------------------------------- lint, test --
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# pytest exits 5 when it collected no test: make fails on it like on any
# other non-zero status (nothing here pipes or masks pytest's exit code).
test: venv services lint
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# --------------------------------------------------------------- bench --
# Every bench/*.py (except _helpers.py style modules) runs with the venv's
# Python, every other executable file in bench/ runs as is. Stops at the
# first failure.
bench: venv
	@shopt -s nullglob; ran=0; \
	for f in bench/*; do \
	  name=$$(basename "$$f"); \
	  case "$$name" in _*|.*) continue ;; esac; \
	  if [[ $$f == *.py ]]; then cmd=($(BIN)/python "$$f"); \
	  elif [[ -f $$f && -x $$f ]]; then cmd=("./$$f"); \
	  else continue; fi; \
	  echo "# $$f" >&2; \
	  PATH="$(CURDIR)/$(BIN):$$PATH" "$${cmd[@]}" || { echo "make bench: $$f failed" >&2; exit 1; }; \
	  ran=$$((ran + 1)); \
	done; \
	if [[ $$ran -eq 0 ]]; then echo "make bench: no benchmark scripts in bench/" >&2; fi
