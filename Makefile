# cr-guest: make targets are thin wrappers around the CLI (bin/cr-guest).
CRG := bin/cr-guest
ARGS ?=
CRIU ?= 4.1

PHONY_LINT := lint format docs
.PHONY: $(PHONY_LINT) schemas all setup ci-local test test-unit test-integration kernel criu image smoke matrix matrix-plan check-config bench bench-kernel bench-criu bench-image bench-smoke typecheck clean help

## all: the main job on the built-in default config: kernel, CRIU, image, boot and test
all: node_modules
	$(CRG) smoke $(ARGS)

## setup: install the host's Debian packages and the npm packages
# `npm ci` installs exactly package-lock.json (complete, with every platform's optional
# packages) and never rewrites it: a fresh clone stays clean (.ci/run checks `git status`).
setup:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$(grep -v '^\s*#' host-packages.txt)
	npm ci --no-audit --no-fund

## node_modules: the npm packages only (the CI report job, which needs no host tools)
node_modules: package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

## test: typecheck, lint, unit tests and integration tests (what CI runs)
test: node_modules
	npm test

## lint: Prettier's check and ESLint (typescript-eslint); part of `make test`
lint: node_modules
	npm run --silent lint

## format: rewrite the sources in Prettier's format
format: node_modules
	npm run --silent format

## test-unit: typecheck and the unit tests only (seconds, no root, no host tools)
test-unit: node_modules
	node_modules/.bin/tsc --noEmit && node_modules/.bin/vitest run test/unit

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

## ci-local: the CI workflow's steps, in its order, against a local store standing for the
## artifact store (make ci-local CRIU="4.1 3.19" BASELINE=old/matrix.json); about an hour cold
CI_STORE ?= ci-store
CI_MATRIX ?= matrix.yaml
ci-local: node_modules
	rm -rf $(CI_STORE)/cells-* $(CI_STORE)/report $(CI_STORE)/baseline
	$(CRG) ci keys --matrix $(CI_MATRIX)
	$(CRG) ci kernels --matrix $(CI_MATRIX) --store $(CI_STORE) $(ARGS)
	for v in $(CRIU); do $(CRG) ci cell --matrix $(CI_MATRIX) --criu "$$v" --store $(CI_STORE) $(ARGS) || exit $$?; done
	$(CRG) ci report --store $(CI_STORE) $(if $(BASELINE),--baseline $(BASELINE))

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

## docs: write docs/cli.md from the flag and command tables (a unit test fails when it is stale)
docs: node_modules
	node_modules/.bin/tsx scripts/docs/cli-reference.ts

## schemas: write the JSON Schemas of results.json, cell.json and matrix.json into schemas/
schemas: node_modules
	node_modules/.bin/tsx scripts/schemas.ts
