/**
 * The cold pipeline's side work: what the CRIU and image stages will download and
 * debootstrap, done while the kernel compiles. The compile is CPU bound and keeps every core;
 * this work is network and disk bound and runs at the idle CPU priority, into the very caches those
 * stages read, so they find it there. Planning (which pieces, from the config and the CRIU
 * plan) is pure; running is `runSideWork`.
 */
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { criuBuildDeps } from "./criu/build-recipe.js";
import { obtainCriuSource, type SourceProvider } from "./criu/sources.js";
import type { CriuPlan } from "./criu/stage.js";
import { ensureGuestHelpers } from "./image/helpers.js";
import { ArtifactCache } from "./lib/cache.js";
import { ensureChroot } from "./lib/chroot.js";
import type { PipelineConfig } from "./lib/config.js";
import { ensureGuestRootfs } from "./lib/rootfs.js";

/** The side work's CPU priority: SCHED_IDLE, so the kernel compile keeps the CPUs. */
export const SIDE_WORK_PRIORITY = "idle" as const;

/** Providers whose source is fetched over the network (the others are local copies). */
const FETCHED: SourceProvider[] = ["upstream", "debian-source"];

export type SideItem =
  | { kind: "criu-source"; title: string; provider: SourceProvider }
  | { kind: "build-chroot"; title: string; suite: string; packages: string[] }
  | { kind: "guest-rootfs"; title: string; suite: string }
  | { kind: "guest-helpers"; title: string; suite: string };

/**
 * What can be fetched before the kernel is built: nothing when the CRIU build is cached
 * (its build chroot and source are not needed), the guest rootfs only for a static CRIU
 * (a dynamic build's runtime packages are known after the build) and a fresh image.
 */
export function sideWorkPlan(config: PipelineConfig, wants: { criu: boolean; image: boolean }, plan: CriuPlan, criuCached: boolean): SideItem[] {
  const items: SideItem[] = [];
  const candidate = plan.candidates.find((c) => c.key);
  if (wants.criu && !criuCached && candidate && candidate.provider !== "debian-binary") {
    const provider = candidate.provider as SourceProvider;
    if (FETCHED.includes(provider)) items.push({ kind: "criu-source", title: `CRIU ${plan.entry.version} source (${provider})`, provider });
    const suite = plan.buildSuite(provider);
    items.push({ kind: "build-chroot", title: `${suite} build chroot`, suite, packages: criuBuildDeps(config.criu.link) });
  }
  if (wants.image && !config.image.base && config.criu.link === "static" && candidate?.provider !== "debian-binary")
    items.push({ kind: "guest-rootfs", title: `${plan.guestSuite} guest rootfs`, suite: plan.guestSuite });
  if (wants.image) items.push({ kind: "guest-helpers", title: "guest helpers", suite: config.criu.static_build_suite });
  return items;
}

/** Runs the items one after another (two debootstraps at once would only share the disk). */
export async function runSideWork(config: PipelineConfig, plan: CriuPlan, items: SideItem[], log: (line: string) => void, setTitle: (t: string) => void): Promise<string[]> {
  const cache = new ArtifactCache(config.cache_dir);
  const mirror = config.debian.mirror;
  const done: string[] = [];
  for (const item of items) {
    setTitle(item.title);
    const t0 = Date.now();
    let cached = false;
    switch (item.kind) {
      case "criu-source": {
        // Fetched into the download cache; the unpacked tree is thrown away (the CRIU stage
        // unpacks its own copy into its build directory).
        const candidate = plan.candidates.find((c) => c.provider === item.provider)!;
        const scratch = join(cache.root, "tmp", `side-source-${process.pid}-${Date.now()}`);
        await mkdir(scratch, { recursive: true });
        try {
          await obtainCriuSource({ ...candidate, provider: item.provider }, plan.resolved, { cacheRoot: cache.root, mirror, log }, scratch, config.criu.upstream_url_base);
        } finally {
          if (existsSync(scratch)) await rm(scratch, { recursive: true, force: true });
        }
        break;
      }
      case "build-chroot":
        cached = (await ensureChroot({ cache, suite: item.suite, packages: item.packages, mirror, log })).cached;
        break;
      case "guest-rootfs":
        cached = (await ensureGuestRootfs({ cache, suite: item.suite, runtimePackages: [], extraPackages: config.image.extra_packages, mirror, log })).cached;
        break;
      case "guest-helpers":
        cached = (await ensureGuestHelpers({ cache, suite: item.suite, mirror, log })).cached;
        break;
    }
    done.push(`${item.title} ${cached ? "(cached)" : `${((Date.now() - t0) / 1000).toFixed(0)} s`}`);
  }
  return done;
}
