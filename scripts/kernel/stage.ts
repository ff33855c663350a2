/**
 * The kernel stage: plan -> source -> configure -> verify -> build -> (boot check), each
 * step cached. Output: images/kernel/<key>/{vmlinuz,config,build.log,metadata.json}.
 */
import { readFileSync } from "node:fs";
import { copyFile, mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ArtifactCache } from "../lib/cache.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { run, tail } from "../lib/exec.js";
import { sha256, sha256File } from "../lib/hash.js";
import { findInPath, requireHostTools } from "../lib/host-tools.js";
import { runSteps } from "../lib/progress.js";
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
import { writeAtomic } from "../lib/fs-atomic.js";
import { parseKernelKconfig, type KconfigTree } from "./kconfig.js";
import { kernelCacheKey, planKernel, resolveKernelInputs, type KernelPlan } from "./plan.js";
import { obtainKernelSource, type KernelSource } from "./sources.js";
import { formatVerifyReport, verifyConfig, type VerifyReport } from "./verify.js";
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

interface Ctx {
  plan: KernelPlan;
  source?: KernelSource;
  key?: string;
  tools?: string[];
  kconfig?: KconfigTree;
  report?: VerifyReport;
  trap?: TrapEntry[];
  result?: Omit<KernelStageResult, "requested">;
  warnings: string[];
  notes: string[];
  seconds: Record<string, number>;
}

export async function runKernelStage(
  config: PipelineConfig,
  opts: KernelStageOptions = {},
): Promise<KernelStageResult> {
  if (config.kernel.kind === "debian-cloud") {
    return runDebianCloudKernel(config, opts);
  }
  const cache = new ArtifactCache(config.cache_dir);
  const plan = planKernel(config, repoData(), resolveKernelInputs(config, opts.extraFragments));
  const label = `linux ${plan.entry.version} (${config.kernel.base}, fragment set ${config.kernel.fragment_set})`;
  const timed = async <T>(ctx: Ctx, name: string, fn: () => Promise<T>) => {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      ctx.seconds[name] = (Date.now() - t0) / 1000;
    }
  };
  const ctx: Ctx = { plan, warnings: [], notes: [], seconds: {} };
  for (const o of plan.requested.overrides)
    ctx.warnings.push(
      `${o.symbol}: ${o.from.file}:${o.from.line} sets ${o.from.value}, ${o.to.file}:${o.to.line} overrides it with ${o.to.value}`,
    );

  await runSteps(ctx, [
    {
      title: `Resolve ${label}`,
      run: async (c, log) => {
        requireHostTools(BUILD_TOOLS, BUILD_HEADERS, "building a kernel");
        c.source = await timed(c, "source", () =>
          obtainKernelSource({ cache, kernel: config.kernel, mirror: config.debian.mirror, log }, plan.entry),
        );
        c.tools = await toolchain();
        c.key = kernelCacheKey(plan, config.kernel.base, c.source.metadata, c.tools);
        const hit = opts.checkConfigOnly ? undefined : await cache.lookup<KernelMetadata>("kernel", c.key);
        if (hit)
          c.result = {
            dir: hit.dir,
            cached: true,
            metadata: hit.metadata,
            report: undefined as unknown as VerifyReport,
            reportText: `${label}: ${hit.metadata.verify.ok}/${hit.metadata.verify.checked} requested symbols landed in the final .config (verified when built)\n\nverification ${hit.metadata.verify.passed ? "PASSED" : "FAILED"}`,
            warnings: c.warnings,
            notes: c.notes,
            seconds: c.seconds,
          };
      },
    },
    {
      title: "Configure and verify",
      skip: (c) => (c.result ? "cached" : false),
      run: async (c, log, setTitle) => {
        // One build dir per kernel variant: alternating variants (a matrix) rebuilds nothing.
        // A check keeps one dir per source and base: kconfig's own tools are compiled once, and
        // every configure rewrites .config whole (allnoconfig, defconfig), so nothing carries over.
        const sourceDir = `${c.source!.metadata.provider}-${plan.entry.version}-${config.kernel.base}`;
        const outDir = join(
          cache.root,
          "kbuild",
          opts.checkConfigOnly ? `check-${sourceDir}` : `${sourceDir}-${variantName(config, plan)}`,
        );
        await mkdir(join(cache.root, "logs"), { recursive: true });
        const logFile = join(cache.root, "logs", `kernel-${c.key}.log`);
        await rm(logFile, { force: true });
        const configure = (dir: string, requested: typeof plan.requested, log2 = logFile) =>
          configureKernel({
            tree: c.source!.tree,
            outDir: dir,
            base: config.kernel.base,
            requested,
            logFile: log2,
            onLine: log,
          });
        // The exact trap: the same request without EXPERT, configured for real beside the
        // real one (each make uses one core), then diffed. Kconfig is parsed meanwhile.
        const configuring = timed(c, "configure", () =>
          Promise.all([
            configure(outDir, plan.requested),
            requestsExpert(plan.requested)
              ? configure(
                  `${outDir}-without-expert`,
                  withoutExpert(plan.requested),
                  logFile.replace(/\.log$/, "-without-expert.log"),
                )
              : undefined,
          ]),
        );
        c.kconfig = parseKernelKconfig(c.source!.tree);
        const [final, noExpert] = await configuring;
        if (noExpert) {
          c.trap = explainTrap(trapSymbols(final, noExpert, plan.requested), {
            ...trapCriu(config, opts.criuVersion),
            kernelVersion: plan.entry.version,
            withExpert: final,
            noExpert,
          });
          if (c.trap.length) c.warnings.push(formatTrap(c.trap, config.kernel.base));
        }
        if (opts.configOut) await keepConfig(join(outDir, ".config"), opts.configOut);
        c.report = verifyConfig({
          requested: plan.requested,
          final,
          kconfig: c.kconfig,
          kernelVersion: plan.entry.version,
          ...acceptedMisses(config.kernel.allowlist, plan.whitelist),
        });
        if (opts.checkConfigOnly) {
          c.result = {
            cached: false,
            report: c.report,
            reportText: formatVerifyReport(c.report, label),
            warnings: c.warnings,
            notes: c.notes,
            seconds: c.seconds,
            finalConfig: final,
            expertTrap: c.trap,
          };
          return;
        }
        failOnVerify(c.report, label);
        opts.onConfigured?.(final, plan.entry.version);
        setTitle(
          `Configured and verified (${c.report.ok.length}/${c.report.checked} symbols); build bzImage (-j${plan.jobs})`,
        );
        c.result = await timed(c, "build", () => buildKernel(config, cache, c, outDir, logFile, label, log));
      },
    },
    {
      title: "Boot check under QEMU",
      skip: (c) =>
        !(opts.bootCheck ?? config.kernel.boot_check) || !c.result?.dir ? "not requested" : false,
      run: async (c, log) => {
        const { bootCheckKernel } = await import("./boot-check.js");
        const values = Object.fromEntries([...plan.requested.values].map(([k, e]) => [k, e.value]));
        log("booting to a config-check initramfs");
        const boot = await timed(c, "boot_check", () =>
          bootCheckKernel({
            kernel: join(c.result!.dir!, "vmlinuz"),
            requested: values,
            workDir: join(cache.root, "boot-check", c.key!),
          }),
        );
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
        c.notes.push(
          `boot check: booted ${boot.kernelRelease ?? "?"} in ${boot.seconds.toFixed(1)} s, all requested symbols seen in /proc/config.gz`,
        );
      },
    },
  ]);
  if (opts.configOut && ctx.result?.dir && !opts.checkConfigOnly)
    await keepConfig(join(ctx.result.dir, "config"), opts.configOut);
  return {
    ...ctx.result!,
    warnings: ctx.warnings,
    notes: ctx.notes,
    seconds: ctx.seconds,
    requested: requestedValues(plan.requested),
    expertTrap: ctx.trap ?? ctx.result?.expertTrap,
  };
}

async function buildKernel(
  config: PipelineConfig,
  cache: ArtifactCache,
  c: Ctx,
  outDir: string,
  logFile: string,
  label: string,
  log: (line: string) => void,
): Promise<Omit<KernelStageResult, "requested">> {
  const art = await cache.getOrBuild<KernelMetadata>("kernel", c.key!, async (tmp) => {
    const ccache = findInPath("ccache");
    const before = await ccacheStats();
    const started = Date.now();
    const makeArgs = [
      "make",
      "-C",
      c.source!.tree,
      `O=${outDir}`,
      `ARCH=${ARCH}`,
      `-j${c.plan.jobs}`,
      ...(ccache ? ["CC=ccache gcc"] : []),
    ];
    const env = {
      // Reproducible: the same inputs give the same bzImage.
      KBUILD_BUILD_TIMESTAMP: "2000-01-01 00:00:00 UTC",
      KBUILD_BUILD_USER: "cr-guest",
      KBUILD_BUILD_HOST: "cr-guest",
      KBUILD_BUILD_VERSION: "1",
      // Paths under the cache become relative: a clone elsewhere still hits ccache.
      CCACHE_BASEDIR: cache.root,
    };
    try {
      await run([...makeArgs, "bzImage"], {
        timeoutMs: config.kernel.build_timeout_minutes * 60_000,
        logFile,
        onLine: log,
        env,
      });
    } catch (err) {
      if (err instanceof CommandError)
        throw new UserError(
          `kernel build of ${label} failed${err.timedOut ? " (deadline)" : ""}; last lines:\n${tail(err.output, 40)}\n  full log: ${logFile}`,
          "read the log; a compiler error usually names the option that needs a fragment change",
          3,
        );
      throw err;
    }
    const buildSeconds = (Date.now() - started) / 1000;
    const after = await ccacheStats();
    const release = (
      await run(["make", "-s", "-C", c.source!.tree, `O=${outDir}`, `ARCH=${ARCH}`, "kernelrelease"], {
        timeoutMs: 60_000,
      })
    ).stdout.trim();
    await copyFile(join(outDir, "arch/x86/boot/bzImage"), join(tmp, "vmlinuz"));
    await copyFile(join(outDir, ".config"), join(tmp, "config"));
    await copyFile(logFile, join(tmp, "build.log"));
    const configText = readFileSync(join(tmp, "config"), "utf8");
    return {
      kind: "build",
      version: c.plan.entry.version,
      release,
      source: c.source!.metadata,
      base: config.kernel.base,
      fragments: fragmentSummary(c.plan.fragments),
      config_sha256: sha256(configText),
      toolchain: c.tools,
      build_seconds: buildSeconds,
      ccache:
        before && after ? { hits: after.hits - before.hits, misses: after.misses - before.misses } : null,
      vmlinuz: {
        bytes: (await stat(join(tmp, "vmlinuz"))).size,
        sha256: await sha256File(join(tmp, "vmlinuz")),
      },
      verify: verifySummary(c.report!),
      created: new Date().toISOString(),
    };
  });
  return {
    dir: art.dir,
    cached: art.cached,
    metadata: art.metadata,
    report: c.report!,
    reportText: formatVerifyReport(c.report!, label),
    warnings: c.warnings,
    notes: c.notes,
    seconds: c.seconds,
  };
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
function variantName(config: PipelineConfig, plan: KernelPlan): string {
  const set = config.kernel.kata_fragments ? "kata" : config.kernel.fragment_set;
  const extra =
    plan.fragments.length -
    (config.kernel.kata_fragments ? 0 : config.fragment_sets[config.kernel.fragment_set].length);
  return extra > 0 && !config.kernel.kata_fragments
    ? `${set}+${sha256(plan.fragments.map((f) => f.sha256).join()).slice(0, 8)}`
    : set;
}

/** The CRIU whose doctor explains the trap: --criu, else the config's version when the catalog has it. */
function trapCriu(config: PipelineConfig, criuVersion?: string) {
  const catalog = repoData().criu;
  const version = criuVersion ?? config.criu.version;
  let criu;
  try {
    criu = version ? resolveCriuVersion(version, catalog) : undefined;
  } catch {
    criu = undefined; // a version the catalog lacks: the kernel options still rank the trap
  }
  return { catalog, criu, patches: config.criu.patches };
}

/** --config-out: the final .config, written whole or not at all. */
async function keepConfig(from: string, to: string): Promise<void> {
  await writeAtomic(to, readFileSync(from, "utf8"));
}
