/**
 * The cold pipeline's side work: what the CRIU and image stages need, done while the kernel
 * compiles. The compile is CPU bound and keeps every core; the side work runs at the idle CPU
 * priority (it gets a CPU only when the compile leaves one), into the very caches those stages
 * read, so they find it there. Two lanes run at once: CRIU's (source, build chroot, guest
 * helpers, the CRIU stage itself once the kernel is configured, then the image stage) and the
 * guest's (rootfs, then the image's base: the raw disk and a guestfish session whose appliance
 * boots while CRIU builds, so the image stage only sends it the injection).
 * Whatever the compile leaves undone runs on then-free cores, the lanes side by side.
 * Planning (which pieces, from the config and the CRIU plan) is pure; running is `runSideWork`.
 */
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { criuBuildDeps } from "./criu/build-recipe.js";
import { obtainCriuSource, type SourceProvider } from "./criu/sources.js";
import { servingCandidate, type CriuPlan, type CriuStageResult } from "./criu/stage.js";
import { ensureGuestHelpers } from "./image/helpers.js";
import { prepareFreshImage, releasePrepared, type ImageResult, type PreparedImage } from "./image/stage.js";
import { ArtifactCache } from "./lib/cache.js";
import { ensureChroot } from "./lib/chroot.js";
import { currentBranch } from "./lib/exec.js";
import type { PipelineConfig } from "./lib/config.js";
import { withProgressSink, type ProgressSink } from "./lib/progress.js";
import { ensureGuestRootfs } from "./lib/rootfs.js";

/** The side work's CPU priority: SCHED_IDLE, so the kernel compile keeps the CPUs. */
export const SIDE_WORK_PRIORITY = "idle" as const;

/** Providers whose source is fetched over the network (the others are local copies). */
const FETCHED: SourceProvider[] = ["upstream", "debian-source"];

/** criu: what CRIU's build needs, the build, then the image; guest: the guest rootfs and the image's base. */
export type SideLane = "criu" | "guest";

/** The stages the run goes on to: the side work does their work ahead. */
export interface SideWants {
  criu: boolean;
  image: boolean;
  /** The image holds more CRIU builds (a migration image): its stage makes it. */
  moreCriu?: boolean;
}

export type SideItem = { lane: SideLane; title: string } & (
  | { kind: "criu-source"; provider: SourceProvider }
  | { kind: "build-chroot"; suite: string; packages: string[] }
  | { kind: "guest-helpers"; suite: string }
  | { kind: "criu-build" }
  | { kind: "guest-rootfs"; suite: string }
  | { kind: "image-base"; suite: string }
  | { kind: "image" }
);

/**
 * What can be done before the kernel is built: nothing of CRIU's when its build is cached,
 * the guest rootfs only for a static CRIU (a dynamic build's runtime packages are known after
 * the build) and a fresh image. A CRIU source build itself waits in its lane for the kernel's
 * final .config (its compatibility check reads it); Debian's binary is left to its stage.
 */
export function sideWorkPlan(
  config: PipelineConfig,
  wants: SideWants,
  plan: CriuPlan,
  criuCached: boolean,
): SideItem[] {
  const items: SideItem[] = [];
  const candidate = servingCandidate(plan);
  const buildsCriu =
    wants.criu && !criuCached && candidate !== undefined && candidate.provider !== "debian-binary";
  if (buildsCriu) {
    const provider = candidate.provider as SourceProvider;
    if (FETCHED.includes(provider))
      items.push({
        lane: "criu",
        kind: "criu-source",
        title: `CRIU ${plan.entry.version} source (${provider})`,
        provider,
      });
    const suite = plan.buildSuite(provider);
    items.push({
      lane: "criu",
      kind: "build-chroot",
      title: `${suite} build chroot`,
      suite,
      packages: criuBuildDeps(config.criu.link),
    });
  }
  if (wants.image)
    items.push({
      lane: "criu",
      kind: "guest-helpers",
      title: "guest helpers",
      suite: config.criu.static_build_suite,
    });
  if (buildsCriu) items.push({ lane: "criu", kind: "criu-build", title: `CRIU ${plan.entry.version} build` });
  const freshStatic =
    wants.image &&
    !config.image.base &&
    config.criu.link === "static" &&
    candidate?.provider !== "debian-binary";
  if (freshStatic)
    items.push({
      lane: "guest",
      kind: "guest-rootfs",
      title: `${plan.guestSuite} guest rootfs`,
      suite: plan.guestSuite,
    });
  // The image itself, when all it needs is made here: its base and appliance beside the
  // kernel, its injection once CRIU is built (an agent or a second CRIU is its stage's).
  const noAgent = !config.agent.binary && !config.agent.kata_src;
  if (freshStatic && buildsCriu && noAgent && !wants.moreCriu) {
    items.push({
      lane: "guest",
      kind: "image-base",
      title: `${plan.guestSuite} image base`,
      suite: plan.guestSuite,
    });
    items.push({ lane: "criu", kind: "image", title: `image ${config.image.name}` });
  }
  return items;
}

/** The items of each lane, in order; lanes without items left out. */
export function sideLanes(items: SideItem[]): SideItem[][] {
  const order: SideLane[] = ["criu", "guest"];
  return order.map((lane) => items.filter((i) => i.lane === lane)).filter((l) => l.length);
}

export interface KernelConfigured {
  config: Map<string, string>;
  version: string;
}

export interface SideWorkInputs {
  config: PipelineConfig;
  plan: CriuPlan;
  items: SideItem[];
  /** The kernel's final .config and version, once configured (rejects if the kernel fails). */
  kernelConfigured: Promise<KernelConfigured>;
  /** The CRIU stage for that kernel (the driver's: only it runs a stage's build step). */
  buildCriu: (kernel: KernelConfigured) => Promise<CriuStageResult>;
  /** The image stage for that CRIU, on the base made here (the driver's too). */
  buildImage?: (criu: CriuStageResult, prepared: PreparedImage) => Promise<ImageResult>;
  sink: ProgressSink;
}

export interface SideWorkResult {
  done: string[];
  /** The CRIU stage's result when the side work ran it. */
  criu?: CriuStageResult;
  /** The image stage's result when the side work ran it. */
  image?: ImageResult;
}

/** The image base made in the guest lane, awaited by the image item in CRIU's lane. */
interface ImageBase {
  promise: Promise<PreparedImage>;
  resolve: (p: PreparedImage) => void;
  reject: (err: unknown) => void;
  made?: PreparedImage;
  taken: boolean;
}

function imageBase(): ImageBase {
  let resolve!: (p: PreparedImage) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<PreparedImage>((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => undefined);
  return { promise, resolve, reject, taken: false };
}

/**
 * Runs the lanes at once, each item of a lane after the one before. Each lane shows its
 * current item in the branch's title. A failing lane cancels the other; the first error is
 * thrown once both have stopped.
 */
export async function runSideWork(inp: SideWorkInputs): Promise<SideWorkResult> {
  const result: SideWorkResult = { done: [] };
  const lanes = sideLanes(inp.items);
  const titles: string[] = lanes.map(() => "");
  let first: unknown;
  const base = imageBase();
  await Promise.allSettled(
    lanes.map(async (lane, i) => {
      const sink: ProgressSink = {
        title: (t) => {
          titles[i] = t;
          inp.sink.title(titles.filter(Boolean).join(" | "));
        },
        line: inp.sink.line,
      };
      try {
        await withProgressSink(sink, async () => {
          for (const item of lane) {
            sink.title(item.title);
            const t0 = Date.now();
            const cached = await runItem(inp, item, sink, result, base);
            result.done.push(
              `${item.title} ${cached ? "(cached)" : `${((Date.now() - t0) / 1000).toFixed(0)} s`}`,
            );
          }
          titles[i] = "";
        });
      } catch (err) {
        base.reject(err);
        if (first === undefined) {
          first = err;
          // The branch the side work runs in: cancelling it stops the other lane's commands.
          currentBranch()?.cancel(`${lane[0].lane} lane failed`);
        }
      }
    }),
  );
  // A base the image item never took (its lane failed first) leaves nothing behind.
  if (base.made && !base.taken) await releasePrepared(base.made);
  if (first !== undefined) throw first;
  return result;
}

/** A wait that ends when the branch is cancelled (the other lane failed) too. */
function untilCancelled<T>(p: Promise<T>): Promise<T> {
  const signal = currentBranch()?.signal;
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return Promise.race([
    p,
    new Promise<never>((_, reject) =>
      signal.addEventListener("abort", () => reject(signal.reason), { once: true }),
    ),
  ]);
}

async function runItem(
  inp: SideWorkInputs,
  item: SideItem,
  sink: ProgressSink,
  result: SideWorkResult,
  base: ImageBase,
): Promise<boolean> {
  const { config, plan } = inp;
  const cache = new ArtifactCache(config.cache_dir);
  const log = sink.line;
  switch (item.kind) {
    case "criu-source": {
      // Fetched into the download cache; the unpacked tree is thrown away (the CRIU stage
      // unpacks its own copy into its build directory).
      const candidate = plan.candidates.find((c) => c.provider === item.provider)!;
      const scratch = join(cache.root, "tmp", `side-source-${process.pid}-${Date.now()}`);
      await mkdir(scratch, { recursive: true });
      try {
        await obtainCriuSource(
          { ...candidate, provider: item.provider },
          plan.resolved,
          { cacheRoot: cache.root, mirror: config.debian.mirror, log },
          scratch,
          config.criu.upstream_url_base,
        );
      } finally {
        if (existsSync(scratch)) await rm(scratch, { recursive: true, force: true });
      }
      return false;
    }
    case "build-chroot":
      return (
        await ensureChroot({ cache, suite: item.suite, packages: item.packages, debian: config.debian, log })
      ).cached;
    case "guest-helpers":
      return (await ensureGuestHelpers({ cache, suite: item.suite, debian: config.debian, log })).cached;
    case "criu-build": {
      // The CRIU stage itself, with what it would get after the kernel: its findings and its
      // refusal (a CRIU that cannot start on this kernel) are the same, only sooner.
      log("waiting for the kernel's final .config");
      result.criu = await inp.buildCriu(await untilCancelled(inp.kernelConfigured));
      return result.criu.cached;
    }
    case "guest-rootfs":
      return (
        await ensureGuestRootfs({
          cache,
          suite: item.suite,
          runtimePackages: [],
          extraPackages: config.image.extra_packages,
          debian: config.debian,
          log,
        })
      ).cached;
    case "image-base":
      base.made = await prepareFreshImage(config, item.suite, log);
      base.resolve(base.made);
      return false;
    case "image": {
      if (!inp.buildImage || !result.criu)
        throw new Error("the side work's image needs its CRIU build and the driver's image stage");
      log("waiting for the image base");
      const prepared = await untilCancelled(base.promise);
      base.taken = true;
      result.image = await inp.buildImage(result.criu, prepared);
      return result.image.cached;
    }
  }
}
