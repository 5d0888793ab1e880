# lab8 — every entry point. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo test build
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

demo: ## Run the whole pipeline on the bundled sample with a private Redis
	scripts/demo.sh

test: ## Every test: fmt, clippy, unit and integration tests against real Redis
	scripts/test.sh

build: ## Build the workspace (release, all targets)
	source scripts/lib.sh && build

.PHONY: model-sync k8s-test
model-sync: ## Copy the model artifact (dist/) into the kustomize tree
	source scripts/lib.sh && cp "$$LAB8_ARTIFACT" k8s/base/config/

k8s-test: ## Offline manifest and chart tests (render, schemas, policies, helm lint, chart/overlay parity)
	scripts/k8s-test.sh

.PHONY: images images-test
images: ## Build the five images (no registry needed; LAB8_BUILD=registry: the Dockerfiles as they are)
	scripts/build-images.sh

images-test: ## Run the images as containers on a private network and reconcile; both build paths
	scripts/images-test.sh
	source scripts/lib.sh && LAB8_BUILD=registry TAG=$$LAB8_VERSION-registry scripts/images-test.sh

.PHONY: minikube
minikube: ## With minikube installed: start it, build and load the images, apply the minikube overlay, wait
	scripts/minikube.sh

.PHONY: cluster-up cluster-down e2e
cluster-up: ## A real single-node Kubernetes from registry packages (host processes)
	scripts/cluster/up.sh

cluster-down: ## Stop it and clean up
	scripts/cluster/down.sh

e2e: ## The end-to-end test on that cluster (up, apply, test, tear down)
	scripts/e2e.sh

.PHONY: soak
soak: ## 30 min of steady load (SOAK_RATE, 2,000 records/s asked) on the cluster, a pod killed every minute, one Redis failover (not in CI; artifacts/soak)
	scripts/soak.sh

.PHONY: browser-test
browser-test: ## The mart's web page in headless Chromium on the sample (screenshots in artifacts/browser)
	scripts/browser-test.sh

.PHONY: bench-scale
bench-scale: ## The mart at scale alone (BENCH_SCALE_SIZES, default 0 1M 5M products): latency, memory, rebuild, backfill
	scripts/bench-scale.sh && cp artifacts/bench/scale.jsonl docs/bench-scale.jsonl

.PHONY: bench
bench: ## Benchmarks against their anchors (not part of make test); writes docs/BENCHMARKS.md
	scripts/bench.sh

.PHONY: report
report: ## Regenerate docs/REPORT.md: outputs from a local-cluster run, figures
	scripts/report.sh
