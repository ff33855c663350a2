/**
 * --dry-run of the commands that build or boot (kernel, image, smoke; migrate in
 * plan-only-migrate.ts): each stage the command would run, in the driver's order (STAGE_GRAPH),
 * with its cache key, whether the cache holds it, and what would be built. Resolving reads the
 * disk (cached sources and metadata, the user's files, the guest runner) and asks the compiler
 * its version; like `criu --dry-run` it may fetch a git ref or a Debian index. It never
 * downloads a source tarball, configures, compiles, bootstraps or boots.
 *
 * A stage's key is known when what it reads is: a kernel's once its source tree is cached, an
 * image's once its CRIU is built, a run's once its kernel and image are. Otherwise the key is
 * null and the stage would build (an input that is not built yet cannot be in the cache).
 *
 * Some keys are composed inside a stage's build step (the kernel's toolchain, the prebuilt
 * agent's, the cloud kernel's, a run's): they are composed here the same way, each marked
 * "as <file> composes it"; a change there must be made here too.
 */
import type { TestSelection } from "./boot/test-selection.js";
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { AGENT_RECIPE_VERSION, kataSourceIdentity } from "./agent/stage.js";
import { runIdentity, type RunResults } from "./boot/stage.js";
import { criuBuildDeps } from "./criu/build-recipe.js";
import {
  doctorFor,
  resolveAndPlanCriu,
  servingCandidate,
  type CriuMetadata,
  type CriuPlan,
} from "./criu/stage.js";
import { loadDotConfig } from "./data/fragments.js";
import { repoData } from "./data/repo-data.js";
import { loadScenarios } from "./data/scenarios.js";
import { stagesFor, type StageName } from "./driver.js";
import { helperHeaders, helperSources } from "./image/helpers.js";
import {
  imageKey,
  runnerFiles,
  type GuestManifest,
  type ImageMetadata,
  type ImageResult,
} from "./image/stage.js";
import { bootPlan } from "./kernel/bootable.js";
import { kernelCacheKey, planKernel, resolveKernelInputs, type KernelPlan } from "./kernel/plan.js";
import { cloudImagePackage, cloudKernelKey } from "./kernel/prebuilt.js";
import { requestedValues, type KernelMetadata, type KernelRef } from "./kernel/result.js";
import { sourceKey, type KernelSourceMetadata } from "./kernel/sources.js";
import { ArtifactCache } from "./lib/cache.js";
import { chrootKey } from "./lib/chroot.js";
import type { PipelineConfig } from "./lib/config.js";
import { UserError } from "./lib/errors.js";
import { run } from "./lib/exec.js";
import { cacheKey, sha256File } from "./lib/hash.js";
import { guestPackages } from "./lib/rootfs.js";

/** What the command would do with a stage: take the cached artifact, build it, boot, or nothing. */
export type Would = "reuse" | "build" | "run" | "skip";

/** An artifact a stage makes first when it is missing (a source tree, a chroot). */
export interface PlannedInput {
  artifact: string;
  key: string | null;
  cached: boolean;
  what: string;
}

export interface PlannedStage {
  stage: StageName;
  /** Which one, when a command runs a stage twice (a migration's "from" and "to" sides). */
  role: string | null;
  /** The cache key; null while it depends on something not built yet. */
  key: string | null;
  cached: boolean;
  /** The cached artifact's directory. */
  dir: string | null;
  would: Would;
  detail: string;
  uses: PlannedInput[];
}

/** The --dry-run document (one per command, also with --json). */
export interface DryRun {
  command: string;
  cache_dir: string;
  stages: PlannedStage[];
  notes: string[];
}

/** A cached kernel with what later stages read of it. */
export interface KnownKernel {
  ref: KernelRef;
  config: Map<string, string>;
}

/** A cached CRIU build. */
export interface KnownCriu {
  dir: string;
  metadata: CriuMetadata;
}

/**
 * What the planned stages know of each other: the artifacts already cached (a later stage's key
 * reads them), and the CRIU plan. `agent: null` means no agent is configured.
 */
export interface Known {
  kernel?: KnownKernel;
  criuPlan?: CriuPlan;
  criu?: KnownCriu;
  agent?: { sha256: string } | null;
  image?: ImageResult;
}

export interface PlanOptions {
  role?: string;
  /** --fragment files on top of the config's. */
  extraFragments?: string[];
  checkConfigOnly?: boolean;
  bootCheck?: boolean;
  /** --force: a run is booted again even when a complete one is cached. */
  force?: boolean;
  /** The CRIU stage refuses a predicted failure unless forced (a migration always forces). */
  criuForce?: boolean;
  /** More CRIU builds in the image (a migration's other side). */
  moreCriu?: KnownCriu[];
  /** More run.conf assignments and the transfer disk of a migration's boot. */
  bootConf?: Record<string, string>;
  /** smoke --test: one test and its gate (part of the run's key). */
  only?: TestSelection;
  transfer?: { mode: "write" } | { mode: "read"; readFrom: string };
  /** The compiler and linker versions (a test gives fixed ones). */
  toolchain?: () => Promise<string[] | undefined>;
}

/** A stage's plan: reused when the cache holds `key`, else `fresh` (build, or run for a boot). */
export function plannedStage(
  stage: StageName,
  key: string | null,
  hitDir: string | undefined,
  o: { fresh: Would; detail: string; role?: string; uses?: PlannedInput[] },
): PlannedStage {
  return {
    stage,
    role: o.role ?? null,
    key,
    cached: hitDir !== undefined,
    dir: hitDir ?? null,
    would: hitDir !== undefined ? "reuse" : o.fresh,
    detail: o.detail,
    uses: o.uses ?? [],
  };
}

/** "CRIU is built", "the kernel, the image and CRIU are built". */
function builtYet(what: string[]): string {
  const list = what.length > 1 ? `${what.slice(0, -1).join(", ")} and ${what.at(-1)}` : what[0];
  return `${list} ${what.length > 1 ? "are" : "is"} built`;
}

function input(cache: ArtifactCache, artifact: string, key: string, what: string): PlannedInput {
  return { artifact, key, cached: cache.has(artifact, key), what };
}

/** The compiler and linker, as kernel/stage.ts puts them in the kernel's key; undefined without them. */
async function hostToolchain(): Promise<string[] | undefined> {
  const first = async (argv: string[]) =>
    (await run(argv, { timeoutMs: 30_000, allowFailure: true })).stdout.split("\n")[0].trim();
  try {
    const tools = [await first(["gcc", "--version"]), await first(["ld", "--version"])];
    return tools.every(Boolean) ? tools : undefined;
  } catch {
    return undefined; // not installed: the build would stop at its host-tools check
  }
}

/** The kernel as the guest run reads it (kernelRef of result.ts, from a cached artifact). */
function knownKernel(dir: string, m: KernelMetadata, plan: KernelPlan): KnownKernel {
  const requested = requestedValues(plan.requested);
  // A drop accepted by the allowlist is what the guest will (rightly) see.
  for (const x of m.verify.mismatches) if (x.allowed) requested.set(x.symbol, x.final);
  return {
    ref: {
      dir,
      key: basename(dir),
      version: m.version,
      release: m.release ?? null,
      config_sha256: m.config_sha256,
      requested,
    },
    config: loadDotConfig(join(dir, "config")),
  };
}

export async function planKernelStage(
  config: PipelineConfig,
  o: PlanOptions = {},
): Promise<{ stage: PlannedStage; known?: KnownKernel }> {
  const cache = new ArtifactCache(config.cache_dir);
  const plan = planKernel(config, repoData(), resolveKernelInputs(config, o.extraFragments));
  if (config.kernel.kind === "debian-cloud") return planCloudKernel(config, cache, plan, o);
  const k = config.kernel;
  const label = `linux ${plan.entry.version} (${k.base}, ${k.kata_fragments ? "Kata fragments" : `fragment set ${k.fragment_set}`}; ${plan.requested.values.size} symbols requested)`;
  // The first provider (in config order) whose tree is cached serves, as obtainKernelSource takes it.
  const keyOf = (p: (typeof k.providers)[number]) => sourceKey(plan.entry.version, p, k);
  const cachedKey = k.providers
    .filter((p) => p !== "local-tree")
    .map(keyOf)
    .find((key) => cache.has("sources", key));
  const source = cachedKey ? await cache.lookup<KernelSourceMetadata>("sources", cachedKey) : undefined;
  // Else the providers that could fetch it (a local mirror only when one is set).
  const fetching = k.providers.filter((p) => p !== "local-tree" && (p !== "local-mirror" || k.local_mirror));
  const uses = cachedKey
    ? [input(cache, "sources", cachedKey, "source tree")]
    : fetching.length
      ? [
          input(
            cache,
            "sources",
            keyOf(fetching[0]),
            `source tree (fetched from ${fetching.join(", then ")})`,
          ),
        ]
      : [];
  if (o.checkConfigOnly)
    return {
      stage: plannedStage("kernel", null, undefined, {
        fresh: "run",
        detail: `${label}: configure and verify for real, no build (--check-config)`,
        role: o.role,
        uses,
      }),
    };
  const tools = await (o.toolchain ?? hostToolchain)();
  const key = source && tools ? kernelCacheKey(plan, k.base, source.metadata, tools) : null;
  const hit = key ? await cache.lookup<KernelMetadata>("kernel", key) : undefined;
  const localTree = !source && k.local_tree && k.providers.includes("local-tree");
  const why = localTree
    ? `built from the local tree ${k.local_tree} (its key names the tree's commit, read when it builds)`
    : !source
      ? "the key is known once the source tree is fetched"
      : !tools
        ? "gcc or ld is missing (the key names the toolchain)"
        : `configure, verify and compile with -j${plan.jobs}`;
  const check = (o.bootCheck ?? k.boot_check) ? "; then a boot check under QEMU" : "";
  return {
    stage: plannedStage("kernel", key, hit?.dir, {
      fresh: "build",
      detail: `${label}${hit ? "" : `: ${why}`}${check}`,
      role: o.role,
      uses,
    }),
    known: hit ? knownKernel(hit.dir, hit.metadata, plan) : undefined,
  };
}

/** Debian's cloud kernel: the package the suite's index names (the index is fetched when stale). */
async function planCloudKernel(
  config: PipelineConfig,
  cache: ArtifactCache,
  plan: KernelPlan,
  o: PlanOptions,
): Promise<{ stage: PlannedStage; known?: KnownKernel }> {
  const suite = config.kernel.debian_cloud_suite;
  const pkg = await cloudImagePackage(config, cache);
  const key = cloudKernelKey(pkg, plan);
  const hit = await cache.lookup<KernelMetadata>("kernel", key);
  return {
    stage: plannedStage("kernel", key, hit?.dir, {
      fresh: "build",
      detail: `Debian ${suite} cloud kernel ${pkg.package} ${pkg.version}${hit ? "" : ": download, extract and verify"}`,
      role: o.role,
    }),
    known: hit ? knownKernel(hit.dir, hit.metadata, plan) : undefined,
  };
}

export async function planCriuStage(
  config: PipelineConfig,
  plan: CriuPlan,
  known: Pick<Known, "kernel">,
  o: PlanOptions = {},
): Promise<{ stage: PlannedStage; known?: KnownCriu }> {
  const cache = new ArtifactCache(config.cache_dir);
  const c = servingCandidate(plan);
  const patches = plan.patches.length ? `, patches ${plan.patches.map((p) => p.name).join(", ")}` : "";
  const what = `CRIU ${plan.entry.version} (${c?.provider ?? "no provider"}, ${c?.provider === "debian-binary" ? "Debian binary" : config.criu.link}${patches}) for a ${plan.guestSuite} guest`;
  if (!c)
    return {
      stage: plannedStage("criu", null, undefined, {
        fresh: "build",
        detail: `${what}: no provider can serve it (${plan.candidates.map((x) => `${x.provider}: ${x.skip}`).join("; ")})`,
        role: o.role,
      }),
    };
  const hit = await cache.lookup<CriuMetadata>("criu", c.key!);
  const buildSuite = plan.buildSuite(c.provider);
  const uses =
    c.provider === "debian-binary"
      ? []
      : [
          input(
            cache,
            "chroots",
            chrootKey(buildSuite, criuBuildDeps(config.criu.link), config.debian),
            `${buildSuite} build chroot`,
          ),
        ];
  const fails = doctorFor(config, plan, c.provider, {
    kernelConfig: known.kernel?.config,
    kernelVersion: known.kernel?.ref.version ?? config.kernel.version,
  }).filter((f) => f.severity === "fail");
  const how =
    c.provider === "debian-binary" ? `download Debian's package` : `build in ${buildSuite} from ${c.from}`;
  const refusal =
    fails.length && !o.criuForce
      ? `; the compatibility check predicts ${fails.length} failure(s): the build stops unless --force`
      : "";
  return {
    stage: plannedStage("criu", c.key!, hit?.dir, {
      fresh: "build",
      detail: `${what}${hit ? "" : `: ${how}${refusal}`}`,
      role: o.role,
      uses,
    }),
    // A cached static build serves every guest suite: this run's is the plan's, as the CRIU stage says.
    known: hit
      ? { dir: hit.dir, metadata: { ...hit.metadata, guest_suite: plan.guestSuiteOf(c.provider) } }
      : undefined,
  };
}

export async function planAgentStage(
  config: PipelineConfig,
  o: PlanOptions = {},
): Promise<{ stage: PlannedStage; known: Known["agent"] }> {
  const cache = new ArtifactCache(config.cache_dir);
  const a = config.agent;
  if (!a.binary && !a.kata_src)
    return {
      stage: plannedStage("agent", null, undefined, {
        fresh: "skip",
        detail: "no agent configured (--agent, --kata-src): the image has none",
        role: o.role,
      }),
      known: null,
    };
  let key: string;
  let detail: string;
  const source = resolve(a.binary || a.kata_src);
  if (!existsSync(source))
    throw new UserError(
      `${a.binary ? "agent binary" : "kata source tree"} ${source} does not exist`,
      a.binary
        ? "pass a kata-agent binary with --agent FILE"
        : "pass a kata-containers tree with --kata-src DIR",
    );
  if (a.binary) {
    // As agent/stage.ts composes it.
    key = cacheKey({ prebuilt: await sha256File(source), recipe: AGENT_RECIPE_VERSION });
    detail = `prebuilt kata-agent ${source}`;
  } else {
    const id = kataSourceIdentity(source);
    key = id.key;
    detail = `kata-agent of Kata ${id.version} from ${source} (setsid: ${id.state})`;
  }
  const hit = await cache.lookup<{ agent: { sha256: string } }>("agent", key);
  return {
    stage: plannedStage("agent", key, hit?.dir, {
      fresh: "build",
      detail: `${detail}${hit ? "" : a.binary ? ": copy it into the cache" : ": patch a copy and build it"}`,
      role: o.role,
    }),
    known: hit ? { sha256: hit.metadata.agent.sha256 } : undefined,
  };
}

export async function planImageStage(
  config: PipelineConfig,
  known: Known,
  o: PlanOptions = {},
): Promise<{ stage: PlannedStage; known?: ImageResult }> {
  const cache = new ArtifactCache(config.cache_dir);
  const criu = known.criu?.metadata;
  const existing = config.image.base ? resolve(config.image.base) : undefined;
  const suite = criu?.guest_suite ?? known.criuPlan?.guestSuite ?? "?";
  const version = criu?.version ?? known.criuPlan?.entry.version ?? "?";
  const more = o.moreCriu ?? [];
  const label = `${existing ? `CRIU ${version} added to a copy of ${existing}` : `fresh ${suite} image with CRIU ${version}`}${more.length ? ` and ${more.map((m) => m.metadata.version).join(", ")}` : ""}${config.agent.binary || config.agent.kata_src ? " and the kata-agent" : ""}`;
  // A static CRIU adds no runtime packages; a dynamic one's are known once it is built.
  const runtime = criu?.runtime_packages ?? (config.criu.link === "static" ? [] : undefined);
  const uses =
    existing || !runtime
      ? []
      : [
          input(
            cache,
            "chroots",
            chrootKey(suite, guestPackages(runtime, config.image.extra_packages), config.debian),
            `${suite} guest rootfs`,
          ),
        ];
  const moreBuilt = more.every((m) => m.metadata);
  if (!criu || known.agent === undefined || !moreBuilt) {
    const missing = [!criu && "CRIU", known.agent === undefined && "the agent"].filter((x): x is string =>
      Boolean(x),
    );
    return {
      stage: plannedStage("image", null, undefined, {
        fresh: "build",
        detail: `${label}: the key is known once ${builtYet(missing)}`,
        role: o.role,
        uses,
      }),
    };
  }
  const key = await imageKeyOf(config, criu, known.agent, existing, more);
  const hit = await cache.lookup<ImageMetadata>("image", key);
  return {
    stage: plannedStage("image", key, hit?.dir, {
      fresh: "build",
      detail: `${label}${hit ? "" : ": make the disk, inject and read back"}`,
      role: o.role,
      uses,
    }),
    known: hit ? imageResultOf(config, hit.dir, hit.metadata) : undefined,
  };
}

/** The image's key from what the image stage reads (imageKey of image/stage.ts). */
async function imageKeyOf(
  config: PipelineConfig,
  criu: CriuMetadata,
  agent: { sha256: string } | null,
  existing: string | undefined,
  more: KnownCriu[],
): Promise<string> {
  const baseId = existing
    ? { existing: await sha256File(existing) }
    : {
        fresh: criu.guest_suite,
        packages: guestPackages(criu.runtime_packages, config.image.extra_packages),
        mirror: config.debian.mirror,
        bootstrap: config.debian.bootstrap,
      };
  const helpers = [...(await helperSources()), ...(await helperHeaders())].map(
    (h) => `${h.name}:${h.sha256}`,
  );
  const label = (m: CriuMetadata) => [m.version, ...m.patches.map((p) => p.name)].join("+");
  return imageKey({
    base: baseId,
    criuSha: criu.criu.sha256,
    agentSha: agent?.sha256 ?? null,
    runner: await runnerFiles(),
    helpers,
    freeMiB: config.image.free_mib,
    ...(more.length
      ? { moreCriu: [criu, ...more.map((m) => m.metadata)].map((m) => `${label(m)}:${m.criu.sha256}`) }
      : {}),
  });
}

function imageResultOf(config: PipelineConfig, dir: string, metadata: ImageMetadata): ImageResult {
  const manifestFile = join(dir, "manifest.json");
  return {
    dir,
    image: join(dir, "disk.img"),
    link: join(config.cache_dir, `${config.image.name}.img`),
    cached: true,
    metadata,
    manifest: existsSync(manifestFile)
      ? (JSON.parse(readFileSync(manifestFile, "utf8")) as GuestManifest)
      : ({} as GuestManifest),
  };
}

export async function planBootStage(
  config: PipelineConfig,
  known: Known,
  o: PlanOptions = {},
): Promise<{ stage: PlannedStage; known?: RunResults }> {
  const cache = new ArtifactCache(config.cache_dir);
  const { kernel, image, criu } = known;
  const version = criu?.metadata.version ?? known.criuPlan?.entry.version ?? "?";
  const scenarios = loadScenarios(config.boot.scenarios);
  const label = `boot the kernel with CRIU ${version} under QEMU (accel ${config.boot.accel}, ${config.boot.cpus} vCPUs, ${config.boot.memory_mib} MiB)`;
  if (!kernel || !image || !criu) {
    const missing = [!kernel && "the kernel", !image && "the image", !criu && "CRIU"].filter(
      (x): x is string => Boolean(x),
    );
    return {
      stage: plannedStage("boot", null, undefined, {
        fresh: "run",
        detail: `${label}: the key is known once ${builtYet(missing)}`,
        role: o.role,
      }),
    };
  }
  const { bus, blockers } = bootPlan(kernel.config);
  if (blockers.length)
    return {
      stage: plannedStage("boot", null, undefined, {
        fresh: "skip",
        detail: `the kernel cannot boot the image: ${blockers.join("; ")}`,
        role: o.role,
      }),
    };
  const { key, input } = runIdentity(config, {
    kernelKey: kernel.ref.key,
    requested: kernel.ref.requested,
    image,
    criu: criu.metadata,
    bus,
    transfer: o.transfer,
    conf: o.bootConf,
    only: o.only,
  });
  const hit = await cache.lookup<RunResults>("runs", key);
  const complete = hit && hit.metadata.status === "COMPLETE" && !o.force ? hit : undefined;
  const applicable = input.scenarios.length;
  return {
    stage: plannedStage("boot", key, complete?.dir, {
      fresh: "run",
      detail: `${label}: criu check and ${applicable} of ${scenarios.length} scenarios${hit && !complete ? (o.force ? " (a complete run is cached: --force runs it again)" : ` (the cached run is ${hit.metadata.status}: run again)`) : ""}`,
      role: o.role,
    }),
    known: complete?.metadata,
  };
}

/**
 * The plan of `targets` and every stage they need, in the order the driver runs them: each
 * stage's plan reads what the earlier ones found cached.
 */
export async function planStages(
  command: string,
  config: PipelineConfig,
  targets: StageName[],
  o: PlanOptions = {},
): Promise<DryRun> {
  const known: Known = {};
  const stages: PlannedStage[] = [];
  const order = stagesFor(targets);
  if (order.includes("criu")) known.criuPlan = resolveAndPlanCriu(config, { strict: true });
  for (const s of order) {
    if (s === "kernel") {
      const k = await planKernelStage(config, o);
      known.kernel = k.known;
      stages.push(k.stage);
    } else if (s === "criu") {
      const c = await planCriuStage(config, known.criuPlan!, known, o);
      known.criu = c.known;
      stages.push(c.stage);
    } else if (s === "agent") {
      const a = await planAgentStage(config, o);
      known.agent = a.known;
      stages.push(a.stage);
    } else if (s === "image") {
      const i = await planImageStage(config, known, o);
      known.image = i.known;
      stages.push(i.stage);
    } else stages.push((await planBootStage(config, known, o)).stage);
  }
  return { command, cache_dir: config.cache_dir, stages, notes: [] };
}

/** The plan as text: one line per stage, then what the command would build. */
export function formatDryRun(d: DryRun): string {
  const name = (s: PlannedStage) => `${s.stage}${s.role ? ` (${s.role})` : ""}`;
  const width = Math.max(...d.stages.map((s) => name(s).length));
  const lines = [`${d.command} --dry-run: the plan (cache ${d.cache_dir}); nothing is built`];
  for (const s of d.stages) {
    lines.push(`  ${name(s).padEnd(width)}  ${s.would.padEnd(6)} ${s.key ?? "-".padEnd(16)}  ${s.detail}`);
    for (const u of s.uses)
      lines.push(
        `  ${"".padEnd(width)}  ${"".padEnd(6)} ${"".padEnd(16)}  uses ${u.what}: ${u.cached ? "cached" : "to make"} (${u.artifact}/${u.key ?? "?"})`,
      );
  }
  for (const n of d.notes) lines.push(`note: ${n}`);
  const by = (w: Would) => d.stages.filter((s) => s.would === w).map(name);
  const build = by("build");
  const runs = by("run");
  lines.push(
    build.length || runs.length
      ? `would ${[build.length && `build: ${build.join(", ")}`, runs.length && `run: ${runs.join(", ")}`].filter(Boolean).join("; ")}`
      : "every stage is cached: nothing to build or run",
  );
  return lines.join("\n");
}
