/**
 * Summaries read off the cells: the judged tally of a cell and of a run, how well a run packed
 * the machine with boots, and the doctor's predictions next to what each cell showed.
 */
import type { CellResult } from "../cell.js";
import type { MatrixReport } from "./model.js";
import { judgeCell, summaryLine, sumTallies, tally } from "../verdicts.js";
import { observedStatus } from "./columns.js";

const ran = (cell: CellResult) => cell.status === "PASS" || cell.status === "FAIL";

/** The judged summary line of one cell (empty for a cell that never ran). */
export function cellSummary(cell: CellResult): string {
  return ran(cell) ? summaryLine(tally(judgeCell(cell))) : "";
}

/** The judged summary over every cell that ran. */
export function reportSummary(cells: CellResult[]): string {
  return summaryLine(sumTallies(cells.filter(ran).map((c) => tally(judgeCell(c)))));
}

/** "12 cells: 9 PASS, ..." as the Markdown and HTML pages and the CI summary open. */
export function totalsLine(r: MatrixReport): string {
  const t = r.totals;
  return [
    `${r.cells.length} cells: ${t.PASS} PASS`,
    `${t.FAIL} FAIL`,
    `${t.ERROR} ERROR (infrastructure)`,
    `${t["BUILD-FAILED"]} BUILD-FAILED`,
    `${t.SKIPPED} SKIPPED.`,
  ].join(", ");
}

/** The judged tests over the cells that ran, and what XFAIL and XPASS mean. */
export const testsLine = (r: MatrixReport) =>
  `Tests, over the cells that ran: ${reportSummary(r.cells)}. ` +
  "XFAIL: a failure the doctor predicted (expected); XPASS: a predicted failure that passed.";

/**
 * How well a run packed the machine: the boot-seconds of the cells that booted (not cached)
 * over the wall-clock from the first of them starting to the last finishing. Null when
 * nothing booted.
 */
export function bootParallelism(
  cells: CellResult[],
): { bootSeconds: number; wallSeconds: number; parallelism: number; vcpus: Record<string, number> } | null {
  const booted = cells.filter((c) => c.stages.boot && !c.stages.boot.cached);
  if (booted.length === 0) return null;
  const bootSeconds = booted.reduce((n, c) => n + c.stages.boot!.seconds, 0);
  const start = Math.min(...booted.map((c) => Date.parse(c.started)));
  const end = Math.max(...booted.map((c) => Date.parse(c.finished)));
  const wallSeconds = Math.max(1, (end - start) / 1000);
  // How many guests ran with how many vCPUs.
  const vcpus: Record<string, number> = {};
  for (const c of booted)
    if (c.stages.boot!.vcpus) vcpus[c.stages.boot!.vcpus] = (vcpus[c.stages.boot!.vcpus] ?? 0) + 1;
  return { bootSeconds, wallSeconds, parallelism: bootSeconds / wallSeconds, vcpus };
}

export interface PredictionCheck {
  cell: string;
  what: string;
  test: string;
  expect: "PASS" | "FAIL";
  observed: string;
  /** undefined when the cell did not run the test (it never booted, or the test is absent). */
  held?: boolean;
}

/**
 * The doctor's predictions next to what the cell showed: each prediction that names a test
 * (a failure without one predicts `criu check`), its observed status and whether it held.
 */
export function predictionChecks(cell: CellResult): PredictionCheck[] {
  return cell.predicted
    .filter((p) => p.test || p.severity === "fail")
    .map((p) => {
      const test = p.test ?? "criu-check";
      const expect = (p.expect ?? "FAIL") as "PASS" | "FAIL";
      const observed = observedStatus(cell, [test]);
      const ran = observed === "PASS" || observed === "FAIL";
      return {
        cell: cell.id,
        what: p.what,
        test,
        expect,
        observed,
        ...(ran ? { held: observed === expect } : {}),
      };
    });
}
