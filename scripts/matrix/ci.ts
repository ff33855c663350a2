/**
 * CI over jobs, as commands that run the same here and on GitHub, against a directory that
 * stands for the artifact store:
 *   ci kernels          builds the matrix's kernel variants once -> STORE/kernels/
 *   ci cell --criu V    the cells of one CRIU version, booting those kernels -> STORE/cells-V/
 *   ci report           merges STORE/cells-*, compares with a baseline, writes the summary,
 *                       junit.xml and the exit code
 *   ci keys             the workflow's cache keys, and the CRIU versions that get a job
 * The kernels travel as their artifacts (vmlinuz, config, metadata.json) under their cache
 * keys, so a cell's run key is the one a local run of the same cell has. The workflow itself
 * (.github/workflows/cr-guest-matrix.yml) is checked in: it only checks out, caches and moves
 * artifacts, and takes its list of CRIU jobs from `ci keys`, so matrix.yaml reaches CI as it is.
 */
import { copyFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { cacheKey } from "../lib/hash.js";
import { UserError } from "../lib/errors.js";
import { writeAtomic } from "../lib/fs-atomic.js";
import { loadDotConfig } from "../data/fragments.js";
import { servableFromPins, type CriuCatalog } from "../data/criu-catalog.js";
import { repoData } from "../data/repo-data.js";
import { REPO_ROOT } from "../lib/paths.js";
import type { KernelMetadata, KernelStageResult } from "../kernel/result.js";
import { drive, type StageOutcome } from "../driver.js";
import type { KernelOutcome } from "./run.js";
import { collectCells, type CellResult } from "./cell.js";
import type { PlannedCell } from "./spec.js";
import {
  compareReports,
  mdEscape,
  renderComparison,
  reportSummary,
  totalsLine,
  type Comparison,
  type MatrixReport,
} from "./report.js";
import { judgeCell } from "./verdicts.js";

/** The CI workflow: checked in, its CRIU jobs from `ci keys` (criuJobs). */
export const GITHUB_WORKFLOW = join(REPO_ROOT, ".github", "workflows", "cr-guest-matrix.yml");

export const KERNELS_DIR = "kernels";
const KERNEL_FILES = ["vmlinuz", "config", "metadata.json"];

const PackedKernelSchema = z.object({
  axis: z.string(),
  key: z.string(),
  version: z.string(),
  release: z.string().nullable(),
  config_sha256: z.string(),
  requested: z.array(z.tuple([z.string(), z.string()])),
});
const KernelIndexSchema = z.object({
  schema: z.literal(1),
  kernels: z.record(z.string(), PackedKernelSchema),
});
export type PackedKernel = z.infer<typeof PackedKernelSchema>;

/** One cell per kernel axis value (the first that is not skipped): whose kernel to build. */
export function kernelVariants(cells: PlannedCell[]): PlannedCell[] {
  const seen = new Map<string, PlannedCell>();
  for (const c of cells) if (!c.skip && !seen.has(c.axes.kernel)) seen.set(c.axes.kernel, c);
  return [...seen.values()];
}

/** Builds (or takes cached) each kernel variant and copies its artifact into STORE/kernels/<key>/. */
export async function packKernels(
  cells: PlannedCell[],
  store: string,
  log: (line: string) => void = () => undefined,
): Promise<PackedKernel[]> {
  const dir = join(store, KERNELS_DIR);
  await mkdir(dir, { recursive: true });
  const packed: Record<string, PackedKernel> = {};
  for (const c of kernelVariants(cells)) {
    const t0 = Date.now();
    const { kernel } = await drive(c.config, ["kernel"]);
    const ref = kernel!.value.ref;
    if (!ref) throw new Error(`the kernel stage gave no kernel for ${c.axes.kernel}`);
    const dest = join(dir, ref.key);
    if (!existsSync(join(dest, "metadata.json"))) {
      // Copied to a temporary name, then renamed: a half-copied kernel is never taken.
      const tmp = `${dest}.tmp-${process.pid}`;
      await rm(tmp, { recursive: true, force: true });
      await mkdir(tmp, { recursive: true });
      for (const f of KERNEL_FILES) await copyFile(join(ref.dir, f), join(tmp, f));
      await rename(tmp, dest);
    }
    packed[c.axes.kernel] = {
      axis: c.axes.kernel,
      key: ref.key,
      version: ref.version,
      release: ref.release ?? null,
      config_sha256: ref.config_sha256,
      requested: [...ref.requested],
    };
    const cached = kernel!.cached ? ", cached" : "";
    const seconds = ((Date.now() - t0) / 1000).toFixed(0);
    log(`kernel ${c.axes.kernel}: linux ${ref.release ?? ref.version} (${ref.key})${cached}, ${seconds} s`);
  }
  await writeAtomic(join(dir, "index.json"), `${JSON.stringify({ schema: 1, kernels: packed }, null, 2)}\n`);
  return Object.values(packed);
}

export function readKernelIndex(store: string): Record<string, PackedKernel> {
  const file = join(store, KERNELS_DIR, "index.json");
  if (!existsSync(file))
    throw new UserError(
      `no packed kernels in ${join(store, KERNELS_DIR)}`,
      "run `cr-guest ci kernels --store DIR` first (on GitHub: the kernels job's artifact)",
    );
  const parsed = KernelIndexSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
  if (!parsed.success)
    throw new UserError(
      `${file} is not an index written by \`cr-guest ci kernels\`: ${parsed.error.issues[0]?.message}`,
      "run `cr-guest ci kernels` again",
    );
  return parsed.data.kernels;
}

/** A packed kernel as the kernel stage's outcome: the cells boot it, nothing is rebuilt. */
export async function packedKernelOutcome(
  store: string,
  index: Record<string, PackedKernel>,
  axis: string,
): Promise<KernelOutcome<StageOutcome<"kernel">>> {
  const k = index[axis];
  if (!k)
    throw new UserError(
      `kernel '${axis}' is not among the packed kernels (${Object.keys(index).join(", ") || "none"})`,
      "run `cr-guest ci kernels` with the same matrix",
    );
  const dir = join(store, KERNELS_DIR, k.key);
  for (const f of KERNEL_FILES)
    if (!existsSync(join(dir, f)))
      throw new UserError(`packed kernel ${dir} lacks ${f}`, "run `cr-guest ci kernels` again");
  const metadata = JSON.parse(await readFile(join(dir, "metadata.json"), "utf8")) as KernelMetadata;
  const requested = new Map(k.requested);
  const stage: KernelStageResult = {
    dir,
    cached: true,
    metadata,
    report: undefined as never,
    reportText: `packed kernel ${k.key}`,
    warnings: [],
    notes: [],
    seconds: {},
    requested,
  };
  const identity = { key: k.key, version: k.version, release: k.release, config_sha256: k.config_sha256 };
  const handle: StageOutcome<"kernel"> = {
    stage: "kernel",
    status: "done",
    cached: true,
    seconds: 0,
    identity,
    notes: [],
    value: {
      stage,
      ref: {
        dir,
        key: k.key,
        version: k.version,
        release: k.release,
        config_sha256: k.config_sha256,
        requested,
      },
      config: loadDotConfig(join(dir, "config")),
    },
  };
  return { handle, cached: true, identity };
}

/**
 * The matrix's CRIU axis values that get a CI job, in the matrix's order: those whose version
 * the catalog can serve from its pins (a CI runner fetches them; a local tree or mirror it
 * does not have).
 */
export function criuJobs(cells: PlannedCell[], catalog: CriuCatalog = repoData().criu): string[] {
  const ids = new Map<string, string>();
  for (const c of cells) if (!ids.has(c.axes.criu)) ids.set(c.axes.criu, c.criuVersion);
  return [...ids].filter(([, version]) => servableFromPins(version, catalog)).map(([id]) => id);
}

/**
 * What the workflow reads from `ci keys` (step outputs, one `name=value` line each): the cache
 * keys, one over the kernel stages of every cell, one over the CRIU and image stages of a CRIU
 * job's cells (the matrix's stage groups: what each stage reads); and for the whole matrix the
 * CRIU jobs as a JSON list, which the cells job's strategy reads with fromJSON.
 */
export function cacheKeys(
  all: PlannedCell[],
  job?: PlannedCell[],
  catalog: CriuCatalog = repoData().criu,
): { kernels: string; criu?: string; criu_versions?: string } {
  const groups = (cs: PlannedCell[], g: (c: PlannedCell) => string[]) =>
    cacheKey([...new Set(cs.filter((c) => !c.skip).flatMap(g))].sort());
  return {
    kernels: groups(all, (c) => [c.groups.kernel]),
    ...(job
      ? { criu: groups(job, (c) => [c.groups.criu, c.groups.image]) }
      : { criu_versions: JSON.stringify(criuJobs(all, catalog)) }),
  };
}

/** Every cells-* directory of the store (one per CRIU job). */
export function cellDirsIn(store: string): string[] {
  if (!existsSync(store)) return [];
  return readdirSync(store)
    .filter((n) => n.startsWith("cells-"))
    .sort()
    .map((n) => join(store, n));
}

export interface CiVerdict {
  unexpected: { cell: string; test: string; message: string }[];
  expected: { cell: string; test: string; because: string }[];
  unexpectedPasses: { cell: string; test: string; because: string }[];
  infrastructure: { cell: string; reason: string }[];
  buildFailures: { cell: string; reason: string }[];
  comparison?: Comparison;
  exitCode: number;
}

/** What CI decides from the cells and the comparison: red on unexpected failures and regressions only. */
export function ciVerdict(cells: CellResult[], comparison?: Comparison): CiVerdict {
  const v: CiVerdict = {
    unexpected: [],
    expected: [],
    unexpectedPasses: [],
    infrastructure: [],
    buildFailures: [],
    comparison,
    exitCode: 0,
  };
  for (const c of cells) {
    if (c.status === "ERROR") v.infrastructure.push({ cell: c.id, reason: c.reason ?? "" });
    if (c.status === "BUILD-FAILED") v.buildFailures.push({ cell: c.id, reason: c.reason ?? "" });
    if (c.status !== "PASS" && c.status !== "FAIL") continue;
    for (const j of judgeCell(c)) {
      if (j.verdict === "fail" || j.verdict === "error")
        v.unexpected.push({
          cell: c.id,
          test: j.test.name,
          message: (j.test.error_lines[0] ?? j.test.message).slice(0, 200),
        });
      if (j.verdict === "xfail") v.expected.push({ cell: c.id, test: j.test.name, because: j.because ?? "" });
      if (j.verdict === "xpass")
        v.unexpectedPasses.push({ cell: c.id, test: j.test.name, because: j.because ?? "" });
    }
  }
  const regressions = comparison?.regressions.length ?? 0;
  v.exitCode =
    v.unexpected.length || regressions || v.buildFailures.length ? 1 : v.infrastructure.length ? 4 : 0;
  return v;
}

/** The job summary (GitHub's $GITHUB_STEP_SUMMARY, or summary.md locally). */
export function renderCiSummary(report: MatrixReport, v: CiVerdict, baseline: string): string {
  const lines = [
    `# cr-guest CI: ${report.name}`,
    "",
    `**${v.exitCode === 0 ? "green" : v.exitCode === 4 ? "infrastructure errors" : "red"}**: ` +
      `${v.unexpected.length} unexpected failures, ` +
      `${v.comparison?.regressions.length ?? 0} regressions against ${baseline}.`,
    "",
    totalsLine(report),
    "",
    `Tests: ${reportSummary(report.cells)}.`,
  ];
  const table = (title: string, head: string[], rows: string[][]) => {
    if (!rows.length) return;
    lines.push(
      "",
      `## ${title}`,
      "",
      `| ${head.join(" | ")} |`,
      `|${head.map(() => "---").join("|")}|`,
      ...rows.map((r) => `| ${r.map(mdEscape).join(" | ")} |`),
    );
  };
  table(
    "Unexpected failures (these make CI red)",
    ["cell", "test", "evidence"],
    v.unexpected.map((u) => [u.cell, u.test, u.message]),
  );
  table(
    "Expected failures (predicted by the doctor; never red)",
    ["cell", "test", "prediction"],
    v.expected.map((e) => [e.cell, e.test, e.because]),
  );
  table(
    "Unexpected passes (a prediction that did not come true)",
    ["cell", "test", "prediction"],
    v.unexpectedPasses.map((e) => [e.cell, e.test, e.because]),
  );
  table(
    "Infrastructure errors (not CRIU results)",
    ["cell", "reason"],
    v.infrastructure.map((e) => [e.cell, e.reason]),
  );
  table(
    "Build failures",
    ["cell", "reason"],
    v.buildFailures.map((e) => [e.cell, e.reason]),
  );
  lines.push(
    "",
    "## Against the baseline",
    "",
    v.comparison ? renderComparison(v.comparison, true) : `Not compared: ${baseline}.`,
  );
  return `${lines.join("\n")}\n`;
}

/** Compares with the baseline's cells when there are any. */
export function compareWithBaseline(
  baseline: string | undefined,
  cells: CellResult[],
): Comparison | undefined {
  if (!baseline) return undefined;
  return compareReports(collectCells(baseline), cells);
}

/** Appends to GitHub's job summary when there is one; always writes the store's summary.md. */
export async function writeCiSummary(reportDir: string, text: string): Promise<string> {
  await mkdir(reportDir, { recursive: true });
  const file = join(reportDir, "summary.md");
  await writeFile(file, text);
  const gh = process.env.GITHUB_STEP_SUMMARY;
  if (gh) await writeFile(gh, text, { flag: "a" });
  return file;
}
