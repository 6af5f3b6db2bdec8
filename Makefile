# One entry point for developers and CI. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
PY := $(VENV)/bin/python

.PHONY: help install test chaos container-test check lint format typecheck demo bench clean compose-check

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet 'uv==0.13.9'

# --compile-bytecode, as the image does (UV_COMPILE_BYTECODE=1): where PYTHONDONTWRITEBYTECODE is
# set, a service would otherwise compile every import at each start, ~15 MB more resident memory.
$(VENV)/.installed: uv.lock pyproject.toml $(wildcard packages/*/pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --frozen --all-packages --compile-bytecode
	@touch $@

install: $(VENV)/.installed ## Create .venv/ with the services, gatewayctl and the dev tools (from uv.lock)

test: install ## Run every test (unit, integration against Redis+Mosquitto on loopback, system)
	$(PY) -m pytest

# The fault scenarios at full scale (the soak alone takes 1,000,000 frames), with a fixed seed
# unless GATEWAY_CHAOS_SEED names another (or "random"); `make test` runs their short versions.
chaos: install ## Every fault scenario at full scale, seeded (GATEWAY_CHAOS_SEED), incl. the soak
	GATEWAY_CHAOS_SCALE=full GATEWAY_CHAOS_SEED=$${GATEWAY_CHAOS_SEED:-20261127} \
		$(PY) -m pytest -m chaos -p no:cacheprovider -s -o timeout=3600 tests

container-test: install ## The images built and run under a real Docker engine (starts one as root on Debian)
	tests/containers/run.sh

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install ## mypy --strict
	$(VENV)/bin/mypy

check: lint typecheck test ## Lint, types and tests: what CI runs

demo: install ## The whole gateway on a simulated modem, readings shown live (Ctrl-C stops it)
	$(VENV)/bin/gateway-demo

bench: install ## Benchmarks: print what they measure on this machine
	$(VENV)/bin/gateway-bench
	$(PY) -m gateway_devkit.bench.console

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
