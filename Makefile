# embedding-operator developer targets. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=
BENCH_OPERATOR_ARGS ?=
BENCH_GPU_ARGS ?=
# What bench/gpu_run.py needs beyond a GPU machine's own Python 3.12 packages (torch,
# transformers, torchvision, Pillow, numpy, PyYAML): the contract's pydantic, at this venv's versions.
GPU_WHEELS := pydantic pydantic_core annotated-types typing-inspection typing_extensions

.PHONY: bench-gpu bench-gpu-wheels bench-operator help images install lint format typecheck test test-unit test-integration demo clean bench sync-crds check-crds helm-lint tools cluster-up cluster-down operator e2e-up e2e-down e2e-local e2e-node e2e-kind
CLUSTER_DIR ?= $(HOME)/.cache/embedding-operator/cluster

help: ## List targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/\$$\$$/$$/g' | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python ## Create .venv and install the job package with pipeline and dev extras
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e 'job_image[pipeline,lance,dev]' -e operator

SHELL_SCRIPTS := $(shell git ls-files --cached --others --exclude-standard '*.sh') .ci/run

lint: ## ruff lint and format check, shellcheck on every shell script
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck $(SHELL_SCRIPTS)

format: ## Apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: ## mypy (strict on the contract package embedding_job.api and the operator)
	$(BIN)/mypy job_image/embedding_job operator/embedding_operator bench

CRD_FILE := embeddingjobs.embedding.dev.yaml
CHART_DIR := charts/embedding-operator

sync-crds: ## Regenerate crds/ (and the chart's copy) from the spec contract
	$(BIN)/python -m embedding_operator.crd > crds/$(CRD_FILE)
	cp crds/$(CRD_FILE) $(CHART_DIR)/crds/$(CRD_FILE)

check-crds: ## Fail when crds/ or the chart's copy drifts from the spec contract
	$(BIN)/python -m embedding_operator.crd | diff -u crds/$(CRD_FILE) -
	diff -u crds/$(CRD_FILE) $(CHART_DIR)/crds/$(CRD_FILE)

helm-lint: ## helm lint --strict with default values and every file in the chart's ci/
	$$(hack/tools.sh ensure helm) lint --strict $(CHART_DIR) --kube-version 1.36.5
	for f in $(CHART_DIR)/ci/*.yaml; do $$(hack/tools.sh ensure helm) lint --strict $(CHART_DIR) --kube-version 1.36.5 -f $$f || exit 1; done

test: ## Run the whole test suite (what CI runs; ~30 min on 2 cores), slowest tests listed at the end
	$(BIN)/pytest --durations=15 $(PYTEST_ARGS)

test-unit: ## Fast tests only (the unit tier): config, decode, embedder parity, builders
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: ## The real pipeline on Daft's native runner and a local Ray cluster
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

tools: ## Build (once, cached outside the repo) the control plane, the node, helm, kwok, KubeRay's operator
	hack/tools.sh ensure etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet \
		helm kwok ray-operator containerd coredns pause
	hack/tools.sh kuberay-crds
	hack/tools.sh kwok-stages

images: ## Build both images with buildah (local Debian bases, no registry; cached by content hash)
	$(BIN)/python -m tests.support.image_build build

CLUSTER_CLI := $(BIN)/python -m tests.support.cluster

cluster-up: tools ## Start a local control plane on 127.0.0.1 with our and KubeRay's CRDs
	$(CLUSTER_CLI) up $(CLUSTER_DIR) --crds
	@echo "export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig"

cluster-down: ## Stop the local control plane and delete its data
	$(CLUSTER_CLI) down $(CLUSTER_DIR)

E2E_DIR ?= $(HOME)/.cache/embedding-operator/e2e

e2e-up: tools ## The local e2e cluster (kwok GPU nodes, scheduler, KubeRay, a real Ray head) on loopback
	$(CLUSTER_CLI) up $(E2E_DIR) --e2e
	@echo "export KUBECONFIG=$(E2E_DIR)/kubeconfig; then: make operator"

e2e-down: ## Stop the local e2e cluster and delete its data
	$(CLUSTER_CLI) down $(E2E_DIR) --e2e

e2e-local: tools ## The e2e suite on the local cluster: kwok nodes, one Ray head (part of make test)
	EMBOP_E2E_PROVIDER=local $(BIN)/pytest tests/e2e -s $(PYTEST_ARGS)

e2e-node: tools images ## The e2e suite on real pods: kubelet + containerd, as root (part of make test)
	EMBOP_E2E_PROVIDER=node $(BIN)/pytest tests/e2e -s $(PYTEST_ARGS)

e2e-kind: ## The same e2e suite on kind (needs docker, kind, network): builds and loads both images
	EMBOP_E2E_PROVIDER=kind $(BIN)/pytest tests/e2e -s $(PYTEST_ARGS)

operator: ## Run the operator against $$KUBECONFIG (e.g. after make cluster-up)
	$(BIN)/kopf run -m embedding_operator.main --all-namespaces --liveness=http://127.0.0.1:8080/healthz

bench: ## Throughput, the pipeline ceiling, the peers and start-up on generated images (CPU: ~15 min, estimated); JSON to $$BENCH_OUT
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-gpu: ## The one-call GPU run (bench/gpu_run.py): every variant within a budget, JSON to $$BENCH_GPU_OUT
	$(BIN)/python -m bench.gpu_run $(BENCH_GPU_ARGS)

bench-gpu-wheels: ## Wheels bench-gpu needs on a lent GPU machine (Python 3.12, no index there) into .whl/
	rm -rf .whl && $(BIN)/pip freeze | grep -iE '^($(subst $(eval) ,|,$(GPU_WHEELS)))==' \
	  | xargs $(BIN)/pip download --no-deps --only-binary=:all: --python-version 3.12 \
	    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl

bench-operator: tools ## Operator burst: 200 EmbeddingJobs at once, RSS at 1,000 (local control plane)
	$(BIN)/python -m bench.operator_burst $(BENCH_OPERATOR_ARGS)

demo: ## Run the main job on generated sample images (random-init model unless a real one is on disk)
	$(BIN)/embedding-job demo --workdir .demo

clean: ## Remove demo output and caches
	rm -rf .demo .pytest_cache .mypy_cache .ruff_cache
