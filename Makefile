# cr-guest: make targets are thin wrappers around the CLI (bin/cr-guest).
CRG := bin/cr-guest
ARGS ?=
CRIU ?= 4.1

.PHONY: schemas all setup test test-unit test-integration kernel criu image smoke matrix matrix-plan check-config bench bench-kernel bench-criu bench-image bench-smoke typecheck clean help

## all: the main job on the built-in default config: kernel, CRIU, image, boot and test
all: node_modules
	$(CRG) smoke $(ARGS)

## setup: install the host's Debian packages and the npm packages
# `npm install` honours package-lock.json; `npm ci` refuses it here because the registry mirror
# only carries linux-x64 builds of optional platform packages, which npm then counts as "missing".
setup:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$(grep -v '^\s*#' host-packages.txt)
	npm install --no-audit --no-fund

node_modules: package-lock.json
	npm install --no-audit --no-fund
	@touch node_modules

## test: typecheck, unit tests and integration tests (what CI runs)
test: node_modules
	npm test

test-unit: node_modules
	npx vitest run test/unit

test-integration: node_modules
	npx vitest run test/integration

## kernel: build the guest kernel (make kernel ARGS="--kernel 6.1 --kernel-base tinyconfig")
kernel: node_modules
	$(CRG) kernel $(ARGS)

## criu: build or download CRIU (make criu CRIU=4.1 ARGS="--patch membarrier-probe-nonfatal")
criu: node_modules
	$(CRG) criu --criu $(CRIU) $(ARGS)

## image: a guest image with CRIU, the agent (if given) and the test runner
image: node_modules
	$(CRG) image --criu $(CRIU) $(ARGS)

## smoke: boot the image with the kernel and run criu check, ptrace checks and the scenarios
smoke: node_modules
	$(CRG) smoke --criu $(CRIU) $(ARGS)

## matrix: every cell of matrix.yaml (make matrix ARGS="--criu 4.1 --kernel 6.12" for one cell)
matrix: node_modules
	$(CRG) matrix $(ARGS)

## matrix-plan: the cells, what they share and what is cached; runs nothing
matrix-plan: node_modules
	$(CRG) matrix --dry-run $(ARGS)

## check-config: configure and verify the kernel config only, no build
check-config: node_modules
	$(CRG) kernel --check-config $(ARGS)

## bench: the pipeline cold (empty cache) and warm (unchanged: only the boots rerun), per stage
bench: node_modules
	node_modules/.bin/tsx scripts/bench/pipeline.ts $(ARGS)

## bench-kernel: config time, cold build, no-op rebuild, warm-ccache rebuild, cache hit
bench-kernel: node_modules
	node_modules/.bin/tsx scripts/bench/kernel.ts $(ARGS)

## bench-criu: build chroot, CRIU build and cache-hit times (make bench-criu ARGS=4.2)
bench-criu: node_modules
	node_modules/.bin/tsx scripts/bench/criu.ts $(ARGS)

## bench-image: rootfs, image creation, guestfish injection times, appliance launches
bench-image: node_modules
	node_modules/.bin/tsx scripts/bench/image.ts $(ARGS)

## bench-smoke: boot to the guest init, each test, the whole guest run
bench-smoke: node_modules
	node_modules/.bin/tsx scripts/bench/smoke.ts $(ARGS)

typecheck: node_modules
	node_modules/.bin/tsc --noEmit

## clean: remove built artifacts (downloads, sources and Debian chroots are kept)
clean:
	rm -rf images/kernel images/kbuild images/logs images/boot-check images/criu images/agent images/helpers images/image images/runs images/*.img images/*.json

help:
	@grep -E '^## ' Makefile | sed 's/^## /  /'

## schemas: write the JSON Schemas of results.json, cell.json and matrix.json into schemas/
schemas: node_modules
	node_modules/.bin/tsx scripts/schemas.ts
