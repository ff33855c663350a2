/**
 * The kernel stage as phases: source -> configure -> verify -> build -> (boot check), each
 * cached where it can be. Output: images/kernel/<key>/{vmlinuz,config,build.log,metadata.json}.
 */
import { readFileSync } from "node:fs";
import { copyFile, mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ArtifactCache, type Artifact } from "../lib/cache.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { run, tail } from "../lib/exec.js";
import { sha256, sha256File } from "../lib/hash.js";
import { findInPath, requireHostTools } from "../lib/host-tools.js";
import { fromPhase, phaseSeconds, type PhaseLog } from "../lib/phases.js";
import { runSteps, type Step } from "../lib/progress.js";
import { configureKernel, fragmentSummary, ARCH } from "./configure.js";
import {
  explainTrap,
  formatTrap,
  requestsExpert,
  trapSymbols,
  withoutExpert,
  type TrapEntry,
} from "./expert-trap.js";
import { resolveCriuVersion } from "../data/criu-catalog.js";
import { criuBuildConditions, type CriuFacts } from "../data/requirement-check.js";
import { writeAtomic } from "../lib/fs-atomic.js";
import { parseKernelKconfig, type KconfigTree } from "./kconfig.js";
import { kernelCacheKey, planKernel, resolveKernelInputs, type KernelPlan } from "./plan.js";
import { obtainKernelSource, type KernelSource } from "./sources.js";
import { formatVerifyReport, verifyConfig, type VerifyReport } from "./verify.js";
import { lockDir } from "../lib/dir-lock.js";
import { repoData } from "../data/repo-data.js";
import { parseDotConfig } from "../data/fragments.js";
import { CommandError } from "../lib/errors.js";
import { runDebianCloudKernel } from "./prebuilt.js";
import {
  failOnVerify,
  requestedValues,
  verifySummary,
  type KernelMetadata,
  type KernelStageOptions,
  type KernelStageResult,
} from "./result.js";
import { acceptedMisses } from "../data/allowlist.js";

export { failOnVerify, verifySummary, type KernelMetadata, type KernelStageOptions, type KernelStageResult };

const BUILD_TOOLS = ["make", "gcc", "ld", "flex", "bison", "bc", "perl", "tar", "xz"];
const BUILD_HEADERS = ["/usr/include/gelf.h", "/usr/include/openssl/ssl.h"];

async function toolchain(): Promise<string[]> {
  const first = async (argv: string[]) =>
    (await run(argv, { timeoutMs: 30_000 })).stdout.split("\n")[0].trim();
  return [await first(["gcc", "--version"]), await first(["ld", "--version"])];
}

async function ccacheStats(): Promise<{ hits: number; misses: number } | null> {
  if (!findInPath("ccache")) return null;
  const out = await run(["ccache", "--print-stats"], { timeoutMs: 30_000, allowFailure: true });
  if (out.exitCode !== 0) return null;
  const get = (k: string) => Number(new RegExp(`^${k}\\t(\\d+)`, "m").exec(out.stdout)?.[1] ?? 0);
  return { hits: get("direct_cache_hit") + get("preprocessed_cache_hit"), misses: get("cache_miss") };
}

/** What every phase of one kernel stage reads: the config, the caller's options, the plan. */
interface KernelContext {
  config: PipelineConfig;
  opts: KernelStageOptions;
  cache: ArtifactCache;
  plan: KernelPlan;
  label: string;
}

/** What the phases find and make, each field set by the phase named beside it. */
export interface KernelRun {
  readonly warnings: string[];
  readonly notes: string[];
  /** source */
  source?: KernelSource;
  tools?: string[];
  key?: string;
  /** source (a cache hit) or build */
  kernel?: Artifact<KernelMetadata> & { cached: boolean };
  /** configure: the build directory, its log, the final .config, the EXPERT trap */
  build?: { outDir: string; logFile: string };
  /** The build directory's lock (another cr-guest on the same cache waits for it). */
  release?: () => void;
  final?: Map<string, string>;
  kconfig?: KconfigTree;
  trap?: TrapEntry[];
  /** verify */
  report?: VerifyReport;
}

export async function runKernelStage(
  config: PipelineConfig,
  opts: KernelStageOptions = {},
): Promise<KernelStageResult> {
  if (config.kernel.kind === "debian-cloud") {
    return runDebianCloudKernel(config, opts);
  }
  const plan = planKernel(config, repoData(), resolveKernelInputs(config, opts.extraFragments));
  const k: KernelContext = {
    config,
    opts,
    cache: new ArtifactCache(config.cache_dir),
    plan,
    label: `linux ${plan.entry.version} (${config.kernel.base}, fragment set ${config.kernel.fragment_set})`,
  };
  const r: KernelRun = { warnings: [], notes: [] };
  for (const o of plan.requested.overrides)
    r.warnings.push(
      `${o.symbol}: ${o.from.file}:${o.from.line} sets ${o.from.value}, ${o.to.file}:${o.to.line} overrides it with ${o.to.value}`,
    );
  let timings;
  try {
    timings = await runSteps(r, kernelSteps(k), { stage: "kernel" });
  } finally {
    r.release?.();
  }
  if (opts.configOut && r.kernel && !opts.checkConfigOnly)
    await keepConfig(join(r.kernel.dir, "config"), opts.configOut);
  return kernelResult(k.label, requestedValues(plan.requested), r, phaseSeconds(timings));
}

function kernelSteps(k: KernelContext): Step<KernelRun>[] {
  const cached = (r: KernelRun) => (r.kernel ? "cached" : false);
  const { opts, config } = k;
  return [
    { name: "source", title: `Resolve ${k.label}`, run: (r, log) => sourcePhase(k, r, log) },
    { name: "configure", title: "Configure", skip: cached, run: (r, log) => configurePhase(k, r, log) },
    {
      name: "verify",
      title: "Verify",
      skip: cached,
      run: (r, _log, setTitle) => verifyPhase(k, r, setTitle),
    },
    {
      name: "build",
      title: `Build bzImage (-j${k.plan.jobs})`,
      skip: (r) => cached(r) || (opts.checkConfigOnly ? "check-config only" : false),
      run: async (r, log) => void (r.kernel = await buildKernel(k, r, log)),
    },
    {
      name: "boot-check",
      title: "Boot check under QEMU",
      skip: (r) => (!(opts.bootCheck ?? config.kernel.boot_check) || !r.kernel ? "not requested" : false),
      run: (r, log) => bootCheckPhase(k, r, log),
    },
  ];
}

/** The source tree (cached), the toolchain, the key, and the built kernel if the cache has it. */
async function sourcePhase(k: KernelContext, r: KernelRun, log: PhaseLog): Promise<void> {
  const { config, cache, plan } = k;
  requireHostTools(BUILD_TOOLS, BUILD_HEADERS, "building a kernel");
  r.source = await obtainKernelSource(
    { cache, kernel: config.kernel, mirror: config.debian.mirror, log },
    plan.entry,
  );
  r.tools = await toolchain();
  r.key = kernelCacheKey(plan, config.kernel.base, r.source.metadata, r.tools);
  const hit = k.opts.checkConfigOnly ? undefined : await cache.lookup<KernelMetadata>("kernel", r.key);
  if (hit) r.kernel = { ...hit, cached: true };
}

/**
 * The .config from the fragments; with EXPERT requested, the same request without it beside
 * (each make uses one core), diffed: the exact trap. Kconfig is parsed meanwhile.
 */
async function configurePhase(k: KernelContext, r: KernelRun, log: PhaseLog): Promise<void> {
  const { config, cache, plan, opts } = k;
  const source = fromPhase(r.source, "the kernel source");
  // One build dir per kernel variant: alternating variants (a matrix) rebuilds nothing.
  // A check keeps one dir per source and base: kconfig's own tools are compiled once, and
  // every configure rewrites .config whole (allnoconfig, defconfig), so nothing carries over.
  const sourceDir = `${source.metadata.provider}-${plan.entry.version}-${config.kernel.base}`;
  // A short-lived variant (a proof) builds in its fragment set's dir: an incremental make from
  // that kernel recompiles what the changed symbols touch, not the whole tree.
  const variant = opts.checkConfigOnly
    ? `check-${sourceDir}`
    : `${sourceDir}-${opts.incremental ? fragmentSetDir(config) : variantName(config, plan)}`;
  const outDir = join(cache.root, "kbuild", variant);
  // Proofs and bisect steps share the set's dir (and checks one dir): one process at a time.
  r.release = await lockDir(outDir, { log });
  await mkdir(join(cache.root, "logs"), { recursive: true });
  const logFile = join(cache.root, "logs", `kernel-${fromPhase(r.key, "the kernel key")}.log`);
  await rm(logFile, { force: true });
  r.build = { outDir, logFile };
  const configure = (dir: string, requested: typeof plan.requested, toLog = logFile) =>
    configureKernel({
      tree: source.tree,
      outDir: dir,
      base: config.kernel.base,
      requested,
      logFile: toLog,
      onLine: log,
    });
  const configuring = Promise.all([
    configure(outDir, plan.requested),
    requestsExpert(plan.requested)
      ? configure(
          `${outDir}-without-expert`,
          withoutExpert(plan.requested),
          logFile.replace(/\.log$/, "-without-expert.log"),
        )
      : undefined,
  ]);
  r.kconfig = parseKernelKconfig(source.tree);
  const [final, noExpert] = await configuring;
  r.final = final;
  if (noExpert) {
    r.trap = explainTrap(trapSymbols(final, noExpert, plan.requested), {
      requirements: repoData().kernelRequirements,
      criu: trapCriu(config, opts.criuVersion),
      kernelVersion: plan.entry.version,
      withExpert: final,
      kconfig: r.kconfig,
    });
    if (r.trap.length) r.warnings.push(formatTrap(r.trap, config.kernel.base));
  }
  if (opts.configOut) await keepConfig(join(outDir, ".config"), opts.configOut);
}

/** Every requested symbol against the final .config; a failure stops before the long build. */
async function verifyPhase(k: KernelContext, r: KernelRun, setTitle: (title: string) => void): Promise<void> {
  const { config, plan, opts, label } = k;
  const final = fromPhase(r.final, "the final .config");
  r.report = verifyConfig({
    requested: plan.requested,
    final,
    kconfig: r.kconfig,
    kernelVersion: plan.entry.version,
    ...acceptedMisses(config.kernel.allowlist, plan.whitelist),
  });
  if (opts.checkConfigOnly) return;
  failOnVerify(r.report, label);
  opts.onConfigured?.(final, plan.entry.version);
  setTitle(`Verified (${r.report.ok.length}/${r.report.checked} symbols)`);
}

/** Boots the kernel to a config-check initramfs: the guest's /proc/config.gz must be the request. */
async function bootCheckPhase(k: KernelContext, r: KernelRun, log: PhaseLog): Promise<void> {
  const { cache, plan, label } = k;
  const { bootCheckKernel } = await import("./boot-check.js");
  const values = Object.fromEntries([...plan.requested.values].map(([s, e]) => [s, e.value]));
  log("booting to a config-check initramfs");
  const boot = await bootCheckKernel({
    kernel: join(fromPhase(r.kernel, "the kernel").dir, "vmlinuz"),
    requested: values,
    workDir: join(cache.root, "boot-check", fromPhase(r.key, "the kernel key")),
  });
  if (boot.status !== "ok")
    throw new UserError(
      `boot check of ${label}: ${boot.status} after ${boot.seconds.toFixed(1)} s; console: ${boot.consoleLog}`,
      "read the console log",
      3,
    );
  if (boot.mismatches.length)
    throw new UserError(
      `boot check of ${label}: the guest's /proc/config.gz differs from the request:\n${boot.mismatches.map((m) => `  ${m.symbol}: requested ${m.requested}, guest ${m.guest}`).join("\n")}`,
      "see the console log",
      1,
    );
  r.notes.push(
    `boot check: booted ${boot.kernelRelease ?? "?"} in ${boot.seconds.toFixed(1)} s, all requested symbols seen in /proc/config.gz`,
  );
}

/**
 * The stage's result: a built kernel with this run's report, a cached one with the summary it
 * was built with (its report is not kept), or a check-config run's report and .config alone.
 */
export function kernelResult(
  label: string,
  requested: Map<string, string>,
  r: KernelRun,
  seconds: Record<string, number>,
): KernelStageResult {
  const common = {
    warnings: r.warnings,
    notes: r.notes,
    seconds,
    requested,
    expertTrap: r.trap,
    kconfig: r.kconfig,
  };
  if (!r.kernel) {
    const report = fromPhase(r.report, "the verification report");
    return {
      ...common,
      cached: false,
      report,
      reportText: formatVerifyReport(report, label),
      finalConfig: r.final,
    };
  }
  const { dir, cached, metadata } = r.kernel;
  const v = metadata.verify;
  return {
    ...common,
    dir,
    cached,
    metadata,
    report: r.report,
    reportText: r.report
      ? formatVerifyReport(r.report, label)
      : `${label}: ${v.ok}/${v.checked} requested symbols landed in the final .config (verified when built)\n\nverification ${v.passed ? "PASSED" : "FAILED"}`,
  };
}

/** make bzImage into the variant's build dir, then the artifact: vmlinuz, config, build log. */
async function buildKernel(
  k: KernelContext,
  r: KernelRun,
  log: PhaseLog,
): Promise<Artifact<KernelMetadata> & { cached: boolean }> {
  const { config, cache, plan } = k;
  const source = fromPhase(r.source, "the kernel source");
  const report = fromPhase(r.report, "the verification report");
  const { outDir, logFile } = fromPhase(r.build, "the build directory");
  return cache.getOrBuild<KernelMetadata>("kernel", fromPhase(r.key, "the kernel key"), async (tmp) => {
    const before = await ccacheStats();
    const started = Date.now();
    await makeBzImage(k, source.tree, outDir, logFile, log);
    const buildSeconds = (Date.now() - started) / 1000;
    const after = await ccacheStats();
    const release = (
      await run(["make", "-s", "-C", source.tree, `O=${outDir}`, `ARCH=${ARCH}`, "kernelrelease"], {
        timeoutMs: 60_000,
      })
    ).stdout.trim();
    await copyFile(join(outDir, "arch/x86/boot/bzImage"), join(tmp, "vmlinuz"));
    await copyFile(join(outDir, ".config"), join(tmp, "config"));
    await copyFile(logFile, join(tmp, "build.log"));
    const configText = readFileSync(join(tmp, "config"), "utf8");
    return {
      kind: "build",
      version: plan.entry.version,
      release,
      source: source.metadata,
      base: config.kernel.base,
      fragments: fragmentSummary(plan.fragments),
      config_sha256: sha256(configText),
      toolchain: r.tools,
      build_seconds: buildSeconds,
      ccache:
        before && after ? { hits: after.hits - before.hits, misses: after.misses - before.misses } : null,
      vmlinuz: {
        bytes: (await stat(join(tmp, "vmlinuz"))).size,
        sha256: await sha256File(join(tmp, "vmlinuz")),
      },
      verify: verifySummary(report),
      created: new Date().toISOString(),
    };
  });
}

async function makeBzImage(
  k: KernelContext,
  tree: string,
  outDir: string,
  logFile: string,
  log: PhaseLog,
): Promise<void> {
  const ccache = findInPath("ccache");
  const argv = ["make", "-C", tree, `O=${outDir}`, `ARCH=${ARCH}`, `-j${k.plan.jobs}`];
  if (ccache) argv.push("CC=ccache gcc");
  const env = {
    // Reproducible: the same inputs give the same bzImage.
    KBUILD_BUILD_TIMESTAMP: "2000-01-01 00:00:00 UTC",
    KBUILD_BUILD_USER: "cr-guest",
    KBUILD_BUILD_HOST: "cr-guest",
    KBUILD_BUILD_VERSION: "1",
    // Paths under the cache become relative: a clone elsewhere still hits ccache.
    CCACHE_BASEDIR: k.cache.root,
  };
  try {
    await run([...argv, "bzImage"], {
      timeoutMs: k.config.kernel.build_timeout_minutes * 60_000,
      logFile,
      onLine: log,
      env,
    });
  } catch (err) {
    if (err instanceof CommandError)
      throw new UserError(
        `kernel build of ${k.label} failed${err.timedOut ? " (deadline)" : ""}; last lines:\n${tail(err.output, 40)}\n  full log: ${logFile}`,
        "read the log; a compiler error usually names the option that needs a fragment change",
        3,
      );
    throw err;
  }
}

/** Verifies an existing .config file (e.g. from another kernel) against the fragments. */
export function verifyConfigFile(
  config: PipelineConfig,
  file: string,
  kconfigTree?: string,
): { report: VerifyReport; text: string } {
  const plan = planKernel(config, repoData(), resolveKernelInputs(config));
  const final = parseDotConfig(readFileSync(file, "utf8"));
  const kconfig = kconfigTree ? parseKernelKconfig(kconfigTree) : undefined;
  const report = verifyConfig({
    requested: plan.requested,
    final,
    kconfig,
    kernelVersion: plan.entry.version,
    ...acceptedMisses(config.kernel.allowlist, plan.whitelist),
  });
  return { report, text: formatVerifyReport(report, file) };
}

/** The build dir's variant part: the fragment set (or the Kata tree) and any extra fragments. */
const fragmentSetDir = (config: PipelineConfig) =>
  config.kernel.kata_fragments ? "kata" : config.kernel.fragment_set;

function variantName(config: PipelineConfig, plan: KernelPlan): string {
  const set = fragmentSetDir(config);
  const extra =
    plan.fragments.length -
    (config.kernel.kata_fragments ? 0 : config.fragment_sets[config.kernel.fragment_set].length);
  return extra > 0 && !config.kernel.kata_fragments
    ? `${set}+${sha256(plan.fragments.map((f) => f.sha256).join()).slice(0, 8)}`
    : set;
}

/**
 * The CRIU whose needs rank the trap: --criu, else the config's version, else (a version the
 * catalog lacks) the newest; built as the configured link mode builds it, with its patches.
 */
function trapCriu(config: PipelineConfig, criuVersion?: string): CriuFacts {
  const catalog = repoData().criu;
  let version: string;
  try {
    version = resolveCriuVersion(criuVersion ?? config.criu.version, catalog).version;
  } catch {
    version = resolveCriuVersion("latest", catalog).version;
  }
  return { version, build: criuBuildConditions({ link: config.criu.link }), patches: config.criu.patches };
}

/** --config-out: the final .config, written whole or not at all. */
async function keepConfig(from: string, to: string): Promise<void> {
  await writeAtomic(to, readFileSync(from, "utf8"));
}
