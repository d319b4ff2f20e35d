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

.PHONY: compat
compat: descriptors ## All schema gates in one report (Avro modes and immutability, `breaking`) against AGAINST
	$(PY) -m tools.compat --against $(AGAINST)

DURATION ?= 120
SOAK ?= 0
MESH ?= on
SCENARIO ?=
OBSERVE ?= off

.PHONY: up
up: setup kustomize catalog-go ## Run the shop locally with Envoy sidecars and demo data (MESH=off: plain processes; OBSERVE=on: Jaeger)
	$(PY) -m mesh.local up --mesh $(MESH) --observe $(OBSERVE)

.PHONY: observe
observe: ## `make up OBSERVE=on`: the shop with Jaeger, every app and Envoy tracing into it
	$(MAKE) up OBSERVE=on

.PHONY: jaeger
jaeger: setup ## Build the pinned Jaeger (tools/jaeger/go.mod) into build/bin once (needs Go)
	$(PY) -m mesh.local jaeger

.PHONY: metrics
metrics: setup ## RED metrics per workload (sidecar and app) of the running `make up`
	$(PY) -m mesh.local metrics

.PHONY: mesh-apply
mesh-apply: setup ## Switch the running mesh to SCENARIO=mesh/scenarios/<file> (no restart)
	$(PY) -m mesh.local apply $(SCENARIO)

.PHONY: mesh-status
mesh-status: setup ## Show each running sidecar's routes and weights
	$(PY) -m mesh.local status

.PHONY: down
down: setup ## Stop what `make up` started
	$(PY) -m mesh.local down

.PHONY: kustomize
kustomize: ## Install kustomize (pinned, with Go) where kubectl is not there to render mesh/
	@command -v kubectl >/dev/null || test -x build/bin/kustomize || \
		GOBIN=$(CURDIR)/build/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0

.PHONY: kafka
kafka: ## Fetch the Kafka broker's jars with Maven (Java 17) into build/kafka for the Kafka transport
	$(PY) -m tools.kafka fetch

POSTGRES_BIN ?= /usr/lib/postgresql/15/bin

.PHONY: postgres
postgres: ## Install PostgreSQL 15 (Debian `postgresql`) if missing: the store tests start a throwaway server
	@test -x $(POSTGRES_BIN)/initdb || { \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends postgresql-15; }

.PHONY: test
test: descriptors kustomize kafka catalog-go postgres ## Run every test but the interop suites (make interop)
	$(BIN)/pytest -m 'not interop'

.PHONY: catalog-go
catalog-go: proto-polyglot ## Build the Go catalog (services/catalog-go, the mesh's catalog-v2) into build/bin
	$(PY) -m tools.interop build catalog-go

.PHONY: interop
interop: proto-polyglot descriptors kustomize ## Interop suite in Python, Go and TS (direct, through the mesh); catalog conformance in Python and Go
	$(PY) -m tools.interop build
	$(BIN)/pytest -q -m interop tests/interop tests/services/catalog

.PHONY: mesh-check
mesh-check: descriptors kustomize ## Validate mesh/ offline (kustomize render, k8s + Istio schemas, semantics) with each scenario
	$(PY) -m mesh.check

.PHONY: bench
bench: bench-report bench-events ## Run every benchmark (figures in build/bench/)

.PHONY: bench-report
bench-report: descriptors catalog-go ## One report, every hop next to bare grpc.aio and grpc-go: build/bench/report.md + PNGs (needs h2load, Go)
	$(PY) -m bench.report --rounds 3

.PHONY: bench-services
bench-services: descriptors ## Benchmark GetProduct and PlaceOrder, telemetry on vs off (needs h2load, Go)
	$(PY) -m bench.services_bench

.PHONY: contracts
contracts: descriptors ## Pact: consumer tests, fail on uncommitted pacts, verify providers, then compat
	$(BIN)/pytest -q -m pact_consumer tests/contracts
	@git add --intent-to-add contracts/pacts >/dev/null
	@git diff --exit-code --stat -- contracts/pacts || { echo "contracts/pacts/ changed: review and commit the pacts" >&2; exit 1; }
	$(BIN)/pytest -q -m pact_provider tests/contracts
	$(MAKE) compat AGAINST=$(AGAINST)

.PHONY: chaos
chaos: descriptors kustomize catalog-go ## Chaos under load through the mesh, then the audit (DURATION=120 SOAK=0; seconds)
	$(PY) -m bench.chaos --seconds $(DURATION) --soak $(SOAK)

.PHONY: bench-events
bench-events: descriptors ## Benchmark events through outbox, stream and feed: events/s and lag (needs Go)
	$(PY) -m bench.events_bench

.PHONY: ci
ci: setup check-generated lint jaeger test interop ## What CI runs
	$(MAKE) contracts AGAINST=HEAD~1

.PHONY: openapi
openapi: descriptors ## Write the gateway's OpenAPI 3.1 document to build/openapi.json
	$(PY) -m gateway openapi --output build/openapi.json

USER ?=
.PHONY: token
token: setup ## Mint a development token: make token USER=<user_id>
	@# USER is also the login name in the environment: only an explicit USER=... counts.
	@test "$(origin USER)" = "command line" || { echo "usage: make token USER=<user_id>" >&2; exit 2; }
	@$(PY) -m gateway token "$(USER)"

.PHONY: gateway
gateway: descriptors ## Render the Envoy config and run the REST gateway on 127.0.0.1:8080
	$(PY) -m gateway run
