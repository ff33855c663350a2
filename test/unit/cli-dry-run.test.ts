/**
 * --dry-run plans (plan-only.ts): on an empty cache every stage would be built (a key that
 * depends on an unbuilt input is null); as artifacts are planted in the cache (through
 * ArtifactCache, as a stage leaves them) each stage becomes a hit and the next one's key is
 * known, down to the guest run. Nothing here builds, configures or boots.
 */
import { tempDir } from "../helpers/temp.js";
import { afterAll, describe, expect, it } from "vitest";
import { rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { resolveAndPlanCriu, type CriuMetadata } from "../../scripts/criu/stage.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { kernelCacheKey, planKernel, resolveKernelInputs } from "../../scripts/kernel/plan.js";
import { sourceKey, type KernelSourceMetadata } from "../../scripts/kernel/sources.js";
import { ArtifactCache } from "../../scripts/lib/cache.js";
import { loadConfig, type PipelineConfig } from "../../scripts/lib/config.js";
import { planMigration } from "../../scripts/plan-only-migrate.js";
import { formatDryRun, planStages, type DryRun, type PlanOptions } from "../../scripts/plan-only.js";
import { sideFromFlags } from "../../scripts/migrate/pair.js";

const TOOLCHAIN = ["gcc (Debian 12.2.0-14) 12.2.0", "GNU ld (GNU Binutils for Debian) 2.40"];
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function emptyCache(set: string[] = []): PipelineConfig {
  const dir = tempDir("crg-dry-run-");
  dirs.push(dir);
  return loadConfig({ set: [`cache_dir=${JSON.stringify(dir)}`, ...set] });
}

const opts: PlanOptions = { toolchain: async () => TOOLCHAIN };
const smoke = (config: PipelineConfig, o: PlanOptions = {}) =>
  planStages("smoke", config, ["boot"], { ...opts, ...o });
const stage = (d: DryRun, name: string) => d.stages.find((s) => s.stage === name)!;

/** A kernel .config that boots the image (virtio disk, ext4 and devtmpfs built in), or one that cannot. */
const BOOTABLE = "CONFIG_VIRTIO_BLK=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_EXT4_FS=y\nCONFIG_DEVTMPFS=y\n";

/** Plants an artifact the way a stage leaves it: built into a temporary dir, renamed into place. */
async function plant(config: PipelineConfig, stage: string, key: string, metadata: object, files = {}) {
  await new ArtifactCache(config.cache_dir).getOrBuild(stage, key, async (tmp) => {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(tmp, name), text as string);
    return metadata;
  });
}

function sourceMetadata(config: PipelineConfig): KernelSourceMetadata {
  const version = planKernel(config, repoData(), resolveKernelInputs(config)).entry.version;
  return {
    version,
    provider: "kernel.org",
    origin: `linux-${version}.tar.xz`,
    sha256: "ab".repeat(32),
    patches: [],
    notes: [],
  };
}

function kernelMetadata(version: string) {
  return {
    kind: "build",
    version,
    release: version,
    base: "allnoconfig",
    fragments: [],
    config_sha256: "cd".repeat(32),
    vmlinuz: { bytes: 1, sha256: "ef".repeat(32) },
    verify: { checked: 1, ok: 1, mismatches: [], unknown: [], passed: true },
    created: "2026-01-01T00:00:00Z",
  };
}

function criuMetadata(plan: ReturnType<typeof resolveAndPlanCriu>): CriuMetadata {
  return {
    version: plan.entry.version,
    provider: "debian-source",
    from: "criu orig tarball",
    identity: "sha256:00",
    patches: [],
    debian_patches: [],
    link: "static",
    build_suite: "bookworm",
    guest_suite: plan.guestSuite,
    runs_in: ["bookworm", "trixie", "sid"],
    build_seconds: 1,
    version_output: `Version: ${plan.entry.version}`,
    runtime_packages: [],
    needed_libs: [],
    criu: { bytes: 1, sha256: "12".repeat(32) },
    created: "2026-01-01T00:00:00Z",
  };
}

const imageMetadata = {
  name: "cr-guest",
  root: { device: "/dev/sda1", partuuid: "0f0e0d0c-0000-4000-8000-000000000001" },
};

/** Plants each stage's artifact in turn, checking the plan after each. */
async function plantChain(config: PipelineConfig, kernelConfig = BOOTABLE, upToCriu = false) {
  await plant(
    config,
    "sources",
    sourceKey(sourceMetadata(config).version, "kernel.org", config.kernel),
    sourceMetadata(config),
  );
  const kernelKey = stage(await smoke(config), "kernel").key!;
  await plant(config, "kernel", kernelKey, kernelMetadata(sourceMetadata(config).version), {
    config: kernelConfig,
  });
  const criuPlan = resolveAndPlanCriu(config, { strict: true });
  await plant(config, "criu", stage(await smoke(config), "criu").key!, criuMetadata(criuPlan));
  if (upToCriu) return { kernelKey, runKey: null };
  await plant(config, "image", stage(await smoke(config), "image").key!, imageMetadata, {
    "manifest.json": "{}",
  });
  return { kernelKey, runKey: stage(await smoke(config), "boot").key };
}

describe("dry-run plan of smoke", () => {
  it("on an empty cache: every stage would be built or run; only CRIU's key is known", async () => {
    const config = emptyCache();
    const d = await smoke(config);
    expect(d.command).toBe("smoke");
    expect(d.cache_dir).toBe(config.cache_dir);
    expect(d.stages.map((s) => [s.stage, s.would, s.cached])).toEqual([
      ["kernel", "build", false],
      ["criu", "build", false],
      ["agent", "skip", false],
      ["image", "build", false],
      ["boot", "run", false],
    ]);
    // The stable shape of each stage, for --json readers.
    for (const s of d.stages)
      expect(Object.keys(s)).toEqual(["stage", "role", "key", "cached", "dir", "would", "detail", "uses"]);
    expect(d.stages.map((s) => s.key === null)).toEqual([true, false, true, true, true]);
    expect(stage(d, "kernel").detail).toContain("the key is known once the source tree is fetched");
    expect(stage(d, "boot").detail).toContain("once the kernel, the image and CRIU are built");
    // The chroots each stage would bootstrap first, none cached.
    expect(stage(d, "criu").uses).toEqual([expect.objectContaining({ artifact: "chroots", cached: false })]);
    expect(stage(d, "image").uses).toEqual([expect.objectContaining({ artifact: "chroots", cached: false })]);
    expect(formatDryRun(d)).toMatch(/would build: kernel, criu, image; run: boot$/);
  });

  it("the image is planned in the guest suite of the CRIU plan (smoke --criu 4.2)", async () => {
    const config = emptyCache(['criu.version="4.2"']);
    const suite = resolveAndPlanCriu(config, { strict: true }).guestSuite;
    const d = await smoke(config);
    expect(stage(d, "criu").detail).toContain(`CRIU 4.2.1 `);
    expect(stage(d, "criu").detail).toContain(`for a ${suite} guest`);
    expect(stage(d, "image").detail).toContain(`fresh ${suite} image with CRIU 4.2.1`);
  });

  it("a cached source tree gives the kernel's key, the one the kernel stage composes", async () => {
    const config = emptyCache();
    const key = sourceKey(sourceMetadata(config).version, "kernel.org", config.kernel);
    await plant(config, "sources", key, sourceMetadata(config));
    const kernel = stage(await smoke(config), "kernel");
    // The source as the kernel stage reads it from the cache (metadata.json as written).
    const source = await new ArtifactCache(config.cache_dir).lookup<KernelSourceMetadata>("sources", key);
    const plan = planKernel(config, repoData(), resolveKernelInputs(config));
    expect(kernel.key).toBe(kernelCacheKey(plan, config.kernel.base, source!.metadata, TOOLCHAIN));
    expect(kernel).toMatchObject({ would: "build", cached: false, dir: null });
    expect(kernel.uses).toEqual([expect.objectContaining({ artifact: "sources", cached: true })]);
  });

  it("planted artifacts are hits, stage by stage, down to a complete run", async () => {
    const config = emptyCache();
    const { kernelKey, runKey } = await plantChain(config);
    let d = await smoke(config);
    expect(stage(d, "kernel")).toMatchObject({ would: "reuse", cached: true, key: kernelKey });
    expect(stage(d, "kernel").dir).toBe(new ArtifactCache(config.cache_dir).dir("kernel", kernelKey));
    expect(d.stages.map((s) => s.would)).toEqual(["reuse", "reuse", "skip", "reuse", "run"]);
    expect(runKey).toMatch(/^[0-9a-f]{16}$/);
    await plant(config, "runs", runKey!, { status: "COMPLETE" });
    d = await smoke(config);
    expect(stage(d, "boot")).toMatchObject({ would: "reuse", cached: true, key: runKey });
    expect(formatDryRun(d)).toMatch(/every stage is cached: nothing to build or run$/);
    // --force boots again even so.
    const forced = stage(await smoke(config, { force: true }), "boot");
    expect(forced).toMatchObject({ would: "run", cached: false, key: runKey });
    expect(forced.detail).toContain("--force runs it again");
  });

  it("a run that ended in ERROR is run again", async () => {
    const config = emptyCache();
    const { runKey } = await plantChain(config);
    await plant(config, "runs", runKey!, { status: "ERROR" });
    const boot = stage(await smoke(config), "boot");
    expect(boot).toMatchObject({ would: "run", cached: false });
    expect(boot.detail).toContain("the cached run is ERROR");
  });

  it("a kernel that cannot boot the image is not booted", async () => {
    const config = emptyCache();
    await plantChain(config, "CONFIG_VIRTIO_BLK=m\n");
    const boot = stage(await smoke(config), "boot");
    expect(boot).toMatchObject({ would: "skip", key: null });
    expect(boot.detail).toContain("CONFIG_EXT4_FS=n");
  });

  it("a configured agent is planned, and the image's key names it", async () => {
    const agentFile = join(tempDir("crg-agent-"), "kata-agent");
    dirs.push(dirname(agentFile));
    writeFileSync(agentFile, "\x7fELF not really");
    const config = emptyCache([`agent.binary=${JSON.stringify(agentFile)}`]);
    const withoutAgent = emptyCache();
    await plantChain(withoutAgent);
    await plantChain(config, BOOTABLE, true); // its image key waits for the agent
    let agent = stage(await smoke(config), "agent");
    expect(agent).toMatchObject({ would: "build", cached: false });
    expect(agent.key).toMatch(/^[0-9a-f]{16}$/);
    expect(stage(await smoke(config), "image")).toMatchObject({ key: null, would: "build" });
    expect(stage(await smoke(config), "image").detail).toContain("once the agent is built");
    await plant(config, "agent", agent.key!, { agent: { sha256: "34".repeat(32) } });
    agent = stage(await smoke(config), "agent");
    expect(agent).toMatchObject({ would: "reuse", cached: true });
    const image = stage(await smoke(config), "image");
    expect(image.key).toMatch(/^[0-9a-f]{16}$/);
    expect(image.key).not.toBe(stage(await smoke(withoutAgent), "image").key);
  });

  it("a cached static CRIU built for another guest suite is planned in this run's suite", async () => {
    const config = emptyCache();
    const plan = resolveAndPlanCriu(config, { strict: true });
    const other = plan.guestSuite === "bookworm" ? "sid" : "bookworm";
    await plant(config, "criu", stage(await smoke(config), "criu").key!, {
      ...criuMetadata(plan),
      guest_suite: other,
    });
    const d = await smoke(config);
    expect(stage(d, "criu").would).toBe("reuse");
    expect(stage(d, "image").detail).toContain(`fresh ${plan.guestSuite} image`);
    expect(stage(d, "image").uses[0].what).toBe(`${plan.guestSuite} guest rootfs`);
  });

  it("kernel --check-config plans a configure, never a build", async () => {
    const d = await planStages("kernel", emptyCache(), ["kernel"], { ...opts, checkConfigOnly: true });
    expect(d.stages).toEqual([expect.objectContaining({ stage: "kernel", would: "run", key: null })]);
    expect(d.stages[0].detail).toContain("--check-config");
  });
});

describe("dry-run plan of migrate", () => {
  const pair = (inPlace: boolean) => ({
    from: sideFromFlags("4.1.1", "6.12", []),
    to: sideFromFlags("4.2.1", "6.12", []),
    inPlace,
  });

  it("one kernel for both sides, a CRIU per side, one image, a boot per half", async () => {
    const config = emptyCache();
    const d = await planMigration({ set: [`cache_dir=${JSON.stringify(config.cache_dir)}`] }, pair(false));
    expect(d.command).toBe("migrate");
    expect(d.stages.map((s) => [s.stage, s.role, s.would])).toEqual([
      ["kernel", "from and to", "build"],
      ["criu", "from", "build"],
      ["criu", "to", "build"],
      ["agent", null, "skip"],
      ["image", null, "build"],
      ["boot", "dump", "run"],
      ["boot", "restore", "run"],
    ]);
    expect(stage(d, "criu").key).not.toBe(d.stages[2].key);
  });

  it("in place: one boot does both halves", async () => {
    const config = emptyCache();
    const d = await planMigration({ set: [`cache_dir=${JSON.stringify(config.cache_dir)}`] }, pair(true));
    expect(d.stages.filter((s) => s.stage === "boot").map((s) => s.role)).toEqual(["dump and restore"]);
  });
});
