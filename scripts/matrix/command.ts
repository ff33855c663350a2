/**
 * `cr-guest matrix`: plan -> run the cells (listr2, one line per cell) -> reports. Also the
 * plan display with cache state, report writing and the matrix's migration pairs.
 */
import { writeAtomic } from "../lib/fs-atomic.js";
import { existsSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, relative } from "node:path";
import { Listr } from "listr2";
import { ArtifactCache } from "../lib/cache.js";
import { REPO_ROOT } from "../lib/paths.js";
import { listrOnStderr, throttledOutput } from "../lib/progress.js";
import { fixFragments } from "../boot/causes.js";
import { collectCells, diagnoseCell, storedCell, writeCell, type CellResult } from "./cell.js";
import { pairCell, pairInputsKey } from "./pairs.js";
import { pairAxes, pairId } from "../migrate/pair.js";
import { runMigration } from "../migrate/run.js";
import { cacheKey } from "../lib/hash.js";
import { errorMessage, UserError } from "../lib/errors.js";
import { failsUnexpectedly } from "./verdicts.js";
import {
  buildReport,
  cellSummary,
  renderHtml,
  renderJunit,
  renderMarkdown,
  type MatrixReport,
} from "./report.js";
import { keepStored, runMatrix, type KernelOutcome, type MatrixRunSummary } from "./run.js";
import type { StageOutcome } from "../driver.js";
import {
  CELL_DATA_PATHS,
  dataHash,
  planPairs,
  sharedStages,
  type MatrixPlan,
  type PlannedCell,
} from "./spec.js";
import { realStages } from "./stages.js";
import { GITHUB_WORKFLOW } from "./ci.js";

/** The workflow's path lives with the CI steps; the CLI imports it from here too. */
export { GITHUB_WORKFLOW };

export function defaultOutDir(plan: MatrixPlan, cacheDir: string): string {
  return join(cacheDir, "matrix", plan.spec.name);
}

/** Stage artifacts a matrix run used, by group: lets --plan say what is cached. */
const STAGE_INDEX = "stage-index.json";
type StageIndex = Record<string, string>;

function readStageIndex(outDir: string): StageIndex {
  const f = join(outDir, STAGE_INDEX);
  return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as StageIndex) : {};
}

export async function writeReports(dir: string, r: MatrixReport): Promise<Record<string, string>> {
  const files = {
    json: join(dir, "matrix.json"),
    md: join(dir, "matrix.md"),
    html: join(dir, "matrix.html"),
    junit: join(dir, "junit.xml"),
  };
  await writeAtomic(files.json, `${JSON.stringify(r, null, 2)}\n`);
  await writeAtomic(files.md, renderMarkdown(r));
  await writeAtomic(files.html, renderHtml(r));
  await writeAtomic(files.junit, renderJunit(r));
  return files;
}

/** The plan as a table: each cell, whether its result is kept, what each stage will cost. */
export async function formatPlan(
  plan: MatrixPlan,
  picked: PlannedCell[],
  outDir: string,
  force: boolean,
  pairs?: { set: string[] },
): Promise<string> {
  const index = readStageIndex(outDir);
  const cached = (group: string) => Boolean(index[group] && existsSync(join(index[group], "metadata.json")));
  const lines: string[] = [];
  const s = sharedStages(picked);
  const most = `${s.kernels} kernel builds, ${s.criuBuilds} CRIU builds, ${s.images} images, ${s.boots} boots`;
  lines.push(
    `matrix '${plan.spec.name}' (${plan.spec.file}): ${picked.length} of ${plan.cells.length} cells; at most ${most}`,
  );
  lines.push(`results: ${outDir}`);
  lines.push("");
  const width = Math.max(...picked.map((c) => c.id.length), 4);
  if (picked.length)
    lines.push(
      "  (kernel, image: '?' = not used by this matrix yet; the stage still takes a cached artifact)",
      `  ${"cell".padEnd(width)}  result     kernel   criu           image`,
    );
  for (const c of picked) {
    if (c.skip) {
      lines.push(`  ${c.id.padEnd(width)}  SKIPPED    ${c.skip}`);
      continue;
    }
    const stored = storedCell(outDir, c.id);
    const result = keepStored(stored, c, force) ? `kept ${stored!.status}`.padEnd(10) : "will run  ";
    const cache = new ArtifactCache(c.config.cache_dir);
    const serving = c.criuCandidates.find((cand) => cand.key);
    let criu = `${serving?.provider ?? "?"}`.padEnd(14);
    for (const cand of c.criuCandidates)
      if (cand.key && (await cache.lookup("criu", cand.key))) criu = `cached (${cand.provider})`.padEnd(14);
    const kernel = (cached(c.groups.kernel) ? "cached" : "?").padEnd(8);
    const image = cached(c.groups.image) ? "cached" : "?";
    lines.push(`  ${c.id.padEnd(width)}  ${result} ${kernel} ${criu} ${image}`);
  }
  const planned = pairs ? planPairs(plan.spec) : [];
  if (planned.length) {
    lines.push("", `migration pairs (after the cells; each is two boots, or one in place):`);
    const data = dataHash(CELL_DATA_PATHS);
    const pw = Math.max(...planned.map((p) => pairId(p.pair).length));
    for (const p of planned) {
      const id = pairId(p.pair);
      const stored = storedCell(outDir, id);
      const kept =
        stored && !force && stored.inputs_key === pairKey(p, pairs!, data) && stored.status !== "ERROR";
      lines.push(
        `  ${id.padEnd(pw)}  ${(kept ? `kept ${stored.status}` : "will run").padEnd(10)} ${pairAxes(p.pair)}`,
      );
    }
  }
  if (plan.excluded.length) {
    lines.push("", "not in the matrix:");
    for (const e of plan.excluded) lines.push(`  ${e.id}: ${e.reason}`);
  }
  return lines.join("\n");
}

export interface MatrixCommandOptions {
  plan: MatrixPlan;
  cells: PlannedCell[];
  outDir: string;
  force: boolean;
  jobs?: number;
  /** Where each cell's kernel comes from instead of the kernel stage (CI: the packed kernels). */
  kernelFrom?: (c: PlannedCell) => Promise<KernelOutcome<StageOutcome<"kernel">>>;
  /** Run the matrix's migration pairs after the cells (one at a time: each is two boots). */
  pairs?: boolean;
  /** The user's config file and --set arguments (a pair derives each side's config from them). */
  base?: { configFile?: string; set: string[] };
}

/** Cells of this matrix stored in outDir (from this run or earlier ones), in plan order; then its pairs. */
export function storedCellsOf(plan: MatrixPlan, outDir: string): CellResult[] {
  const dir = join(outDir, "cells");
  if (!existsSync(dir)) return [];
  const byId = new Map(collectCells(dir).map((c) => [c.id, c]));
  // A cell kept from an earlier run gets the causes the map finds now, from its kernel's .config.
  for (const c of plan.cells) {
    const stored = byId.get(c.id);
    const sets = c.config.fragment_sets[c.config.kernel.fragment_set] ?? [];
    if (stored) byId.set(c.id, diagnoseCell(stored, c.config.cache_dir, fixFragments(sets)));
  }
  const ids = [...plan.cells.map((c) => c.id), ...planPairs(plan.spec).map((p) => pairId(p.pair))];
  return ids.map((id) => byId.get(id)).filter((c): c is CellResult => Boolean(c));
}

/** What a stored pair must match to be kept: both sides' sets over the user's, and the repo data. */
function pairKey(p: ReturnType<typeof planPairs>[number], base: { set: string[] }, data: string): string {
  return pairInputsKey(
    cacheKey({ sets: [...base.set, ...p.pair.from.sets], data }),
    cacheKey({ sets: [...base.set, ...p.pair.to.sets], data }),
  );
}

/**
 * The matrix's migration pairs, one after another (each is two boots on every core it gets);
 * a stored pair with the same inputs is kept unless forced. Returns the pair cells.
 */
export async function runMatrixPairs(
  plan: MatrixPlan,
  outDir: string,
  o: { force: boolean; base: { configFile?: string; set: string[] }; say: (line: string) => void },
): Promise<CellResult[]> {
  const data = dataHash(CELL_DATA_PATHS);
  const out: CellResult[] = [];
  for (const p of planPairs(plan.spec)) {
    const id = pairId(p.pair);
    const inputsKey = pairKey(p, o.base, data);
    const stored = storedCell(outDir, id);
    if (stored && !o.force && stored.inputs_key === inputsKey && stored.status !== "ERROR") {
      o.say(`pair ${id}: ${stored.status} (kept from an earlier run)`);
      out.push(stored);
      continue;
    }
    o.say(`pair ${id}: ${pairAxes(p.pair)}`);
    let cell: CellResult;
    try {
      const r = await runMigration(o.base, p.pair, { force: o.force, log: (l) => o.say(`  ${l}`) });
      cell = pairCell(plan.spec.name, p.base, p.to, inputsKey, r);
    } catch (err) {
      // A side that cannot be served or built: the pair did not run (SKIPPED with the fix).
      const r = {
        id,
        axes: { from: p.pair.from, to: p.pair.to, in_place: false, changes: pairAxes(p.pair) },
        status: "SKIPPED" as const,
        reason: `${errorMessage(err)}${err instanceof UserError && err.hint ? `; ${err.hint}` : ""}`,
        cases: [],
        predicted: [],
        identities: { from: { criu: null, kernel: null }, to: { criu: null, kernel: null }, image: null },
        runs: { dump: null, restore: null },
        transfer: null,
        crit: [],
        seconds: 0,
        created: new Date().toISOString(),
        schema: 1 as const,
      };
      cell = pairCell(plan.spec.name, p.base, p.to, inputsKey, r);
    }
    await writeCell(outDir, cell);
    o.say(`pair ${id}: ${cell.status}${cell.reason ? ` (${cell.reason.split("\n")[0].slice(0, 160)})` : ""}`);
    out.push(cell);
  }
  return out;
}

type RealStages = ReturnType<typeof realStages>;

/**
 * The real stages with the stage index kept up to date as kernels and images come. Every other
 * hook passes through as it is (imageIsLight was once dropped here: every image then took the
 * whole machine and the boots waited behind them).
 */
export function indexedStages(
  stages: RealStages,
  index: Record<string, string>,
  outDir: string,
  kernelFrom?: RealStages["kernel"],
): RealStages {
  return {
    ...stages,
    kernel: async (c) => {
      const k = await (kernelFrom ?? stages.kernel)(c);
      index[c.groups.kernel] = k.handle.value.ref!.dir;
      await writeAtomic(join(outDir, STAGE_INDEX), `${JSON.stringify(index, null, 2)}\n`);
      return k;
    },
    image: async (c, k) => {
      const im = await stages.image(c, k);
      index[c.groups.image] = im.handle.image.value.dir;
      await writeAtomic(join(outDir, STAGE_INDEX), `${JSON.stringify(index, null, 2)}\n`);
      return im;
    },
  };
}

export async function runMatrixCommand(
  o: MatrixCommandOptions,
): Promise<{ summary: MatrixRunSummary; report: MatrixReport; files: Record<string, string> }> {
  const boot = o.cells[0]?.config.boot;
  const capacity = Math.max(1, cpus().length);
  // A TCG boot uses a host thread per vCPU: boots share the cores, builds take them all.
  const bootWeight = o.jobs
    ? Math.max(1, Math.floor(capacity / o.jobs))
    : Math.min(capacity, boot?.cpus ?? 1);
  const index = readStageIndex(o.outDir);
  const deferred = new Map<string, { promise: Promise<CellResult>; resolve: (c: CellResult) => void }>();
  const outputs = new Map<string, (line: string) => void>();
  for (const c of o.cells) {
    let resolve!: (c: CellResult) => void;
    const promise = new Promise<CellResult>((r) => (resolve = r));
    deferred.set(c.id, { promise, resolve });
  }
  const onStderr = listrOnStderr();
  const list = new Listr(
    o.cells.map((c) => ({
      title: c.id,
      task: async (_: unknown, task: { output: string; title: string }) => {
        outputs.set(
          c.id,
          throttledOutput((line) => (task.output = line)),
        );
        const cell = await deferred.get(c.id)!.promise;
        const why = cellSummary(cell) || cell.reason?.split("\n")[0].slice(0, 120);
        task.title = `${c.id}: ${cell.status}${why ? ` (${why})` : ""}`;
      },
    })),
    {
      concurrent: true,
      exitOnError: false,
      ...onStderr,
      rendererOptions: { ...onStderr.rendererOptions, collapseSubtasks: false },
    },
  );
  const display = list.run({});
  const progress = (id: string, line: string) => outputs.get(id)?.(line);
  const stages = realStages(progress, { forceBoot: o.force });
  const summary = await runMatrix(o.plan, o.cells, {
    outDir: o.outDir,
    stages: indexedStages(stages, index, o.outDir, o.kernelFrom),
    capacity,
    bootWeight,
    // --boots N fixes the share of each boot; else each boot gets the cores free for it.
    adaptiveVcpus: !o.jobs,
    force: o.force,
    onProgress: progress,
    onCellDone: (cell) => deferred.get(cell.id)?.resolve(cell),
  });
  await display;
  if (o.pairs)
    await runMatrixPairs(o.plan, o.outDir, {
      force: o.force,
      base: o.base ?? { set: [] },
      say: (l) => console.error(l),
    });
  const report = buildReport(o.plan.spec.name, storedCellsOf(o.plan, o.outDir), {
    excluded: o.plan.excluded,
  });
  const files = await writeReports(o.outDir, report);
  return { summary, report, files };
}

/**
 * 0: every cell ran (PASS or FAIL are results); 1: a build failed, or with strict a deciding
 * failure the doctor did not predict (expected failures never fail); 4: an infrastructure error.
 */
export function matrixExitCode(cells: CellResult[], strict = false): number {
  if (cells.some((c) => c.status === "ERROR")) return 4;
  if (cells.some((c) => c.status === "BUILD-FAILED")) return 1;
  if (strict && cells.some(failsUnexpectedly)) return 1;
  return 0;
}

/**
 * The workflow is no longer generated: it is checked in (matrix/ci.ts, GITHUB_WORKFLOW) and takes
 * its CRIU jobs from `cr-guest ci keys`. Kept for `matrix --emit-github` until that flag goes: it
 * says so instead of writing a file.
 * @deprecated
 */
export function renderGithubWorkflow(_plan?: MatrixPlan): never {
  throw new UserError(
    `the CI workflow is no longer generated: ${relative(REPO_ROOT, GITHUB_WORKFLOW)} is checked in and ` +
      "takes its CRIU versions from matrix.yaml at run time (`cr-guest ci keys`)",
    "drop --emit-github: matrix.yaml reaches CI as it is; edit the workflow by hand only for its jobs and steps",
  );
}
