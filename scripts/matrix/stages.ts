/**
 * The real stages of a matrix cell: the driver's kernel, CRIU + image and boot stages (the
 * same ones the single commands run), with their progress routed to the cell's line.
 */
import { basename } from "node:path";
import type { PipelineConfig } from "../lib/config.js";
import { withProgressSink } from "../lib/progress.js";
import { drive, type Outcomes, type StageOutcome } from "../driver.js";
import type { RunRecord } from "../boot/stage.js";
import { doctorForBuilt, resolveAndPlanCriu, servingCandidate } from "../criu/stage.js";
import { ArtifactCache } from "../lib/cache.js";
import { applyRun, baseCell, type CellStages, type ImageOutcome, type KernelOutcome } from "./run.js";
import { informationalFor, type CellResult } from "./cell.js";
import { AXES, type PlannedCell } from "./spec.js";

export type ProgressFn = (cellId: string, line: string) => void;

/** What the matrix keeps of the CRIU, agent and image stages: the driver's outcomes. */
type ImageStages = Required<Pick<Outcomes, "criu" | "image">> & Pick<Outcomes, "agent">;

function kernelIdentity(k: StageOutcome<"kernel">): NonNullable<CellResult["identities"]["kernel"]> {
  const r = k.value.ref!;
  return { key: r.key, version: r.version, release: r.release ?? null, config_sha256: r.config_sha256 };
}

function imageIdentities(o: ImageStages): {
  criu: NonNullable<CellResult["identities"]["criu"]>;
  image: NonNullable<CellResult["identities"]["image"]>;
} {
  const m = o.criu.value.metadata;
  const im = o.image.value;
  return {
    criu: {
      key: basename(o.criu.value.dir),
      version: m.version,
      provider: m.provider,
      link: m.link,
      sha256: m.criu.sha256,
      patches: m.patches.map((p) => p.name),
      ...(m.commit ? { commit: m.commit } : {}),
    },
    image: { key: basename(im.dir), base: im.manifest.base, suite: im.manifest.suite },
  };
}

/**
 * The compatibility check's findings for one cell: its CRIU against its own kernel (the CRIU
 * and image stages are shared across kernels, so their own findings name only the first).
 */
function predictionsFor(
  config: PipelineConfig,
  kernel: StageOutcome<"kernel">,
  o: ImageStages,
): CellResult["predicted"] {
  const findings = doctorForBuilt(config, o.criu.value.metadata, {
    kernelConfig: kernel.value.config,
    kernelVersion: kernel.value.ref?.version,
  });
  return findings.map((f) => ({
    severity: f.severity,
    id: f.id,
    what: f.what,
    ...(f.test ? { test: f.test, expect: f.expect } : {}),
  }));
}

/** Runs fn with every nested stage's step title and log line reported as the cell's progress. */
function inCell<T>(c: PlannedCell, what: string, progress: ProgressFn, fn: () => Promise<T>): Promise<T> {
  let step = what;
  return withProgressSink(
    { title: (t) => progress(c.id, (step = `${what}: ${t}`)), line: (l) => progress(c.id, `${step} | ${l}`) },
    fn,
  );
}

/** forceBoot: boot again even when a complete run of the same inputs is cached (bench, --force). */
export function realStages(
  progress: ProgressFn = () => undefined,
  o: { forceBoot?: boolean } = {},
): CellStages<StageOutcome<"kernel">, ImageStages> {
  return {
    async kernel(c): Promise<KernelOutcome<StageOutcome<"kernel">>> {
      const { kernel } = await inCell(c, `kernel ${c.axes.kernel}`, progress, () =>
        drive(c.config, ["kernel"]),
      );
      return { handle: kernel!, cached: kernel!.cached, identity: kernelIdentity(kernel!) };
    },
    async image(c, kernel): Promise<ImageOutcome<ImageStages>> {
      // force: a predicted failure is what the matrix is there to observe, not to refuse.
      const out = await inCell(c, `CRIU ${c.criuVersion} + image`, progress, () =>
        drive(c.config, ["image"], { given: { kernel }, criu: { force: true, strict: false } }),
      );
      const stages: ImageStages = { criu: out.criu!, agent: out.agent, image: out.image! };
      return { handle: stages, cached: out.image!.cached && out.criu!.cached, ...imageIdentities(stages) };
    },
    imageIsLight(c) {
      const key = servingCandidate(resolveAndPlanCriu(c.config, { strict: false }))?.key;
      return Boolean(key && new ArtifactCache(c.config.cache_dir).has("criu", key));
    },
    predict: (c, kernel, image) => predictionsFor(c.config, kernel, image),
    async boot(c, kernel, image, vcpus): Promise<RunRecord> {
      return inCell(c, "boot", progress, async () => {
        const out = await drive(c.config, ["boot"], {
          given: { kernel, ...image },
          boot: { force: o.forceBoot, log: (l) => progress(c.id, `boot | ${l}`), vcpus },
        });
        return out.boot!.value;
      });
    },
  };
}

/**
 * One run of `cr-guest smoke` as a one-cell report, so the main job ends with the same
 * report a matrix writes. Its axes are what the config says.
 */
export function cellOfSingleRun(config: PipelineConfig, out: Outcomes): CellResult {
  const stages: ImageStages = { criu: out.criu!, agent: out.agent, image: out.image! };
  const run = out.boot!.value;
  const m = stages.criu.value.metadata;
  const patches = m.patches.map((p) => p.name);
  const axes = {
    criu: m.version,
    kernel: config.kernel.version,
    patches: patches.join("+") || "unpatched",
    suite: stages.image.value.manifest.suite ?? "existing",
  };
  const cell = baseCell(
    config.image.name,
    {
      id: AXES.map((a) => axes[a]).join("_"),
      axes,
      criuVersion: m.version,
      patches,
      sets: config.sources.filter((s) => s.startsWith("--set ")).map((s) => s.slice(6)),
      inputsKey: run.results.run_key,
    },
    new Date(Date.now() - run.results.seconds * 1000),
  );
  cell.predicted = predictionsFor(config, out.kernel!, stages);
  cell.identities = { kernel: kernelIdentity(out.kernel!), ...imageIdentities(stages) };
  applyRun(cell, run, informationalFor(config), config.cache_dir);
  return { ...cell, finished: run.results.created, seconds: run.results.seconds };
}
