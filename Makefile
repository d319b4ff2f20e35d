SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
AGAINST ?= main

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

.PHONY: setup
setup: $(VENV)/.installed ## Create the virtualenv and install pinned dependencies

$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: proto
proto: setup ## Regenerate gen/python and the descriptor set from proto/ (offline)
	$(PY) -m tools.protos generate

.PHONY: descriptors
descriptors: setup ## Build only the descriptor set (build/shop.binpb)
	$(PY) -m tools.protos descriptors

.PHONY: check-generated
check-generated: proto ## Fail if gen/ differs from what `make proto` produces
	@git add --intent-to-add gen >/dev/null
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run 'make proto' and commit the result" >&2; exit 1; }

.PHONY: lint
lint: descriptors ## buf lint, ruff and mypy
	$(BIN)/buf lint proto
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .

.PHONY: fmt
fmt: setup ## Format and autofix Python
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: proto-polyglot
proto-polyglot: setup ## Generate Go and TypeScript stubs into gen/go and gen/ts (ignored) and compile them
	$(PY) -m tools.polyglot

.PHONY: breaking
breaking: descriptors ## Breaking-change gate (buf + REST bindings) against AGAINST (default: main)
	$(PY) -m tools.breaking --against $(AGAINST)

.PHONY: up
up: setup ## Run the whole shop locally with demo data (Ctrl-C stops it)
	$(PY) -m mesh.local up

.PHONY: down
down: setup ## Stop what `make up` started
	$(PY) -m mesh.local down

.PHONY: test
test: descriptors ## Run every test
	$(BIN)/pytest

.PHONY: mesh-check
mesh-check: descriptors ## Validate mesh/ offline (kustomize render, k8s + Istio schemas, semantics) with each scenario
	$(PY) -m mesh.check

.PHONY: ci
ci: setup check-generated lint test ## What CI runs
	$(MAKE) breaking AGAINST=HEAD~1
