# The two commands in the README: `make demo` and `make test`. Both install what they need on a fresh
# Debian 12 machine (as root): system packages and npm modules for the local stack, and the Python
# packages into .venv/.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_COHORT := state/demo-cohort
DEMO_PATIENTS ?= 40
PYTEST_ARGS ?=

.PHONY: help install system python demo test lint stack-up stack-down bench clean

help:
	@echo "make demo   - install, start the local stack, load a synthetic cohort, run the service"
	@echo "make test   - install, start the stack, run lint + the whole suite, stop the stack"
	@echo "make bench  - run the benchmarks in bench/ (slow; prints ratios to floors)"

install: system python

system:
	deploy/local/install-system.sh

python: $(STAMP)

# torch first and pinned: it comes from the local CPU wheel; a looser request pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

stack-up: install
	deploy/local/stack.sh up

stack-down:
	deploy/local/stack.sh down

lint: python
	$(VENV)/bin/ruff check risk fusion_models smart_app tests bench
	$(VENV)/bin/mypy

# Runs everything (unit, integration against the real servers, browser tests); the stack is always
# stopped afterwards and the suite's status is returned.
test: install
	deploy/local/stack.sh up
	status=0; \
	$(MAKE) --no-print-directory lint || status=$$?; \
	$(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	deploy/local/stack.sh down; \
	exit $$status

demo: stack-up
	test -f $(DEMO_COHORT)/manifest.json || $(PY) -m risk synth --out $(DEMO_COHORT) --patients $(DEMO_PATIENTS) --seed 7
	$(PY) -m risk load $(DEMO_COHORT) --env-file deploy/local/state/stack.env
	set -a; source deploy/local/state/stack.env; source deploy/local/demo.env; set +a; \
	  $(PY) -m risk.demo.keys --out deploy/local/state/demo-ehr --fhir-server "$$RISK_FHIR__BASE_URL" && \
	  { test -f $(DEMO_COHORT)/.imaging-cached || { $(PY) -m risk imaging \
	      $$(seq -f "--patient-id A%07g" 1 $(DEMO_PATIENTS)) >/dev/null && touch $(DEMO_COHORT)/.imaging-cached; } \
	    || echo "demo: imaging-feature cache not warmed: first chart opens parse SRs from the PACS"; } && \
	  { $(PY) -m risk population score --ndjson $(DEMO_COHORT)/fhir/ndjson --sr-tables $(DEMO_COHORT) --no-progress \
	    || echo "demo: population not scored: the coordinator worklist stays empty"; }
	set -a; source deploy/local/state/stack.env; source deploy/local/demo.env; \
	  source deploy/local/state/demo-ehr/demo-ehr.env; set +a; exec $(PY) -m risk serve

bench: install
	$(PY) -m bench

clean:
	deploy/local/stack.sh down || true
	rm -rf state deploy/local/state
