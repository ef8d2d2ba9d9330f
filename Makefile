# freezeframe — application-consistent backups on Kubernetes.
# Every Go target loops over the workspace's modules: `go test ./...` at the
# root of a go.work workspace does not reach them.

SHELL      := bash
.SHELLFLAGS := -eu -o pipefail -c
GO         ?= go
BIN        := $(CURDIR)/bin
MODULES     = $(shell $(GO) list -m -f '{{.Dir}}')
COMMANDS   := cmd/freezeframe services/scheduler services/hooker services/snapshotter services/notifier
TEST_FLAGS ?= -race -count=1 -timeout 20m

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build the CLI and the four service binaries into bin/
	@mkdir -p $(BIN)
	@for m in $(COMMANDS); do \
		echo "build $$m"; \
		(cd $$m && GOWORK=off $(GO) build -o $(BIN)/$$(basename $$m) .); \
	done

# Container images: one per service, a static binary on distroless (deploy/docker/).
ARCH           ?= amd64
SERVICES       := scheduler hooker snapshotter notifier
# The images: the four services, and the CLI (the chart's `freezeframe setup` Job).
IMAGES         := $(SERVICES) freezeframe
IMAGE_REGISTRY ?= ghcr.io/freezeframe
IMAGE_TAG      ?= $(shell awk '/^appVersion:/ {gsub(/"/, "", $$2); print $$2}' deploy/helm/freezeframe/Chart.yaml)
DOCKER         ?= docker

.PHONY: build-static
build-static: ## static linux binaries of the four services and the CLI (CGO_ENABLED=0) into bin/linux-$(ARCH)/, what the images copy
	@mkdir -p $(BIN)/linux-$(ARCH)
	@for m in $(addprefix services/,$(SERVICES)) cmd/freezeframe; do \
		echo "build-static $$m (linux/$(ARCH))"; \
		(cd $$m && GOWORK=off CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) \
			$(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/linux-$(ARCH)/$$(basename $$m) .); \
	done

.PHONY: images
images: build-static ## docker build one image per service and one of the CLI: $(IMAGE_REGISTRY)/<name>:$(IMAGE_TAG)
	@for s in $(IMAGES); do \
		echo "image $(IMAGE_REGISTRY)/$$s:$(IMAGE_TAG)"; \
		$(DOCKER) build --platform linux/$(ARCH) \
			-f deploy/docker/$$s/Dockerfile -t $(IMAGE_REGISTRY)/$$s:$(IMAGE_TAG) $(BIN)/linux-$(ARCH); \
	done

CHART := deploy/helm/freezeframe

.PHONY: helm
helm: ## build helm from the Go module proxy once (cached in ~/.cache/freezeframe/helm) and print its path
	@deploy/helm/build-helm.sh

.PHONY: helm-crds
helm-crds: ## copy deploy/crds/ (the one source of the CRDs) into the chart's crds/
	@rm -f $(CHART)/crds/*.yaml && cp deploy/crds/*.yaml $(CHART)/crds/

.PHONY: helm-lint
helm-lint: ## check the chart's CRDs match deploy/crds/, then helm lint the chart (needs its NATS dependency: helm dependency build)
	@diff -r deploy/crds $(CHART)/crds >/dev/null || { echo "$(CHART)/crds differs from deploy/crds: run make helm-crds"; exit 1; }
	@$$(deploy/helm/build-helm.sh) lint $(CHART)

SANDBOX := test/sandbox

.PHONY: test
test: vet sandbox-build ## vet, build the sandbox, then run every module's tests (race detector on), the sandbox and end-to-end suites included
	@for d in $(MODULES); do \
		echo "== test $${d#$(CURDIR)/}"; \
		(cd $$d && GOWORK=off $(GO) test $(TEST_FLAGS) ./...); \
	done

.PHONY: vet
vet: ## go vet every module, and check each builds on its own (GOWORK=off)
	@for d in $(MODULES); do \
		echo "== vet $${d#$(CURDIR)/}"; \
		(cd $$d && GOWORK=off $(GO) build ./... && GOWORK=off $(GO) vet -tags chaos ./...); \
	done

BENCH_OUT ?= $(BIN)/bench
# Throughput runs 3 rounds of each size up to 1,000 at once, and 1 of 10,000
# (besides its warm-up round and the round that holds every backup in flight).
BENCH_PPROF ?=
# Rounds of 500 backups at once: each takes over a minute on 2 cores.
BENCH_500_ROUNDS ?= 2

.PHONY: bench
bench: sandbox-build ## benchmarks: hop latency, freeze overhead, throughput (1 to 10,000 at once), then on the sandbox the Redis demo, the dead man's switch, and 1, 50 (10 rounds) and 500 (BENCH_500_ROUNDS) backups at once, each with the writer-observed pause, the storage's own bound and CPU/memory per backup (~20 min on 2 cores); prints the report, plots $(BENCH_OUT)/freeze-overhead.png and $(BENCH_OUT)/pause-vs-concurrency.png; BENCH_PPROF=dir profiles freezeframe up
	@mkdir -p $(BENCH_OUT) && rm -f $(BENCH_OUT)/bench.txt $(BENCH_OUT)/freeze-samples.txt
	@cd test/bench && $(GO) test -run '^$$' -bench 'Hop|Codec' -benchtime 3000x -count 3 . | tee $(BENCH_OUT)/bench.txt
	@cd pkg/events && $(GO) test -run '^$$' -bench Handle -benchtime 100000x -count 3 . | tee -a $(BENCH_OUT)/bench.txt
	@cd test/bench && $(GO) test -run '^$$' -bench Orchestration -benchtime 1000x -count 3 . -args -freeze-samples $(BENCH_OUT)/freeze-samples.txt | tee -a $(BENCH_OUT)/bench.txt
	@cd test/bench && $(GO) test -run '^$$' -bench 'Throughput/workloads=(1|10|100|1000)$$' -benchtime 3x -timeout 10m . | tee -a $(BENCH_OUT)/bench.txt
	@cd test/bench && $(GO) test -run '^$$' -bench 'Throughput/workloads=10000$$' -benchtime 1x -timeout 20m . | tee -a $(BENCH_OUT)/bench.txt
	@cd test/e2e && FREEZEFRAME_BENCH_PPROF=$(BENCH_PPROF) GOWORK=off $(GO) test -run '^$$' -bench 'SandboxRedis|SandboxDeadMansSwitch|SandboxFreeze/workloads=(1|50)$$' -benchtime 10x -timeout 20m . | grep -v '^        {' | tee -a $(BENCH_OUT)/bench.txt
	@cd test/e2e && FREEZEFRAME_BENCH_PPROF=$(BENCH_PPROF) GOWORK=off $(GO) test -run '^$$' -bench 'SandboxFreeze/workloads=500$$' -benchtime $(BENCH_500_ROUNDS)x -timeout 30m . | grep -v '^        {' | tee -a $(BENCH_OUT)/bench.txt
	@cd test/bench && $(GO) run ./cmd/report -in $(BENCH_OUT)/bench.txt -samples $(BENCH_OUT)/freeze-samples.txt -plot $(BENCH_OUT)/freeze-overhead.png \
		-plot-concurrency $(BENCH_OUT)/pause-vs-concurrency.png

.PHONY: demo
demo: sandbox-build ## the main job: a sandbox, Redis under writes, a backup end to end, the snapshot proven consistent (cold first run ~15 min); DEMO_FLAGS=-keep leaves it up
	@mkdir -p $(BIN)
	@echo "building the demo"; cd test/e2e && GOWORK=off $(GO) build -o $(BIN)/demo ./cmd/demo
	@$(BIN)/demo $(DEMO_FLAGS)

CHAOS_ROWS ?=

.PHONY: chaos
chaos: build sandbox-build ## crash matrix: the bin/ services as separate processes on a standalone nats-server, each SIGKILLed at each step of a backup (restarted or not), redelivery and 2-replica rows; one table, fails on a violated invariant (~15 min); CHAOS_ROWS='hooker|nats' runs the matching rows
	@cd test/e2e/chaos && FREEZEFRAME_CHAOS_ROWS='$(CHAOS_ROWS)' FREEZEFRAME_CHAOS_BIN=$(BIN) \
		GOWORK=off $(GO) test -tags chaos -count=1 -timeout 90m -run '^TestChaosMatrix$$'

.PHONY: sandbox-build
sandbox-build: ## build the sandbox's Kubernetes binaries and helm once (~15 min cold on 2 cores, cached in ~/.cache/freezeframe) and apt-install kubectl, redis, mariadb, postgresql if missing
	@$(SANDBOX)/build.sh >/dev/null
	@deploy/helm/build-helm.sh >/dev/null

.PHONY: sandbox-up
sandbox-up: sandbox-build ## start a local Kubernetes sandbox in the background; prints the KUBECONFIG to export
	@mkdir -p $(BIN)
	@cd $(SANDBOX) && GOWORK=off $(GO) build -o $(BIN)/sandbox ./cmd/sandbox
	@$(BIN)/sandbox up

.PHONY: sandbox-down
sandbox-down: ## stop the sandbox started by sandbox-up
	@cd $(SANDBOX) && GOWORK=off $(GO) build -o $(BIN)/sandbox ./cmd/sandbox
	@$(BIN)/sandbox down

.PHONY: tidy
tidy: ## go mod tidy every module, then sync the workspace
	@for d in $(MODULES); do (cd $$d && $(GO) mod tidy); done
	$(GO) work sync

.PHONY: fmt
fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
