/**
 * The CRIU stage: resolve -> patches -> compatibility check -> provider chain (a cached
 * artifact of any provider first) -> build in a Debian chroot or extract Debian's binary ->
 * images/criu/<key>/{criu, build.log, metadata.json}.
 */
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ArtifactCache } from "../lib/cache.js";
import { ensureChroot } from "../lib/chroot.js";
import { criuVersionIn, ensureGuestRootfs } from "../image/rootfs.js";
import type { CriuProvider, PipelineConfig } from "../lib/config.js";
import { NotAvailableError } from "../lib/download.js";
import { UserError } from "../lib/errors.js";
import { cacheKey, sha256File } from "../lib/hash.js";
import { requireHostTools } from "../lib/host-tools.js";
import { runSteps } from "../lib/progress.js";
import { loadYamlFile } from "../lib/yaml-file.js";
import { CRIU_CATALOG_FILE } from "../lib/paths.js";
import { buildCriuInChroot, criuBuildDeps } from "./build-recipe.js";
import { loadCriuCatalog, resolveCriuVersion, suitesFrom, type CriuCatalog, type CriuVersionEntry } from "./catalog.js";
import { diagnose, formatFindings, type Finding } from "./doctor.js";
import { applyPatches, loadPatchCatalog, selectPatches, type SelectedPatch } from "./patches.js";
import { obtainCriuBinary, obtainCriuSource, providerIdentity, type CriuOrigin, type ProviderContext } from "./sources.js";
import { cpus } from "node:os";

/** Bump when the build recipe changes its output. */
export const CRIU_RECIPE_VERSION = 1;

export interface CriuMetadata {
  version: string;
  provider: CriuProvider;
  from: string;
  identity: string;
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

export interface CriuPlan {
  entry: CriuVersionEntry;
  catalog: CriuCatalog;
  guestSuite: string;
  patches: SelectedPatch[];
  candidates: { provider: CriuProvider; key?: string; identity?: string; skip?: string }[];
  buildSuite: (provider: CriuProvider) => string;
}

export function kernelOptionsFromCatalog(): { required: Record<string, string>; optional: Record<string, string> } {
  return (loadYamlFile(CRIU_CATALOG_FILE).value as { kernel_options: { required: Record<string, string>; optional: Record<string, string> } }).kernel_options;
}

/** Pure planning: version, patches, and for each provider its cache key or why it is skipped. */
export function planCriu(config: PipelineConfig, ctx: ProviderContext, catalog = loadCriuCatalog()): CriuPlan {
  const entry = resolveCriuVersion(config.criu.version, catalog);
  const guestSuite = config.criu.guest_suite || entry.min_suite;
  suitesFrom(catalog, guestSuite); // validates the suite name
  const patches = selectPatches(config.criu.patches, entry.version, loadPatchCatalog());
  const buildSuite = (provider: CriuProvider) =>
    provider === "debian-binary" ? entry.binary!.suite : config.criu.link === "static" ? config.criu.static_build_suite : guestSuite;
  const candidates = config.criu.providers.map((provider) => {
    if (provider === "debian-binary" && patches.length) return { provider, skip: "a binary package cannot be patched" };
    const identity = providerIdentity(provider, entry, ctx);
    if (!identity) return { provider, skip: provider === "upstream" && entry.upstream ? "no sha256 pinned for the upstream tarball" : `no ${provider} source for CRIU ${entry.version}` };
    const key = cacheKey({
      version: entry.version,
      provider,
      identity,
      patches: patches.map((p) => [p.name, p.sha256]),
      link: provider === "debian-binary" ? "debian-binary" : config.criu.link,
      buildSuite: buildSuite(provider),
      recipe: CRIU_RECIPE_VERSION,
    });
    return { provider, key, identity };
  });
  return { entry, catalog, guestSuite, patches, candidates, buildSuite };
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
}

export function doctorFor(config: PipelineConfig, plan: CriuPlan, provider: CriuProvider | undefined, opts: CriuStageOptions): Finding[] {
  const binarySuite = provider === "debian-binary" ? plan.entry.binary?.suite : config.criu.link === "dynamic" ? plan.guestSuite : undefined;
  return diagnose({
    criu: plan.entry,
    catalog: plan.catalog,
    kernelConfig: opts.kernelConfig,
    kernelVersion: opts.kernelVersion,
    guestSuite: plan.guestSuite,
    binarySuite,
    withNftables: provider === "debian-binary" || config.criu.link === "dynamic",
    patches: plan.patches.map((p) => p.name),
    kernelOptions: kernelOptionsFromCatalog(),
  });
}

export async function runCriuStage(config: PipelineConfig, opts: CriuStageOptions = {}): Promise<CriuStageResult> {
  const cache = new ArtifactCache(config.cache_dir);
  const state = { result: undefined as CriuStageResult | undefined, attempts: [] as string[] };
  const pctx: ProviderContext = { cacheRoot: cache.root, mirror: config.debian.mirror, localSource: config.criu.local_source, log: () => undefined };
  const plan = planCriu(config, pctx);
  const mode = config.criu.providers[0] === "debian-binary" ? "Debian binary" : config.criu.link;
  const label = `CRIU ${plan.entry.version} (${mode}${plan.patches.length ? `, patches: ${plan.patches.map((p) => p.name).join(", ")}` : ""}) for ${plan.guestSuite}`;

  await runSteps(state, [
    {
      title: `Resolve ${label}`,
      run: async (s) => {
        for (const c of plan.candidates) {
          if (!c.key) continue;
          const hit = await cache.lookup<CriuMetadata>("criu", c.key);
          if (hit) {
            s.result = { dir: hit.dir, cached: true, metadata: hit.metadata, findings: doctorFor(config, plan, c.provider, opts), attempts: [] };
            return;
          }
        }
      },
    },
    {
      title: "Obtain and build",
      skip: (s) => (s.result ? "cached" : false),
      run: async (s, log) => {
        requireHostTools(["debootstrap", "tar", "xz", "patch", "gpgv", "dpkg-deb", "rsync"], [], "the CRIU stage");
        pctx.log = log;
        for (const c of plan.candidates) {
          if (!c.key) {
            s.attempts.push(`${c.provider}: ${c.skip}`);
            continue;
          }
          const findings = doctorFor(config, plan, c.provider, opts);
          if (findings.some((f) => f.severity === "fail") && !opts.force)
            throw new UserError(formatFindings(findings, `${label} via ${c.provider}`), "fix what the check names, or pass --force to build anyway", 1);
          try {
            const art = await cache.getOrBuild<CriuMetadata>("criu", c.key, (tmp) =>
              c.provider === "debian-binary" ? extractBinary(config, plan, pctx, tmp) : buildFromSource(config, plan, c.provider as Exclude<CriuProvider, "debian-binary">, pctx, tmp, log),
            );
            s.result = { dir: art.dir, cached: art.cached, metadata: art.metadata, findings, attempts: s.attempts };
            return;
          } catch (err) {
            if (!(err instanceof NotAvailableError)) throw err;
            s.attempts.push(`${c.provider}: ${err.message}`);
            log(`${c.provider}: ${err.message}`);
          }
        }
        throw new UserError(
          `no provider could supply ${label}:\n${s.attempts.map((a) => `  - ${a}`).join("\n")}`,
          "set criu.local_source to a CRIU checkout, pin an upstream sha256, or pick a version Debian packages (3.17.1, 4.1.1, 4.2.1)",
        );
      },
    },
  ]);
  return { ...state.result!, attempts: state.attempts };
}

async function buildFromSource(
  config: PipelineConfig,
  plan: CriuPlan,
  provider: Exclude<CriuProvider, "debian-binary">,
  pctx: ProviderContext,
  tmp: string,
  log: (line: string) => void,
): Promise<CriuMetadata> {
  const work = join(tmp, "work");
  await mkdir(work, { recursive: true });
  const { tree, origin } = await obtainCriuSource(provider, plan.entry, pctx, work);
  if (plan.patches.length) {
    log(`applying ${plan.patches.map((p) => p.name).join(", ")}`);
    await applyPatches(tree, plan.patches, plan.entry.version);
  }
  const buildSuite = plan.buildSuite(provider);
  log(`preparing the ${buildSuite} build chroot`);
  const cache = new ArtifactCache(config.cache_dir);
  const chroot = await ensureChroot({ cache, suite: buildSuite, packages: criuBuildDeps(config.criu.link), mirror: config.debian.mirror, log });
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

async function extractBinary(config: PipelineConfig, plan: CriuPlan, pctx: ProviderContext, tmp: string): Promise<CriuMetadata> {
  const bin = await obtainCriuBinary(plan.entry, pctx, tmp);
  await copyFile(bin.binary, join(tmp, "criu"));
  await chmod(join(tmp, "criu"), 0o755);
  await rm(join(tmp, "extract"), { recursive: true, force: true });
  const suite = plan.entry.binary!.suite;
  // `criu --version` where it will run: the guest rootfs of its suite with its runtime
  // packages (the image stage reuses this very chroot).
  const cache = new ArtifactCache(config.cache_dir);
  const rootfs = await ensureGuestRootfs({ cache, suite, runtimePackages: bin.runtimePackages, mirror: config.debian.mirror, log: pctx.log });
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
  rest: Pick<CriuMetadata, "link" | "build_suite" | "runs_in" | "build_seconds" | "version_output" | "runtime_packages" | "needed_libs">,
): Promise<CriuMetadata> {
  const criu = join(tmp, "criu");
  if (!existsSync(criu)) throw new Error("no criu binary produced");
  return {
    version: plan.entry.version,
    provider: origin.provider,
    from: origin.from,
    identity: origin.identity,
    patches: plan.patches.map((p) => ({ name: p.name, sha256: p.sha256 })),
    debian_patches: origin.debianPatches ?? [],
    guest_suite: plan.guestSuite,
    ...rest,
    criu: { bytes: (await stat(criu)).size, sha256: await sha256File(criu) },
    created: new Date().toISOString(),
  };
}
