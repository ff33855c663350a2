/**
 * What a cell shows in the report's grid: the columns (fixed ones, then one per scenario), the
 * status in each, the build column and the one line that says why a cell is not all green.
 */
import type { TestStatus } from "../../boot/results.js";
import { isInformational, type CellResult, type CellTest } from "../cell.js";
import { judgeCell } from "../verdicts.js";

export interface ReportColumn {
  key: string;
  title: string;
  /** Test names in this column: a name (and its NAME/CASE tests), or "prefix/" for every test under it. */
  tests: string[];
  /** Shown as passed/total instead of one status (informational tests). */
  count?: boolean;
}

const FIXED_COLUMNS: ReportColumn[] = [
  { key: "criu-check", title: "criu check", tests: ["criu-check"] },
  { key: "features", title: "features", tests: ["feature/"], count: true },
  { key: "ptrace", title: "ptrace", tests: ["ptrace-strace", "ptrace-attach"] },
  { key: "dump-restore", title: "dump/restore", tests: ["simple-process"] },
];
const NOT_COLUMNS = new Set(["criu-version", "criu-check-all", "feature", "kernel-config", "simple-process"]);

/** The fixed columns, then one per scenario seen in any cell (in the order first seen). */
export function reportColumns(cells: CellResult[]): ReportColumn[] {
  const scenarios: string[] = [];
  for (const c of cells)
    for (const t of c.tests) {
      // A scenario's cases are SCENARIO/CASE; a scenario skipped as a whole is SCENARIO.
      const s = t.name.split("/")[0];
      if (
        !NOT_COLUMNS.has(s) &&
        !FIXED_COLUMNS.some((f) => f.tests.includes(s)) &&
        !scenarios.includes(s) &&
        (t.name.includes("/") || cells.some((o) => o.tests.some((x) => x.name.startsWith(`${s}/`))))
      )
        scenarios.push(s);
    }
  return [...FIXED_COLUMNS, ...scenarios.map((s) => ({ key: s, title: s, tests: [s] }))];
}

/** A test pattern: "*" for every test, "prefix/" for the tests under it, else a name and its cases. */
export const matchesTest = (pattern: string, name: string) =>
  pattern === "*" ||
  (pattern.endsWith("/") ? name.startsWith(pattern) : name === pattern || name.startsWith(`${pattern}/`));

export function testsIn(cell: CellResult, patterns: string[]): CellTest[] {
  return cell.tests.filter((t) => patterns.some((p) => matchesTest(p, t.name)));
}

/** One status for several tests: any FAIL, else any ERROR, else any PASS, else SKIP. */
export function aggregate(tests: CellTest[]): TestStatus | null {
  if (tests.length === 0) return null;
  for (const s of ["FAIL", "ERROR", "PASS"] as const) if (tests.some((t) => t.status === s)) return s;
  return "SKIP";
}

/** A cell that never booted shows its own status in every column. */
const neverBooted = (cell: CellResult) =>
  cell.status === "ERROR" || cell.status === "BUILD-FAILED" || cell.status === "SKIPPED";

/**
 * The tests' own statuses in a column (any FAIL, else ERROR, PASS, SKIP): what a prediction
 * is checked against.
 */
export function observedStatus(cell: CellResult, tests: string[]): string {
  if (neverBooted(cell)) return cell.status;
  return aggregate(testsIn(cell, tests)) ?? "-";
}

/** The shown status of judged tests, the worst first. */
const SHOWN_VERDICTS = [
  ["fail", "FAIL"],
  ["error", "ERROR"],
  ["xpass", "XPASS"],
  ["xfail", "XFAIL"],
  ["pass", "PASS"],
] as const;

/**
 * The status shown in a column for a cell: the cell's own status when it never booted; else
 * judged (verdicts.ts): observing cases do not colour a column, an expected failure shows as
 * XFAIL and an unexpected pass as XPASS, only an unexpected failure as FAIL.
 */
export function columnStatus(cell: CellResult, col: ReportColumn): string {
  if (neverBooted(cell)) return cell.status;
  const tests = testsIn(cell, col.tests);
  if (col.count)
    return tests.length ? `${tests.filter((t) => t.status === "PASS").length}/${tests.length}` : "-";
  const judged = judgeCell(cell).filter((j) => col.tests.some((p) => matchesTest(p, j.test.name)));
  const deciding = judged.filter((j) => j.verdict !== "informational");
  if (deciding.length === 0) return aggregate(tests) ?? "-";
  for (const [v, shown] of SHOWN_VERDICTS) if (deciding.some((j) => j.verdict === v)) return shown;
  return "SKIP";
}

/** The one line that says why a cell is not all green. */
export function keyMessage(cell: CellResult): string {
  if (cell.status !== "PASS" && cell.status !== "FAIL") return cell.reason ?? "";
  const failed = cell.tests.filter(
    (t) => (t.status === "FAIL" || t.status === "ERROR") && !isInformational(t.name, cell.informational),
  );
  const first = failed.find((t) => t.name === "criu-check") ?? failed[0];
  if (!first) return "";
  const detail = first.error_lines[0] ?? first.message;
  return `${first.name}: ${detail}`.replace(/\s+/g, " ").slice(0, 200);
}

/** The build column: how CRIU was provided, or why the cell did not build. */
export function buildBuildColumn(cell: CellResult): string {
  if (cell.status === "SKIPPED") return "SKIPPED";
  if (cell.status === "BUILD-FAILED") return `FAILED (${cell.failed_stage})`;
  const c = cell.identities.criu;
  return c ? (c.provider === "debian-binary" ? "debian-binary" : `${c.provider}, ${c.link}`) : "-";
}
