# fanout: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime is python3.12; the tools run on the same interpreter.
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))
VENV := .venv
PY := $(VENV)/bin/python
MINISTACK_VENV := .local/ministack-venv
CHECKOV_VENV := .local/checkov-venv
# sam build finds python3.12 on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(dir $(PYTHON312)):$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: bench help install up down status demo test test-unit test-integration test-e2e lint validate scan schema build clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (pyenv or PATH)"; exit 1; }
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

$(MINISTACK_VENV)/.installed: local/requirements-ministack.txt
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (pyenv or PATH)"; exit 1; }
	$(PYTHON312) -m venv $(MINISTACK_VENV)
	$(MINISTACK_VENV)/bin/pip install --quiet --disable-pip-version-check -r local/requirements-ministack.txt
	@touch $@

$(CHECKOV_VENV)/.installed: tools/checkov-requirements.txt
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (pyenv or PATH)"; exit 1; }
	$(PYTHON312) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/checkov-requirements.txt
	@touch $@

install: $(VENV)/.installed $(MINISTACK_VENV)/.installed $(CHECKOV_VENV)/.installed ## create the virtualenvs (pinned tools and dependencies)

up: install ## start the local stack in the background, deploy the app, write .local/stack.env
	$(PY) local/stack.py up

down: ## stop the local stack
	@if [ -x $(PY) ]; then $(PY) local/stack.py down; fi

status: install ## show what of the local stack is running
	$(PY) local/stack.py status

demo: up ## the main job: change rows in MySQL, watch them reach OpenSearch and DynamoDB
	$(PY) local/demo.py

test: install ## run every test (unit, integration, e2e); starts what they need
	$(PY) -m pytest tests

test-unit: install ## unit tests only (no network)
	$(PY) -m pytest tests/unit

test-integration: install ## tests against MySQL 8.0 and the local AWS/OpenSearch servers
	$(PY) -m pytest tests/integration

test-e2e: install ## row changes through the deployed app on the local stack
	$(PY) -m pytest tests/e2e

schema: install ## write layers/common/fanout/tables.schema.json from fanout/model/mapping_schema.py (a unit test checks it)
	$(PY) -m fanout.model.mapping_schema

build: install ## sam build
	sam build

# W1020 is ignored on the transformed template: SAM itself wraps an already resolved LayerName in Fn::Sub.
validate: install ## sam validate --lint, and cfn-lint on the SAM-transformed template
	AWS_DEFAULT_REGION=us-east-1 sam validate --lint
	@mkdir -p .local
	$(PY) tools/sam_transform.py > .local/transformed-template.json
	cfn-lint --format parseable --ignore-checks W1020 -- .local/transformed-template.json

# Policy scanner on the template as written and as CloudFormation gets it (the roles, permissions and invoke
# configs SAM generates). Every finding is fixed or skipped with a reason: once in tools/checkov.yaml when it is
# accepted on every resource of its kind, else on its resource in the template (docs/security.md).
scan: install validate ## checkov on template.yaml and the SAM-transformed template; fails on any unjustified finding
	$(CHECKOV_VENV)/bin/checkov --config-file tools/checkov.yaml --framework cloudformation --skip-download --compact --quiet \
		-f template.yaml -f .local/transformed-template.json

lint: install validate scan ## ruff, mypy (layer), sqlfluff (migrations), template checks and policy scan
	ruff check .
	ruff format --check .
	mypy
	sqlfluff lint db/migrations

clean: down ## remove build output and local state
	rm -rf .aws-sam .local

bench: install ## benchmarks (ratios, side by side in one run) -> bench/results/
	$(PY) -m bench.bench_fetcher
	$(PY) -m bench.bench_fetcher_against
	$(PY) -m bench.cost_model
	$(PY) -m bench.bench_fetch_path
	$(PY) -m bench.bench_capture_triggers
	$(PY) -m bench.bench_backfill_reconcile
	$(PY) -m bench.bench_dynamodb_batches
	$(PY) -m bench.bench_end_to_end
	$(PY) -m bench.bench_steady
	$(PY) -m bench.bench_composed
	$(PY) -m bench.bench_events
	$(PY) -m bench.bench_fetcher_events
	$(PY) -m bench.bench_cold_import
	$(PY) local/stack.py up
	$(PY) -m bench.bench_capture  # through the deployed local stack: per-row vs change log
