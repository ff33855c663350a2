/**
 * The CRIU stage: resolve -> patches -> compatibility check -> provider chain (a cached
 * artifact of any provider first) -> build in a Debian chroot or extract Debian's binary ->
 * images/criu/<key>/{criu, build.log, metadata.json}.
 */
import { repoData, type RepoData } from "../data/repo-data.js";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { fromPhase, type PhaseLog } from "../lib/phases.js";
import { ArtifactCache } from "../lib/cache.js";
import { ensureChroot } from "../lib/chroot.js";
import { criuVersionIn, ensureGuestRootfs } from "../lib/rootfs.js";
import type { CriuProvider, PipelineConfig } from "../lib/config.js";
import { NotAvailableError } from "../lib/download.js";
import { UserError } from "../lib/errors.js";
import { cacheKey, sha256File } from "../lib/hash.js";
import { requireHostTools } from "../lib/host-tools.js";
import { runSteps } from "../lib/progress.js";
import { buildCriuInChroot, criuBuildDeps } from "./build-recipe.js";
import type { Fragment } from "../data/fragments.js";
import {
  entryForSourceVersion,
  guestSuiteFor,
  suitesFrom,
  type CriuCatalog,
  type CriuVersionEntry,
} from "../data/criu-catalog.js";
import { diagnose, formatFindings, type Finding } from "../data/doctor.js";
import { criuBuildConditions } from "../data/requirement-check.js";
import { applyPatches } from "./patches.js";
import { selectPatches, type PatchSpec, type SelectedPatch } from "../data/criu-patches.js";
import {
  obtainCriuBinary,
  obtainCriuSource,
  resolveCriuSource,
  type CriuOrigin,
  type ProviderContext,
  type ResolvedCriu,
  type ResolvedProvider,
  type SourceProvider,
} from "./sources.js";
import { cpus } from "node:os";

/** Bump when the build recipe changes its output. */
export const CRIU_RECIPE_VERSION = 2;

export interface CriuMetadata {
  version: string;
  provider: CriuProvider;
  from: string;
  /** The source content: a tarball's sha256, a tree hash, a git commit (+ uncommitted changes). */
  identity: string;
  /** The git commit built (git provider, or a local git checkout). */
  commit?: string;
  patches: { name: string; sha256: string }[];
  debian_patches: string[];
  link: "static" | "dynamic" | "debian-binary";
  build_suite: string;
  guest_suite: string;
  runs_in: string[];
  build_seconds: number | null;
  version_output: string;
  runtime_packages: string[];
  needed_libs: string[];
  criu: { bytes: number; sha256: string };
  created: string;
}

export interface CriuCandidate extends ResolvedProvider {
  /** The artifact cache key: the content, patches and recipe, never the provider. */
  key?: string;
}

export interface CriuPlan {
  entry: CriuVersionEntry;
  catalog: CriuCatalog;
  resolved: ResolvedCriu;
  /** The guest suite of the serving candidate (of a source build when none serves). */
  guestSuite: string;
  patches: SelectedPatch[];
  candidates: CriuCandidate[];
  buildSuite: (provider: CriuProvider) => string;
  /** A provider's guest suite: Debian's binary package is dynamic whatever criu.link says. */
  guestSuiteOf: (provider: CriuProvider) => string;
}

/**
 * The candidate that serves the plan: the first provider that can (it has a key). A later one
 * may deliver other content (a release tarball instead of the user's tree), so never "any".
 */
export function servingCandidate(plan: Pick<CriuPlan, "candidates">): CriuCandidate | undefined {
  return plan.candidates.find((c) => c.key);
}

/** Raised when no provider can serve a version: the matrix lists such a cell as SKIPPED. */
export class NoCriuSourceError extends UserError {}

export const SOURCE_FIX =
  "give a source: --criu-mirror DIR (a directory of release tarballs), --local-source DIR (a tree, git checkout or tarball), or --git URL --ref REF";

/** Resolve (reads the disk; git may fetch) and plan, for callers that want both. */
export function resolveAndPlanCriu(
  config: PipelineConfig,
  opts: { strict: boolean; memo?: Map<string, unknown> },
  data: Pick<RepoData, "criu" | "criuPatches"> = repoData(),
): CriuPlan {
  const resolved = resolveCriuSource(
    config,
    data.criu,
    { cacheRoot: config.cache_dir, strict: opts.strict },
    opts.memo,
  );
  return planCriu(config, resolved, data.criu, data.criuPatches);
}

/** Pure planning: patches, and for each provider its cache key or why it is skipped. */
export function planCriu(
  config: PipelineConfig,
  resolved: ResolvedCriu,
  catalog: CriuCatalog,
  patchCatalog: Map<string, PatchSpec>,
): CriuPlan {
  const entry = resolved.entry;
  const guestSuiteOf = (provider: CriuProvider) =>
    guestSuiteFor(
      entry,
      catalog,
      provider === "debian-binary" ? "debian-binary" : config.criu.link,
      config.criu,
    );
  const patches = selectPatches(config.criu.patches, entry.version, patchCatalog);
  const buildSuite = (provider: CriuProvider) =>
    provider === "debian-binary"
      ? entry.binary!.suite
      : config.criu.link === "static"
        ? config.criu.static_build_suite
        : guestSuiteOf(provider);
  const candidates = resolved.providers.map((r): CriuCandidate => {
    if (!r.identity) return r;
    if (r.provider === "debian-binary" && patches.length)
      return { ...r, identity: undefined, skip: "a binary package cannot be patched" };
    const fromSource = r.provider !== "debian-binary";
    const key = cacheKey({
      version: entry.version,
      source: r.identity,
      debianPatches:
        fromSource && resolved.debianPatches
          ? [resolved.debianPatches.archive, resolved.debianPatches.sha256, resolved.debianPatches.names]
          : [],
      patches: patches.map((p) => [p.name, p.sha256]),
      link: fromSource ? config.criu.link : "debian-binary",
      // The suite it is built in, never the guest suite: a static build (and Debian's
      // binary) is the same file in every guest suite; a dynamic one is built in its guest's.
      buildSuite: buildSuite(r.provider),
      recipe: CRIU_RECIPE_VERSION,
    });
    return { ...r, key };
  });
  const serving = servingCandidate({ candidates });
  const guestSuite = guestSuiteOf(serving?.provider ?? "upstream");
  return { entry, catalog, resolved, guestSuite, patches, candidates, buildSuite, guestSuiteOf };
}

/** The plan in words: the version and where it came from, then each provider's answer. */
export function describeCriuPlan(plan: CriuPlan, cached: (key: string) => boolean): string[] {
  const r = plan.resolved;
  const lines = [
    `CRIU ${plan.entry.version}${r.versionFrom === "config" ? "" : ` (the version of the ${r.versionFrom} source)`}${plan.entry.facts_from ? `; catalog facts of ${plan.entry.facts_from}` : ""}`,
  ];
  if (r.git) lines.push(`git: ${r.git.url} ${r.git.ref} -> ${r.git.commit}`);
  if (r.local)
    lines.push(
      `local source: ${r.local.path} (${r.local.kind}${r.local.commit ? ` at ${r.local.commit.slice(0, 12)}${r.local.dirty ? " with uncommitted changes" : ""}` : ""})`,
    );
  if (r.debianPatches)
    lines.push(
      `source builds apply Debian's ${r.debianPatches.names.join(", ")} from ${r.debianPatches.archive} (from the ${r.debianPatches.suite} mirror at build time; without it no source provider can serve this version)`,
    );
  const serving = servingCandidate(plan);
  lines.push(
    `served by: ${serving ? `${serving.provider} (${serving.from})` : `nothing here: ${SOURCE_FIX}`}`,
  );
  lines.push("providers, in order:");
  for (const c of plan.candidates) {
    const state = c.key
      ? cached(c.key)
        ? `cached (key ${c.key}, ${c.identity})`
        : `would ${c.provider === "debian-binary" ? "download" : `build in ${plan.buildSuite(c.provider)} from`} ${c.from} (key ${c.key})`
      : `skipped: ${c.skip}`;
    lines.push(`  ${c.provider.padEnd(14)} ${state}`);
  }
  return lines;
}

/**
 * The compatibility check of a built CRIU against a kernel: a matrix shares one CRIU build
 * across kernels, so each cell asks with its own kernel's config and version.
 */
export function doctorForBuilt(
  config: PipelineConfig,
  m: CriuMetadata,
  kernel: Pick<CriuStageOptions, "kernelConfig" | "kernelVersion">,
): Finding[] {
  const catalog = repoData().criu;
  return doctorFor(
    config,
    {
      entry: entryForSourceVersion(m.version, catalog),
      catalog,
      guestSuite: m.guest_suite,
      patches: m.patches,
    },
    m.provider,
    kernel,
  );
}

export interface CriuStageResult {
  dir: string;
  cached: boolean;
  metadata: CriuMetadata;
  findings: Finding[];
  attempts: string[];
}

export interface CriuStageOptions {
  kernelConfig?: Map<string, string>;
  kernelVersion?: string;
  /** Build even if the compatibility check finds something that will fail. */
  force?: boolean;
  /** A single command (default): a given source of another version is an error, not a skip. */
  strict?: boolean;
  /** An already resolved plan (the matrix resolves once per cell). */
  plan?: CriuPlan;
}

/** What the compatibility check needs of a CRIU plan (a built CRIU's metadata gives the same). */
export type DoctorPlan = Pick<CriuPlan, "entry" | "catalog" | "guestSuite"> & { patches: { name: string }[] };

/** The fragments a fix points to: the default set's, where the pipeline sets CRIU's options. */
function defaultFragments(config: PipelineConfig, data: RepoData): Fragment[] {
  const names = config.fragment_sets.default ?? [...data.fragments.keys()];
  return names.flatMap((n) => data.fragments.get(n) ?? []);
}

export function doctorFor(
  config: PipelineConfig,
  plan: DoctorPlan,
  provider: CriuProvider | undefined,
  opts: CriuStageOptions,
): Finding[] {
  const binarySuite =
    provider === "debian-binary"
      ? plan.entry.binary?.suite
      : config.criu.link === "dynamic"
        ? plan.guestSuite
        : undefined;
  const data = repoData();
  return diagnose({
    criu: plan.entry,
    catalog: plan.catalog,
    requirements: data.kernelRequirements,
    kernelConfig: opts.kernelConfig,
    kernelVersion: opts.kernelVersion,
    guestSuite: plan.guestSuite,
    binarySuite,
    criuBuild: criuBuildConditions({
      link: provider === "debian-binary" ? "debian-binary" : config.criu.link,
    }),
    patches: plan.patches.map((p) => p.name),
    fragments: defaultFragments(config, data),
  });
}

/** What one CRIU stage reads in each phase. */
interface CriuContext {
  config: PipelineConfig;
  opts: CriuStageOptions;
  cache: ArtifactCache;
  plan: CriuPlan;
  label: string;
}

/** The plan as a provider sees it: a fallback to Debian's binary has that binary's guest suite. */
function planFor(k: CriuContext, c: CriuCandidate): CriuPlan {
  return { ...k.plan, guestSuite: k.plan.guestSuiteOf(c.provider) };
}

/**
 * A cached static build (or Debian binary) serves every guest suite its key does not name: its
 * metadata says the suite of the run that built it, the result this run's.
 */
function thisRun(k: CriuContext, m: CriuMetadata, c: CriuCandidate): CriuMetadata {
  return { ...m, guest_suite: planFor(k, c).guestSuite };
}

/** What the phases find: the artifact, and why each provider before the one that served could not. */
interface CriuRun {
  result?: Omit<CriuStageResult, "attempts">;
  attempts: string[];
}

export async function runCriuStage(
  config: PipelineConfig,
  opts: CriuStageOptions = {},
): Promise<CriuStageResult> {
  const plan = opts.plan ?? resolveAndPlanCriu(config, { strict: opts.strict ?? true });
  const mode = servingCandidate(plan)?.provider === "debian-binary" ? "Debian binary" : config.criu.link;
  const k: CriuContext = {
    config,
    opts,
    cache: new ArtifactCache(config.cache_dir),
    plan,
    label: `CRIU ${plan.entry.version} (${mode}${plan.patches.length ? `, patches: ${plan.patches.map((p) => p.name).join(", ")}` : ""}) for ${plan.guestSuite}`,
  };
  const state: CriuRun = { attempts: [] };
  await runSteps(
    state,
    [
      {
        name: "resolve",
        title: `Resolve ${k.label}`,
        run: async (s) => void (s.result = await servedFromCache(k)),
      },
      {
        name: "build",
        title: "Obtain and build",
        skip: (s) => (s.result ? "cached" : false),
        run: async (s, log) => void (s.result = await firstProviderThatServes(k, s.attempts, log)),
      },
    ],
    { stage: "criu" },
  );
  return { ...fromPhase(state.result, "the CRIU artifact"), attempts: state.attempts };
}

/**
 * The cached artifact of the first provider that can serve. Only that one: a later one may
 * deliver other content (a release tarball instead of the user's tree). The same content from
 * any provider is the same key, so a mirror's build is also upstream's.
 */
async function servedFromCache(k: CriuContext): Promise<CriuRun["result"]> {
  const c = servingCandidate(k.plan);
  const hit = c && (await k.cache.lookup<CriuMetadata>("criu", c.key!));
  if (!c || !hit) return undefined;
  return {
    dir: hit.dir,
    cached: true,
    metadata: thisRun(k, hit.metadata, c),
    findings: doctorFor(k.config, planFor(k, c), c.provider, k.opts),
  };
}

/**
 * The providers in order: the first whose artifact is cached or builds. One that cannot supply
 * the source is noted in `attempts` and the next is tried; a source the user named (a tree, a
 * git URL) never falls back to another provider.
 */
async function firstProviderThatServes(
  k: CriuContext,
  attempts: string[],
  log: PhaseLog,
): Promise<CriuRun["result"]> {
  const { config, plan, opts, cache, label } = k;
  requireHostTools(
    [config.debian.bootstrap, "tar", "xz", "patch", "gpgv", "dpkg-deb", "rsync"],
    [],
    "the CRIU stage",
  );
  const pctx: ProviderContext = { cacheRoot: cache.root, mirror: config.debian.mirror, log };
  for (const c of plan.candidates) {
    if (!c.key) {
      attempts.push(`${c.provider}: ${c.skip}`);
      continue;
    }
    const cPlan = planFor(k, c);
    const findings = doctorFor(config, cPlan, c.provider, opts);
    // Reached after an earlier provider could not serve: its own build may be cached.
    const hit = await cache.lookup<CriuMetadata>("criu", c.key);
    if (hit) return { dir: hit.dir, cached: true, metadata: thisRun(k, hit.metadata, c), findings };
    if (findings.some((f) => f.severity === "fail") && !opts.force)
      throw new UserError(
        formatFindings(findings, `${label} via ${c.provider}`),
        "fix what the check names, or pass --force to build anyway",
        1,
      );
    try {
      const art = await cache.getOrBuild<CriuMetadata>("criu", c.key, (tmp) =>
        c.provider === "debian-binary"
          ? extractBinary(config, cPlan, pctx, tmp)
          : buildFromSource(config, cPlan, c as CriuCandidate & { provider: SourceProvider }, pctx, tmp, log),
      );
      return { dir: art.dir, cached: art.cached, metadata: thisRun(k, art.metadata, c), findings };
    } catch (err) {
      if (!(err instanceof NotAvailableError) || c.provider === "local-source" || c.provider === "git")
        throw err;
      attempts.push(`${c.provider}: ${err.message}`);
      log(`${c.provider}: ${err.message}`);
    }
  }
  throw new NoCriuSourceError(
    `no provider could supply ${label}:\n${attempts.map((a) => `  - ${a}`).join("\n")}`,
    SOURCE_FIX,
  );
}

async function buildFromSource(
  config: PipelineConfig,
  plan: CriuPlan,
  candidate: CriuCandidate & { provider: SourceProvider },
  pctx: ProviderContext,
  tmp: string,
  log: (line: string) => void,
): Promise<CriuMetadata> {
  const work = join(tmp, "work");
  await mkdir(work, { recursive: true });
  const provider = candidate.provider;
  const { tree, origin } = await obtainCriuSource(
    candidate,
    plan.resolved,
    { ...pctx, log },
    work,
    config.criu.upstream_url_base,
  );
  if (plan.patches.length) {
    log(`applying ${plan.patches.map((p) => p.name).join(", ")}`);
    await applyPatches(tree, plan.patches, plan.entry.version);
  }
  const buildSuite = plan.buildSuite(provider);
  log(`preparing the ${buildSuite} build chroot`);
  const cache = new ArtifactCache(config.cache_dir);
  const chroot = await ensureChroot({
    cache,
    suite: buildSuite,
    packages: criuBuildDeps(config.criu.link),
    debian: config.debian,
    log,
  });
  const logFile = join(tmp, "build.log");
  const built = await buildCriuInChroot({
    chrootDir: chroot.dir,
    sourceDir: tree,
    linkMode: config.criu.link,
    version: plan.entry.version,
    jobs: config.criu.jobs > 0 ? config.criu.jobs : cpus().length,
    logFile,
    timeoutMs: config.criu.build_timeout_minutes * 60_000,
    onLine: log,
  });
  await copyFile(built.binary, join(tmp, "criu"));
  await chmod(join(tmp, "criu"), 0o755);
  await rm(work, { recursive: true, force: true });
  const runsIn = config.criu.link === "static" ? suitesFrom(plan.catalog, buildSuite) : [buildSuite];
  return metadataFor(plan, origin, tmp, {
    link: config.criu.link,
    build_suite: buildSuite,
    runs_in: runsIn,
    build_seconds: built.seconds,
    version_output: built.versionOutput,
    runtime_packages: built.runtimePackages,
    needed_libs: built.neededLibs,
  });
}

async function extractBinary(
  config: PipelineConfig,
  plan: CriuPlan,
  pctx: ProviderContext,
  tmp: string,
): Promise<CriuMetadata> {
  const bin = await obtainCriuBinary(plan.entry, pctx, tmp);
  await copyFile(bin.binary, join(tmp, "criu"));
  await chmod(join(tmp, "criu"), 0o755);
  await rm(join(tmp, "extract"), { recursive: true, force: true });
  const suite = plan.entry.binary!.suite;
  // `criu --version` where it will run: the guest rootfs of its suite with its runtime
  // packages (the image stage reuses this very chroot).
  const cache = new ArtifactCache(config.cache_dir);
  const rootfs = await ensureGuestRootfs({
    cache,
    suite,
    runtimePackages: bin.runtimePackages,
    debian: config.debian,
    log: pctx.log,
  });
  const versionOutput = await criuVersionIn(rootfs.dir, join(tmp, "criu"));
  return metadataFor(plan, bin.origin, tmp, {
    link: "debian-binary",
    build_suite: suite,
    // Linked against its suite's shared libraries: proven only there.
    runs_in: [suite],
    build_seconds: null,
    version_output: versionOutput,
    runtime_packages: bin.runtimePackages,
    needed_libs: [],
  });
}

async function metadataFor(
  plan: CriuPlan,
  origin: CriuOrigin,
  tmp: string,
  rest: Pick<
    CriuMetadata,
    | "link"
    | "build_suite"
    | "runs_in"
    | "build_seconds"
    | "version_output"
    | "runtime_packages"
    | "needed_libs"
  >,
): Promise<CriuMetadata> {
  const criu = join(tmp, "criu");
  if (!existsSync(criu)) throw new Error("no criu binary produced");
  return {
    version: plan.entry.version,
    provider: origin.provider,
    from: origin.from,
    identity: origin.identity,
    ...(origin.commit ? { commit: origin.commit } : {}),
    patches: plan.patches.map((p) => ({ name: p.name, sha256: p.sha256 })),
    debian_patches: origin.debianPatches ?? [],
    guest_suite: plan.guestSuite,
    ...rest,
    criu: { bytes: (await stat(criu)).size, sha256: await sha256File(criu) },
    created: new Date().toISOString(),
  };
}
