/**
 * The prebuilt provider: Debian's cloud kernel package from the mirror. Its vmlinuz and
 * config are extracted (no host install) and verified against the same fragments, so a user
 * sees at once which checkpoint/restore options a distribution kernel lacks.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { parseKernelKconfig, type KconfigTree } from "./kconfig.js";
import { copyFile, mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ArtifactCache, type Artifact } from "../lib/cache.js";
import type { PipelineConfig } from "../lib/config.js";
import { loadSuiteIndex, type BinaryPackage } from "../lib/debian-mirror.js";
import { download } from "../lib/download.js";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { cacheKey, sha256, sha256File } from "../lib/hash.js";
import { requireHostTools } from "../lib/host-tools.js";
import { fromPhase, phaseSeconds, type PhaseLog } from "../lib/phases.js";
import { runSteps } from "../lib/progress.js";
import { fragmentSummary } from "./configure.js";
import { parseDotConfig } from "../data/fragments.js";
import { planKernel, resolveKernelInputs, type KernelPlan } from "./plan.js";
import { acceptedMisses } from "../data/allowlist.js";
import {
  requestedValues,
  verifySummary,
  type KernelMetadata,
  type KernelStageOptions,
  type KernelStageResult,
} from "./result.js";
import { formatVerifyReport, verifyConfig, type VerifyReport } from "./verify.js";
import { repoData } from "../data/repo-data.js";

const META_PACKAGE = "linux-image-cloud-amd64";

/** The versioned image package a metapackage depends on: `linux-image-6.12.107+deb13-cloud-amd64`. */
export function imagePackageFromDepends(depends: string): string | undefined {
  return depends
    .split(",")
    .map((d) => d.trim().split(/\s|\|/)[0])
    .find((name) => /^linux-image-\d.*-cloud-amd64(-unsigned)?$/.test(name));
}

/** A cached source tree of the same upstream version explains the prebuilt kernel's values. */
function cachedKconfig(cacheRoot: string, debianVersion: string): KconfigTree | undefined {
  const upstream = debianVersion.split("-")[0].split("+")[0];
  const sources = join(cacheRoot, "sources");
  if (!existsSync(sources)) return undefined;
  const dir = readdirSync(sources).find(
    (d) => d.startsWith(`linux-${upstream}-`) && existsSync(join(sources, d, "metadata.json")),
  );
  return dir ? parseKernelKconfig(join(sources, dir, "tree")) : undefined;
}

/** What the prebuilt kernel's phases find: the package, the extracted kernel, its verification. */
interface PrebuiltRun {
  pkg?: BinaryPackage;
  kernel?: Artifact<KernelMetadata> & { cached: boolean };
  report?: VerifyReport;
}

export async function runDebianCloudKernel(
  config: PipelineConfig,
  opts: KernelStageOptions,
): Promise<KernelStageResult> {
  requireHostTools(["dpkg-deb", "xz", "gpgv"], [], "the Debian cloud kernel");
  const cache = new ArtifactCache(config.cache_dir);
  const suite = config.kernel.debian_cloud_suite;
  const plan = planKernel(config, repoData(), resolveKernelInputs(config, opts.extraFragments));
  const r: PrebuiltRun = {};
  const timings = await runSteps(
    r,
    [
      {
        name: "index",
        title: `Debian ${suite} ${META_PACKAGE}`,
        run: async (r) => void (r.pkg = await cloudImagePackage(config, cache)),
      },
      {
        name: "fetch",
        title: "Download and extract",
        run: async (r, log, setTitle) => {
          const pkg = fromPhase(r.pkg, "the image package");
          setTitle(`${pkg.package} ${pkg.version}`);
          r.kernel = await fetchCloudKernel(config, cache, plan, pkg, log);
        },
      },
      {
        name: "verify",
        title: "Verify",
        run: async (r) => {
          // Verified again (with a cached source tree's Kconfig when there is one): the
          // artifact's summary was made without it.
          const kernel = fromPhase(r.kernel, "the extracted kernel");
          r.report = verifyConfig({
            requested: plan.requested,
            final: parseDotConfig(readFileSync(join(kernel.dir, "config"), "utf8")),
            kconfig: cachedKconfig(cache.root, kernel.metadata.version),
            kernelVersion: kernel.metadata.version,
            ...acceptedMisses(config.kernel.allowlist, plan.whitelist),
          });
        },
      },
    ],
    { stage: "kernel" },
  );
  const pkg = fromPhase(r.pkg, "the image package");
  const kernel = fromPhase(r.kernel, "the extracted kernel");
  const report = fromPhase(r.report, "the verification report");
  return {
    dir: kernel.dir,
    cached: kernel.cached,
    metadata: kernel.metadata,
    report,
    reportText: formatVerifyReport(report, `Debian ${pkg.package} ${pkg.version}`),
    warnings: [],
    notes: [],
    seconds: phaseSeconds(timings),
    requested: requestedValues(plan.requested),
  };
}

/** The versioned cloud image package the suite's metapackage points at, from its signed index. */
export async function cloudImagePackage(
  config: PipelineConfig,
  cache: ArtifactCache,
): Promise<BinaryPackage> {
  const suite = config.kernel.debian_cloud_suite;
  const index = await loadSuiteIndex({
    mirror: config.debian.mirror,
    suite,
    cacheDir: join(cache.root, "debian-index"),
    kind: { binaryArch: "amd64" },
  });
  const meta = index.binaries(META_PACKAGE)[0];
  if (!meta)
    throw new UserError(
      `${suite} has no ${META_PACKAGE}`,
      "pick another kernel.debian_cloud_suite (bookworm, trixie, sid)",
    );
  const name = imagePackageFromDepends(meta.depends);
  const pkg = name ? index.binaries(name)[0] : undefined;
  if (!pkg)
    throw new UserError(
      `${META_PACKAGE} ${meta.version} in ${suite} depends on no cloud image package found in the index`,
      "try another suite",
    );
  return pkg;
}

/** The cloud kernel's artifact key: the package (by content) and the symbols it is verified against. */
export function cloudKernelKey(pkg: BinaryPackage, plan: KernelPlan): string {
  return cacheKey({
    kind: "debian-cloud",
    package: pkg.package,
    version: pkg.version,
    sha256: pkg.sha256,
    fragment: [...plan.requested.values].map(([k, e]) => `${k}=${e.value}`),
  });
}

/** The package's vmlinuz and config, downloaded (sha256-checked) and extracted: cached by package and request. */
async function fetchCloudKernel(
  config: PipelineConfig,
  cache: ArtifactCache,
  plan: KernelPlan,
  pkg: BinaryPackage,
  log: PhaseLog,
): Promise<Artifact<KernelMetadata> & { cached: boolean }> {
  const key = cloudKernelKey(pkg, plan);
  return cache.getOrBuild<KernelMetadata>("kernel", key, async (tmp) => {
    const downloads = join(cache.root, "downloads");
    await mkdir(downloads, { recursive: true });
    const deb = join(downloads, pkg.filename.split("/").pop()!);
    log(`downloading ${pkg.url}`);
    await download({ url: pkg.url, dest: deb, sha256: pkg.sha256, size: pkg.size, timeoutMs: 20 * 60_000 });
    const x = join(tmp, "extract");
    await run(["dpkg-deb", "-x", deb, x], { timeoutMs: 5 * 60_000 });
    const boot = await readdir(join(x, "boot"));
    const vmlinuz = boot.find((f) => f.startsWith("vmlinuz-"));
    const configFile = boot.find((f) => f.startsWith("config-"));
    if (!vmlinuz || !configFile)
      throw new UserError(`${deb} has no boot/vmlinuz-* or boot/config-*`, "is this a kernel image package?");
    await copyFile(join(x, "boot", vmlinuz), join(tmp, "vmlinuz"));
    await copyFile(join(x, "boot", configFile), join(tmp, "config"));
    await rm(x, { recursive: true });
    const configText = readFileSync(join(tmp, "config"), "utf8");
    const report = verifyConfig({
      requested: plan.requested,
      final: parseDotConfig(configText),
      kernelVersion: pkg.version,
      ...acceptedMisses(config.kernel.allowlist, plan.whitelist),
    });
    return {
      kind: "debian-cloud" as const,
      version: pkg.version,
      release: vmlinuz.replace(/^vmlinuz-/, ""),
      source: {
        provider: `debian ${config.kernel.debian_cloud_suite}`,
        package: pkg.package,
        version: pkg.version,
        sha256: pkg.sha256,
      },
      fragments: fragmentSummary(plan.fragments),
      config_sha256: sha256(configText),
      vmlinuz: {
        bytes: (await stat(join(tmp, "vmlinuz"))).size,
        sha256: await sha256File(join(tmp, "vmlinuz")),
      },
      verify: verifySummary(report),
      created: new Date().toISOString(),
    };
  });
}

export type { VerifyReport };
