/**
 * The prebuilt provider: Debian's cloud kernel package from the mirror. Its vmlinuz and
 * config are extracted (no host install) and verified against the same fragments, so a user
 * sees at once which checkpoint/restore options a distribution kernel lacks.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { parseKernelKconfig, type KconfigTree } from "./kconfig.js";
import { copyFile, mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { ArtifactCache } from "../lib/cache.js";
import type { PipelineConfig } from "../lib/config.js";
import { loadSuiteIndex } from "../lib/debian-mirror.js";
import { download } from "../lib/download.js";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { cacheKey, sha256, sha256File } from "../lib/hash.js";
import { requireHostTools } from "../lib/host-tools.js";
import { runSteps } from "../lib/progress.js";
import { fragmentSummary } from "./configure.js";
import { parseDotConfig } from "../data/fragments.js";
import { planKernel, resolveKernelInputs } from "./plan.js";
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

export async function runDebianCloudKernel(
  config: PipelineConfig,
  opts: KernelStageOptions,
): Promise<KernelStageResult> {
  requireHostTools(["dpkg-deb", "xz", "gpgv"], [], "the Debian cloud kernel");
  const cache = new ArtifactCache(config.cache_dir);
  const suite = config.kernel.debian_cloud_suite;
  const plan = planKernel(config, repoData(), resolveKernelInputs(config, opts.extraFragments));
  const ctx = {
    seconds: {} as Record<string, number>,
    warnings: [] as string[],
    result: undefined as KernelStageResult | undefined,
  };
  await runSteps(ctx, [
    {
      title: `Debian ${suite} ${META_PACKAGE}`,
      run: async (c, log) => {
        const t0 = Date.now();
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
        const key = cacheKey({
          kind: "debian-cloud",
          package: pkg.package,
          version: pkg.version,
          sha256: pkg.sha256,
          fragment: [...plan.requested.values].map(([k, e]) => `${k}=${e.value}`),
        });
        const art = await cache.getOrBuild<KernelMetadata>("kernel", key, async (tmp) => {
          const downloads = join(cache.root, "downloads");
          await mkdir(downloads, { recursive: true });
          const deb = join(downloads, pkg.filename.split("/").pop()!);
          log(`downloading ${pkg.url}`);
          await download({
            url: pkg.url,
            dest: deb,
            sha256: pkg.sha256,
            size: pkg.size,
            timeoutMs: 20 * 60_000,
          });
          const x = join(tmp, "extract");
          await run(["dpkg-deb", "-x", deb, x], { timeoutMs: 5 * 60_000 });
          const boot = await readdir(join(x, "boot"));
          const vmlinuz = boot.find((f) => f.startsWith("vmlinuz-"));
          const configFile = boot.find((f) => f.startsWith("config-"));
          if (!vmlinuz || !configFile)
            throw new UserError(
              `${deb} has no boot/vmlinuz-* or boot/config-*`,
              "is this a kernel image package?",
            );
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
              provider: `debian ${suite}`,
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
        c.seconds.prebuilt = (Date.now() - t0) / 1000;
        const report = verifyConfig({
          requested: plan.requested,
          final: parseDotConfig(readFileSync(join(art.dir, "config"), "utf8")),
          kconfig: cachedKconfig(cache.root, art.metadata.version),
          kernelVersion: art.metadata.version,
          ...acceptedMisses(config.kernel.allowlist, plan.whitelist),
        });
        c.result = {
          dir: art.dir,
          cached: art.cached,
          metadata: art.metadata,
          report,
          reportText: formatVerifyReport(report, `Debian ${pkg.package} ${pkg.version}`),
          warnings: c.warnings,
          notes: [],
          seconds: c.seconds,
          requested: requestedValues(plan.requested),
        };
      },
    },
  ]);
  return ctx.result!;
}

export type { VerifyReport };
