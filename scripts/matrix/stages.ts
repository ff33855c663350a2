/**
 * The real stages of a matrix cell: the same kernel, CRIU, image and boot stages the single
 * commands run (scripts/pipeline.ts), with their progress routed to the cell's line.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { chooseAccel } from "../boot/accel.js";
import { runBootTests, type RunResults } from "../boot/stage.js";
import type { PipelineConfig } from "../lib/config.js";
import { withProgressSink } from "../lib/progress.js";
import { prepareImage, prepareKernel, type PreparedImage, type PreparedKernel } from "../pipeline.js";
import { INFORMATIONAL_TESTS, cellTests, tailLines, type CellResult } from "./cell.js";
import { loadScenarios, observedTests } from "../boot/run-input.js";
import { applyBoot, baseCell, type BootOutcome, type CellStages, type ImageOutcome, type KernelOutcome } from "./run.js";
import { AXES, type PlannedCell } from "./spec.js";

export type ProgressFn = (cellId: string, line: string) => void;

function kernelIdentity(k: PreparedKernel): NonNullable<CellResult["identities"]["kernel"]> {
  const r = k.ref;
  return { key: r.key, version: r.version, release: r.release ?? null, config_sha256: r.config_sha256 };
}

function imageIdentities(im: PreparedImage): { criu: NonNullable<CellResult["identities"]["criu"]>; image: NonNullable<CellResult["identities"]["image"]> } {
  const m = im.criu.metadata;
  return {
    criu: { key: basename(im.criu.dir), version: m.version, provider: m.provider, link: m.link, sha256: m.criu.sha256, patches: m.patches.map((p) => p.name) },
    image: { key: basename(im.dir), base: im.manifest.base, suite: im.manifest.suite },
  };
}

/** The compatibility check's findings: what the run is expected to show. */
function predictionsOf(im: PreparedImage): CellResult["predicted"] {
  return im.findings.map((f) => ({ severity: f.severity, id: f.id, what: f.what }));
}

/** What does not decide a cell: criu check --all and --feature, and the scenarios' observing cases. */
export function informationalFor(config: PipelineConfig): string[] {
  return [...INFORMATIONAL_TESTS, ...observedTests(loadScenarios(config.boot.scenarios))];
}

/** Runs fn with every nested stage's step title and log line reported as the cell's progress. */
function inCell<T>(c: PlannedCell, what: string, progress: ProgressFn, fn: () => Promise<T>): Promise<T> {
  let step = what;
  return withProgressSink({ title: (t) => progress(c.id, (step = `${what}: ${t}`)), line: (l) => progress(c.id, `${step} | ${l}`) }, fn);
}

/** forceBoot: boot again even when a complete run of the same inputs is cached (bench, --force). */
export function realStages(progress: ProgressFn = () => undefined, o: { forceBoot?: boolean } = {}): CellStages<PreparedKernel, PreparedImage> {
  return {
    async kernel(c): Promise<KernelOutcome<PreparedKernel>> {
      const k = await inCell(c, `kernel ${c.axes.kernel}`, progress, () => prepareKernel(c.config));
      return { handle: k, cached: k.stage.cached, identity: kernelIdentity(k) };
    },
    async image(c, kernel): Promise<ImageOutcome<PreparedImage>> {
      // force: a predicted failure is what the matrix is there to observe, not to refuse.
      const im = await inCell(c, `CRIU ${c.criuVersion} + image`, progress, () => prepareImage(c.config, { force: true, kernel, strict: false }));
      return { handle: im, cached: im.cached && im.criu.cached, ...imageIdentities(im), predicted: predictionsOf(im) };
    },
    async boot(c, kernel, image): Promise<BootOutcome> {
      return inCell(c, "boot", progress, async () => {
        const accel = await chooseAccel(c.config, join(kernel.ref.dir, "vmlinuz"));
        const run = await runBootTests(c.config, { kernel: kernel.ref, image, criu: image.criu, accel: accel.accel, force: o.forceBoot, log: (l) => progress(c.id, `boot | ${l}`) });
        return bootOutcome(run, informationalFor(c.config));
      });
    },
  };
}

/** A guest run as the matrix records it: verdicts, evidence, and the console tail when broken. */
export function bootOutcome(run: { dir: string; cached: boolean; results: RunResults }, informational: string[]): BootOutcome {
  const r = run.results;
  const consoleFile = join(run.dir, r.attempts.at(-1)?.console_log ?? "");
  const broken = r.status === "ERROR" || r.summary.FAIL > 0;
  return {
    status: r.status,
    error: r.error,
    run_key: r.run_key,
    cached: run.cached,
    accel: r.accel,
    tests: cellTests(r.tests),
    summary: r.summary,
    informational,
    guest: r.guest,
    console_tail: broken && existsSync(consoleFile) ? tailLines(readFileSync(consoleFile, "utf8"), 60) : "",
    paths: { run_dir: run.dir, results: join(run.dir, "results.json"), console: consoleFile },
  };
}

/**
 * One run of `cr-guest smoke` as a one-cell report, so the main job ends with the same
 * report a matrix writes. Its axes are what the config says.
 */
export function cellOfSingleRun(config: PipelineConfig, kernel: PreparedKernel, image: PreparedImage, run: { dir: string; cached: boolean; results: RunResults }): CellResult {
  const m = image.criu.metadata;
  const patches = m.patches.map((p) => p.name);
  const axes = { criu: m.version, kernel: config.kernel.version, patches: patches.join("+") || "unpatched", suite: image.manifest.suite ?? "existing" };
  const cell = baseCell(
    config.image.name,
    { id: AXES.map((a) => axes[a]).join("_"), axes, criuVersion: m.version, patches, sets: config.sources.filter((s) => s.startsWith("--set ")).map((s) => s.slice(6)), inputsKey: run.results.run_key },
    new Date(Date.now() - run.results.seconds * 1000),
  );
  cell.predicted = predictionsOf(image);
  cell.identities = { kernel: kernelIdentity(kernel), ...imageIdentities(image) };
  applyBoot(cell, bootOutcome(run, informationalFor(config)));
  return { ...cell, finished: run.results.created, seconds: run.results.seconds };
}
