/**
 * The driver: the one module that runs the stages' build steps. The stages form a graph
 * (STAGE_GRAPH, data); a caller names the stages it wants and gets each of them and what
 * they need, each run once, as one outcome shape. `kernel`, `criu`, `image`, `smoke`,
 * `doctor`, every matrix cell and the benches (through the CLI) come through here, so a
 * cell and a single run build exactly the same things.
 */
import { basename, join } from "node:path";
import { runAgentStage, type AgentArtifact } from "./agent/stage.js";
import { accelProbeDue, chooseAccel, hostProbeKernel } from "./boot/accel.js";
import { runBootTests, type RunOptions as BootRunOptions, type RunRecord } from "./boot/stage.js";
import { runCriuStage, servingCandidate, type CriuStageOptions, type CriuStageResult } from "./criu/stage.js";
import { runImageStage, type ImageResult, type PreparedImage } from "./image/stage.js";
import { loadDotConfig } from "./data/fragments.js";
import {
  kernelRef,
  type KernelRef,
  type KernelStageOptions,
  type KernelStageResult,
} from "./kernel/result.js";
import { runKernelStage } from "./kernel/stage.js";
import { bootPlan, KernelCannotBootError } from "./kernel/bootable.js";
import type { PipelineConfig } from "./lib/config.js";
import { UserError } from "./lib/errors.js";
import { currentSink, runConcurrently, runSteps, type ConcurrentBranch } from "./lib/progress.js";
import { Branch, BranchCancelledError } from "./lib/exec.js";
import { ArtifactCache } from "./lib/cache.js";
import { resolveAndPlanCriu } from "./criu/stage.js";
import {
  runSideWork,
  sideWorkPlan,
  SIDE_WORK_PRIORITY,
  type KernelConfigured,
  type SideWants,
} from "./side-work.js";

export type StageName = "kernel" | "criu" | "agent" | "image" | "boot";

/**
 * needs: must have run first. uses: read when it is part of the same run (the CRIU
 * compatibility check reads the kernel's .config when there is one), not a reason to run it.
 * Kernel and CRIU are otherwise independent, so a caller can build only kernels (a CI job).
 */
export const STAGE_GRAPH: Record<StageName, { needs: StageName[]; uses: StageName[] }> = {
  kernel: { needs: [], uses: [] },
  criu: { needs: [], uses: ["kernel"] },
  agent: { needs: [], uses: [] },
  // The agent stage is "skipped" when none is configured: the image then has none.
  image: { needs: ["criu", "agent"], uses: [] },
  boot: { needs: ["kernel", "image"], uses: [] },
};

/** The kernel with what the rest of the pipeline needs from it: its ref and its final .config. */
export interface KernelArtifact {
  stage: KernelStageResult;
  /** Absent for a check-config run, which builds nothing. */
  ref?: KernelRef;
  config?: Map<string, string>;
}

export interface StageValues {
  kernel: KernelArtifact;
  criu: CriuStageResult;
  agent: AgentArtifact | undefined;
  image: ImageResult;
  boot: RunRecord;
}

/** What every stage gives back, whatever it built. */
export interface StageOutcome<S extends StageName = StageName> {
  stage: S;
  status: "done" | "skipped";
  cached: boolean;
  seconds: number;
  /** What the artifact is (cache key, version, hashes): recorded in results and cells. */
  identity: Record<string, unknown> | null;
  /** What a user wants to read on the way: warnings, provider notes, predictions. */
  notes: string[];
  value: StageValues[S];
}

export type Outcomes = { [S in StageName]?: StageOutcome<S> };

export interface DriveOptions {
  kernel?: KernelStageOptions;
  criu?: Pick<CriuStageOptions, "force" | "strict" | "kernelConfig" | "kernelVersion" | "plan">;
  /** More CRIU builds for the image (a migration image holds both versions). */
  image?: { more?: CriuStageResult[] };
  boot?: {
    force?: boolean;
    log?: (line: string) => void;
    conf?: Record<string, string>;
    only?: BootRunOptions["only"];
    transfer?: BootRunOptions["transfer"];
    vcpus?: number;
  };
  /** Outcomes obtained before (a matrix shares one kernel across cells): used, not run again. */
  given?: Outcomes;
  /** Called as each stage finishes (a command prints its notes before the next stage starts). */
  onOutcome?: (o: StageOutcome) => void;
}

/**
 * The stages `targets` need (minus those given), in an order where each comes after what it
 * needs and after what it uses from the same run.
 */
export function stagesFor(targets: StageName[], given: StageName[] = []): StageName[] {
  const wanted = new Set<StageName>();
  const close = (s: StageName) => {
    if (wanted.has(s) || given.includes(s)) return;
    wanted.add(s);
    STAGE_GRAPH[s].needs.forEach(close);
  };
  targets.forEach(close);
  const order: StageName[] = [];
  const visit = (s: StageName) => {
    if (order.includes(s)) return;
    for (const d of [...STAGE_GRAPH[s].needs, ...STAGE_GRAPH[s].uses]) if (wanted.has(d)) visit(d);
    order.push(s);
  };
  [...wanted].forEach(visit);
  return order;
}

const failedStages = new WeakMap<object, StageName>();

/** The stage an error of `drive` came from (a matrix cell records it as failed_stage). */
export function failedStageOf(err: unknown): StageName | undefined {
  return typeof err === "object" && err !== null ? failedStages.get(err) : undefined;
}

type Runner<S extends StageName> = (
  config: PipelineConfig,
  done: Outcomes,
  o: DriveOptions,
) => Promise<Omit<StageOutcome<S>, "stage" | "seconds">>;

const RUNNERS: { [S in StageName]: Runner<S> } = {
  async kernel(config, _done, o) {
    const stage = await runKernelStage(config, o.kernel ?? {});
    const ref = stage.dir && stage.metadata ? kernelRef(stage) : undefined;
    const finalConfig = stage.finalConfig ?? (ref ? loadDotConfig(join(ref.dir, "config")) : undefined);
    return {
      status: "done",
      cached: stage.cached,
      identity: ref
        ? {
            key: ref.key,
            version: ref.version,
            release: ref.release ?? null,
            config_sha256: ref.config_sha256,
          }
        : null,
      notes: stage.warnings.map((w) => `warning: ${w}`),
      value: { stage, ref, config: finalConfig },
    };
  },
  async criu(config, done, o) {
    const k = done.kernel?.value;
    return criuOutcome(
      await runCriuStage(config, {
        ...o.criu,
        kernelConfig: k?.config ?? o.criu?.kernelConfig,
        kernelVersion: k?.ref?.version ?? o.criu?.kernelVersion,
      }),
    );
  },
  async agent(config) {
    if (!config.agent.binary && !config.agent.kata_src)
      return { status: "skipped", cached: false, identity: null, notes: [], value: undefined };
    const state: { agent?: AgentArtifact } = {};
    await runSteps(state, [
      { title: "kata-agent", run: async (s, log) => void (s.agent = await runAgentStage(config, log)) },
    ]);
    const a = state.agent!;
    return {
      status: "done",
      cached: a.cached,
      identity: {
        key: basename(a.dir),
        sha256: a.metadata.agent.sha256,
        kata_version: a.metadata.kata_version,
      },
      notes: [],
      value: a,
    };
  },
  async image(config, done, o) {
    const criu = done.criu!.value;
    const state: { image?: ImageResult } = {};
    await runSteps(state, [
      {
        title: `Image ${config.image.name}`,
        run: async (s, log) =>
          void (s.image = await runImageStage(config, {
            criu,
            agent: done.agent?.value,
            log,
            more: o.image?.more,
          })),
      },
    ]);
    return imageOutcome(state.image!);
  },
  async boot(config, done, o) {
    const kernel = done.kernel!.value.ref;
    if (!kernel)
      throw new UserError("a check-config kernel run builds no kernel to boot", "drop --check-config");
    const image = done.image!.value;
    // A kernel that cannot mount the image's root (modules, no initrd) is not booted at all.
    const { bus, blockers } = bootPlan(done.kernel!.value.config ?? new Map());
    if (blockers.length)
      throw new KernelCannotBootError(`linux ${kernel.release ?? kernel.version}`, blockers);
    const accel = await chooseAccel(config, join(kernel.dir, "vmlinuz"));
    const state: { run?: RunRecord } = {};
    await runSteps(state, [
      {
        title: `Boot and test: linux ${kernel.version}, CRIU ${done.criu!.value.metadata.version} (${accel.accel})`,
        run: async (s, log) =>
          void (s.run = await runBootTests(config, {
            kernel,
            image,
            criu: done.criu!.value,
            accel: accel.accel,
            bus,
            force: o.boot?.force,
            log: o.boot?.log ?? log,
            conf: o.boot?.conf,
            only: o.boot?.only,
            transfer: o.boot?.transfer,
            vcpus: o.boot?.vcpus,
          })),
      },
    ]);
    const run = state.run!;
    return {
      status: "done",
      cached: run.cached,
      identity: { key: run.results.run_key },
      notes: [],
      value: run,
    };
  },
};

function criuOutcome(
  criu: CriuStageResult,
  notes: string[] = [],
): Omit<StageOutcome<"criu">, "stage" | "seconds"> {
  const m = criu.metadata;
  return {
    status: "done",
    cached: criu.cached,
    identity: {
      key: basename(criu.dir),
      version: m.version,
      provider: m.provider,
      link: m.link,
      sha256: m.criu.sha256,
      patches: m.patches.map((p) => p.name),
    },
    notes: [...notes, ...criu.attempts.map((a) => `note: ${a}`)],
    value: criu,
  };
}

function imageOutcome(
  im: ImageResult,
  notes: string[] = [],
): Omit<StageOutcome<"image">, "stage" | "seconds"> {
  return {
    status: "done",
    cached: im.cached,
    identity: { key: basename(im.dir), base: im.manifest.base, suite: im.manifest.suite },
    notes,
    value: im,
  };
}

type Stripped<S extends StageName> = Omit<StageOutcome<S>, "stage" | "seconds">;

/**
 * The kernel with the later stages' work beside it (side-work.ts): sources, chroots, the guest
 * rootfs and the CRIU build itself, at the idle CPU priority, as the compile is CPU bound and
 * leaves a core free now and then; for a run that boots, the KVM probe too (earlyAccelProbe).
 * The kernel or the side work failing stops the others (the probe never fails a run). What the
 * side work did is a note of the kernel outcome; a CRIU it built is this run's CRIU outcome.
 */
async function kernelWithSideWork(
  config: PipelineConfig,
  done: Outcomes,
  o: DriveOptions,
  wants: SideWants,
  boots: boolean,
): Promise<{ kernel: Stripped<"kernel">; criu?: Stripped<"criu">; image?: Stripped<"image"> }> {
  const plan = o.criu!.plan!;
  const key = servingCandidate(plan)?.key;
  const criuCached = Boolean(key && new ArtifactCache(config.cache_dir).has("criu", key));
  const items = sideWorkPlan(config, wants, plan, criuCached);
  const probe = boots ? await earlyAccelProbe(config) : undefined;
  if (!items.length && !probe) return { kernel: await RUNNERS.kernel(config, done, o) };
  // The side work's CRIU build waits for the kernel's final .config: given before the compile
  // by a fresh build, at the end by a cached kernel; a failed kernel rejects it.
  let configured!: (v: KernelConfigured) => void;
  let notConfigured!: (err: unknown) => void;
  const kernelConfigured = new Promise<KernelConfigured>(
    (res, rej) => ((configured = res), (notConfigured = rej)),
  );
  kernelConfigured.catch(() => undefined);
  let kernel: Stripped<"kernel"> | undefined;
  let result: Awaited<ReturnType<typeof runSideWork>> | undefined;
  const branches: ConcurrentBranch[] = [
    {
      title: "Kernel",
      branch: new Branch("the kernel build"),
      run: async () => {
        try {
          kernel = await RUNNERS.kernel(config, done, {
            ...o,
            kernel: { ...o.kernel, onConfigured: (c, version) => configured({ config: c, version }) },
          });
        } catch (err) {
          notConfigured(err);
          throw err;
        }
        const k = kernel.value;
        if (k.config && k.ref) configured({ config: k.config, version: k.ref.version });
        else notConfigured(new Error("the kernel stage gave no .config"));
      },
    },
  ];
  if (items.length)
    branches.push({
      title: `Beside the kernel (at ${SIDE_WORK_PRIORITY} CPU priority)`,
      branch: new Branch("the side work", SIDE_WORK_PRIORITY),
      run: async () => {
        const sink = currentSink() ?? { title: () => undefined, line: () => undefined };
        // The CRIU stage as the driver runs it after the kernel: same findings, same refusal.
        const buildCriu = (k: KernelConfigured) =>
          runCriuStage(config, { ...o.criu, kernelConfig: k.config, kernelVersion: k.version });
        // The image stage as the driver runs it, on the base the side work made (no agent: see sideWorkPlan).
        const buildImage = (criu: CriuStageResult, prepared: PreparedImage) =>
          runImageStage(config, { criu, log: sink.line, prepared });
        result = await runSideWork({ config, plan, items, kernelConfigured, buildCriu, buildImage, sink });
      },
    });
  if (probe) branches.push(probe.branch);
  await runConcurrently(branches);
  const notes = [
    ...kernel!.notes,
    ...(result
      ? [`note: beside the kernel (at ${SIDE_WORK_PRIORITY} CPU priority): ${result.done.join(", ")}`]
      : []),
    ...(probe?.note() ?? []),
  ];
  const beside = `note: built beside the kernel (at ${SIDE_WORK_PRIORITY} CPU priority)`;
  return {
    kernel: { ...kernel!, notes },
    criu: result?.criu ? criuOutcome(result.criu, result.criu.cached ? [] : [beside]) : undefined,
    image: result?.image ? imageOutcome(result.image, result.image.cached ? [] : [beside]) : undefined,
  };
}

/**
 * The KVM probe of a run that boots, moved from after the kernel to beside it: it boots the
 * host's kernel (no kernel of ours exists yet) into the verdict cache the boot stage reads. At
 * normal priority: at the idle one a working KVM, starved by the compile, could miss the
 * probe's deadline and be cached as broken. Undefined when no probe is due (a cached verdict,
 * no /dev/kvm, boot.accel set) or the host has no kernel to probe with; a probe that fails
 * to run leaves the verdict to the boot stage, as before.
 */
async function earlyAccelProbe(
  config: PipelineConfig,
): Promise<{ branch: ConcurrentBranch; note: () => string[] } | undefined> {
  const hostKernel = hostProbeKernel();
  if (!hostKernel || !(await accelProbeDue(config))) return undefined;
  let note: string | undefined;
  const run = async () => {
    const t0 = Date.now();
    try {
      const got = await chooseAccel(config, hostKernel);
      note = `note: KVM probe beside the kernel (${hostKernel}): ${got.accel}, ${got.reason}, ${((Date.now() - t0) / 1000).toFixed(0)} s`;
    } catch (err) {
      if (err instanceof BranchCancelledError) throw err;
      note = `note: KVM probe beside the kernel (${hostKernel}) did not run (${(err as Error).message}); the boot stage probes`;
    }
  };
  return {
    branch: { title: "KVM probe (host kernel)", branch: new Branch("the KVM probe"), run },
    note: () => (note ? [note] : []),
  };
}

/**
 * Runs `targets` and every stage they need (those in `o.given` are taken as they are), one
 * after another in graph order: on the machines this runs on, a kernel and a CRIU build each
 * use every core, so overlapping them gains nothing and muddles the progress display.
 */
export async function drive(
  config: PipelineConfig,
  targets: StageName[],
  o: DriveOptions = {},
): Promise<Outcomes> {
  const done: Outcomes = { ...o.given };
  const order = stagesFor(targets, Object.keys(o.given ?? {}) as StageName[]);
  // The CRIU plan, resolved once: the side work beside the kernel and the CRIU stage read it.
  if (order.includes("kernel") && order.includes("criu") && !o.criu?.plan)
    o = { ...o, criu: { ...o.criu, plan: resolveAndPlanCriu(config, { strict: o.criu?.strict ?? true }) } };
  // CRIU and image stages the side work ran beside the kernel (their seconds are the kernel's too).
  let early: { criu?: Stripped<"criu">; image?: Stripped<"image"> } = {};
  for (const s of order) {
    const t0 = Date.now();
    try {
      let out: Stripped<StageName>;
      if (s === "kernel" && order.includes("criu")) {
        const both = await kernelWithSideWork(
          config,
          done,
          o,
          { criu: true, image: order.includes("image"), moreCriu: Boolean(o.image?.more?.length) },
          order.includes("boot"),
        );
        out = both.kernel;
        early = both;
      } else if (s === "criu" && early.criu) out = early.criu;
      else if (s === "image" && early.image) out = early.image;
      else out = await (RUNNERS[s] as Runner<typeof s>)(config, done, o);
      const outcome = { stage: s, seconds: (Date.now() - t0) / 1000, ...out } as StageOutcome;
      (done as Record<string, StageOutcome>)[s] = outcome;
      o.onOutcome?.(outcome);
    } catch (err) {
      if (typeof err === "object" && err !== null && !failedStages.has(err)) failedStages.set(err, s);
      throw err;
    }
  }
  return done;
}
