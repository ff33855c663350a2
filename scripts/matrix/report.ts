/**
 * The matrix report, pure: cells in, matrix.json / matrix.md / matrix.html / junit.xml out;
 * findings in plain words (rules kept as data in criu-builds/findings.yaml, plus what each
 * test's status depends on, read off the cells); merging cells from several machines;
 * comparing two reports.
 */
import type { z } from "zod";
import { REPORT_SCHEMA_VERSION, type MatrixReportSchema } from "../lib/output-schemas.js";
import semver from "semver";
import { kernelSemver, semverOf } from "../data/criu-catalog.js";
import type { FindingRule } from "../data/findings.js";
import { renderPairGrids } from "./pairs.js";
import { repoData } from "../data/repo-data.js";
import type { TestStatus } from "../boot/results.js";
import { isInformational, type CellResult, type CellStatus, type CellTest } from "./cell.js";
import { AXES, type AxisName } from "./spec.js";
import { judgeCell, summaryLine, sumTallies, tally, type Verdict } from "./verdicts.js";

export const REPORT_SCHEMA = REPORT_SCHEMA_VERSION;
export interface ReportFinding {
  id: string;
  say: string;
  /** Cells that show the evidence, with the message that matched. */
  seen_in: { cell: string; test: string; message: string }[];
  /** Cells where the same test passes: the contrast. */
  passes_in: string[];
}

export interface ReportColumn {
  key: string;
  title: string;
  /** Test names in this column: a name (and its NAME/CASE tests), or "prefix/" for every test under it. */
  tests: string[];
  /** Shown as passed/total instead of one status (informational tests). */
  count?: boolean;
}

/** matrix.json (the schema is in lib/output-schemas.ts). */
export type MatrixReport = z.infer<typeof MatrixReportSchema>;

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

const matchesTest = (pattern: string, name: string) =>
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

/** The tests' own statuses in a column (any FAIL, else ERROR, PASS, SKIP): what a prediction is checked against. */
export function observedStatus(cell: CellResult, tests: string[]): string {
  if (cell.status === "ERROR" || cell.status === "BUILD-FAILED" || cell.status === "SKIPPED")
    return cell.status;
  return aggregate(testsIn(cell, tests)) ?? "-";
}

/**
 * The status shown in a column for a cell: the cell's own status when it never booted; else
 * judged (verdicts.ts): observing cases do not colour a column, an expected failure shows as
 * XFAIL and an unexpected pass as XPASS, only an unexpected failure as FAIL.
 */
export function columnStatus(cell: CellResult, col: ReportColumn): string {
  if (cell.status === "ERROR" || cell.status === "BUILD-FAILED" || cell.status === "SKIPPED")
    return cell.status;
  const tests = testsIn(cell, col.tests);
  if (col.count)
    return tests.length ? `${tests.filter((t) => t.status === "PASS").length}/${tests.length}` : "-";
  const judged = judgeCell(cell).filter((j) => col.tests.some((p) => matchesTest(p, j.test.name)));
  const deciding = judged.filter((j) => j.verdict !== "informational");
  if (deciding.length === 0) return aggregate(tests) ?? "-";
  for (const [v, shown] of [
    ["fail", "FAIL"],
    ["error", "ERROR"],
    ["xpass", "XPASS"],
    ["xfail", "XFAIL"],
    ["pass", "PASS"],
  ] as const)
    if (deciding.some((j) => j.verdict === v)) return shown;
  return "SKIP";
}

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

/** The judged summary line of one cell (empty for a cell that never ran). */
export function cellSummary(cell: CellResult): string {
  return cell.status === "PASS" || cell.status === "FAIL" ? summaryLine(tally(judgeCell(cell))) : "";
}

/** The judged summary over every cell that ran. */
export function reportSummary(cells: CellResult[]): string {
  return summaryLine(
    sumTallies(
      cells.filter((c) => c.status === "PASS" || c.status === "FAIL").map((c) => tally(judgeCell(c))),
    ),
  );
}

const evidenceOf = (t: CellTest) => [t.message, ...t.error_lines].join("\n");

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

export function buildBuildColumn(cell: CellResult): string {
  if (cell.status === "SKIPPED") return "SKIPPED";
  if (cell.status === "BUILD-FAILED") return `FAILED (${cell.failed_stage})`;
  const c = cell.identities.criu;
  return c ? (c.provider === "debian-binary" ? "debian-binary" : `${c.provider}, ${c.link}`) : "-";
}

/** The cell's CRIU and guest kernel versions are in the ranges (an unknown kernel is not). */
function holdsIn(holds: { criu: string; kernel?: string }, cell: CellResult): boolean {
  if (!semver.satisfies(semverOf(cell.criu_version), holds.criu)) return false;
  if (!holds.kernel) return true;
  const kernel = cell.identities.kernel?.version ?? cell.guest?.kernel;
  return kernel !== undefined && semver.satisfies(kernelSemver(kernel), holds.kernel);
}

export function deriveFindings(cells: CellResult[], rules: FindingRule[]): ReportFinding[] {
  const claimed = new Set<string>(); // cell+test: the first rule that explains it wins
  const out: ReportFinding[] = [];
  for (const rule of rules) {
    const re = new RegExp(rule.message, "i");
    const seen: ReportFinding["seen_in"] = [];
    const passes = new Set<string>();
    for (const cell of cells) {
      if (rule.holds && !holdsIn(rule.holds, cell)) continue;
      for (const t of cell.tests) {
        if (!matchesTest(rule.test, t.name)) continue;
        if (t.status === "PASS") passes.add(cell.id);
        const k = `${cell.id}\u0000${t.name}`;
        if (claimed.has(k)) continue;
        if ((rule.status === "any" || t.status === rule.status) && re.test(evidenceOf(t))) {
          claimed.add(k);
          seen.push({
            cell: cell.id,
            test: t.name,
            message: (t.error_lines.find((l) => re.test(l)) ?? t.message).slice(0, 200),
          });
        }
      }
    }
    if (seen.length)
      out.push({
        id: rule.id,
        say: rule.say.replace(/\s+/g, " ").trim(),
        seen_in: seen,
        passes_in: [...passes].filter((id) => !seen.some((s) => s.cell === id)),
      });
  }
  return out;
}

/**
 * For each test whose status differs between completed cells: the axis it depends on, when
 * one axis alone decides it (e.g. "membarrier/registration: FAIL with criu 3.17.1; PASS with
 * criu 4.1.1, 4.2.1"), else the cells where it fails.
 */
export function statusDependencies(cells: CellResult[]): string[] {
  const done = cells.filter((c) => c.status === "PASS" || c.status === "FAIL");
  const names = [...new Set(done.flatMap((c) => c.tests.map((t) => t.name)))];
  const lines: { name: string; why: string }[] = [];
  for (const name of names) {
    const byCell = new Map(
      done
        .map((c) => [c, c.tests.find((t) => t.name === name)?.status])
        .filter((e): e is [CellResult, TestStatus] => Boolean(e[1])),
    );
    const statuses = new Set(byCell.values());
    if (statuses.size < 2) continue;
    const axis = AXES.find((a: AxisName) => {
      const seen = new Map<string, TestStatus>();
      for (const [c, s] of byCell) {
        const v = c.axes[a];
        if (seen.has(v) && seen.get(v) !== s) return false;
        seen.set(v, s);
      }
      return new Set(seen.values()).size > 1;
    });
    if (axis) {
      const groups = new Map<TestStatus, Set<string>>();
      for (const [c, s] of byCell) groups.set(s, (groups.get(s) ?? new Set()).add(c.axes[axis]));
      lines.push({
        name,
        why: [...groups].map(([s, vs]) => `${s} with ${axis} ${[...vs].join(", ")}`).join("; "),
      });
    } else {
      const failing = [...byCell].filter(([, s]) => s !== "PASS").map(([c, s]) => `${c.id} (${s})`);
      lines.push({ name, why: `not PASS in ${failing.join(", ")}; PASS elsewhere` });
    }
  }
  // Tests that depend on the same thing in the same way are one line (e.g. every --feature
  // check failing with the same unpatched CRIU).
  const byWhy = new Map<string, string[]>();
  for (const l of lines) byWhy.set(l.why, [...(byWhy.get(l.why) ?? []), l.name]);
  return [...byWhy].map(
    ([why, names]) =>
      `${names.length > 4 ? `${names.slice(0, 3).join(", ")} and ${names.length - 3} more` : names.join(", ")}: ${why}`,
  );
}

function totals(cells: CellResult[]): Record<CellStatus, number> {
  const t: Record<CellStatus, number> = { PASS: 0, FAIL: 0, ERROR: 0, "BUILD-FAILED": 0, SKIPPED: 0 };
  for (const c of cells) t[c.status]++;
  return t;
}

/** Several sources of cells into one list: one cell per id, the most recently finished. */
export function mergeCells(lists: CellResult[][]): { cells: CellResult[]; duplicates: string[] } {
  const byId = new Map<string, CellResult>();
  const duplicates: string[] = [];
  for (const cell of lists.flat()) {
    const have = byId.get(cell.id);
    if (have) {
      duplicates.push(cell.id);
      if (have.finished >= cell.finished) continue;
    }
    byId.set(cell.id, cell);
  }
  return {
    cells: [...byId.values()].sort((a, b) => a.id.localeCompare(b.id, "en", { numeric: true })),
    duplicates: [...new Set(duplicates)],
  };
}

export function buildReport(
  name: string,
  cells: CellResult[],
  o: {
    excluded?: MatrixReport["excluded"];
    rules?: FindingRule[];
    duplicates?: string[];
    created?: string;
  } = {},
): MatrixReport {
  return {
    schema: REPORT_SCHEMA,
    name,
    created: o.created ?? new Date().toISOString(),
    cells,
    // Migration pairs have their own grid (renderPairGrids): the columns are the cells' tests.
    columns: reportColumns(cells.filter((c) => !c.migration)),
    findings: deriveFindings(cells, o.rules ?? repoData().findings),
    dependencies: statusDependencies(cells),
    excluded: o.excluded ?? [],
    totals: totals(cells),
    merged_duplicates: o.duplicates ?? [],
  };
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

function packing(cells: CellResult[]): string[] {
  const p = bootParallelism(cells);
  if (!p) return [];
  const vcpus = Object.entries(p.vcpus).map(([n, boots]) => `${boots} with ${n} vCPU${n === "1" ? "" : "s"}`);
  return [
    `Boots: ${p.bootSeconds.toFixed(0)} boot-seconds in ${p.wallSeconds.toFixed(0)} s of wall-clock, a parallelism of ${p.parallelism.toFixed(2)}${vcpus.length ? ` (guests: ${vcpus.join(", ")})` : ""}.`,
    "",
  ];
}

const mdEscape = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

export function renderMarkdown(r: MatrixReport): string {
  const head = [
    "cell",
    "CRIU",
    "patches",
    "kernel",
    "suite",
    "build",
    ...r.columns.map((c) => c.title),
    "key message",
  ];
  const rows = r.cells
    .filter((c) => !c.migration)
    .map((c) => [
      c.id,
      c.criu_version,
      c.patches.join(", ") || "none",
      c.identities.kernel ? `${c.axes.kernel} (${c.identities.kernel.version})` : c.axes.kernel,
      c.identities.image?.suite ?? c.axes.suite,
      buildBuildColumn(c),
      ...r.columns.map((col) => columnStatus(c, col)),
      keyMessage(c),
    ]);
  const t = r.totals;
  const lines = [
    `# CRIU version matrix: ${r.name}`,
    "",
    `${r.cells.length} cells: ${t.PASS} PASS, ${t.FAIL} FAIL, ${t.ERROR} ERROR (infrastructure), ${t["BUILD-FAILED"]} BUILD-FAILED, ${t.SKIPPED} SKIPPED. Generated ${r.created}.`,
    "",
    `Tests, over the cells that ran: ${reportSummary(r.cells)}. XFAIL: a failure the doctor predicted (expected); XPASS: a predicted failure that passed.`,
    "",
    ...packing(r.cells),
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((row) => `| ${row.map((x) => mdEscape(String(x))).join(" | ")} |`),
    "",
    ...renderPairGrids(r.cells),
    "## Findings",
    "",
  ];
  if (r.findings.length === 0) lines.push("No known failure pattern was seen.");
  for (const f of r.findings) {
    lines.push(`- **${f.say}**`);
    // Cells that show the same evidence are listed together, the evidence once.
    const byEvidence = new Map<string, string[]>();
    for (const s of f.seen_in) {
      const k = `${s.test}: \`${mdEscape(s.message)}\``;
      byEvidence.set(k, [...(byEvidence.get(k) ?? []), s.cell]);
    }
    lines.push(
      `  Seen in: ${[...byEvidence].map(([evidence, cells]) => `${cells.join(", ")} (${evidence})`).join("; ")}.`,
    );
    if (f.passes_in.length) lines.push(`  Passes in: ${f.passes_in.join(", ")}.`);
  }
  if (r.dependencies.length)
    lines.push("", "## What each result depends on", "", ...r.dependencies.map((d) => `- ${mdEscape(d)}`));
  const checks = r.cells.flatMap(predictionChecks);
  if (checks.length) {
    lines.push("", "## Predictions of `cr-guest doctor` against the results", "");
    for (const k of checks)
      lines.push(
        `- ${k.cell}: predicted ${k.expect} for ${k.test} ("${mdEscape(k.what)}"); observed: ${k.observed}${k.held === false ? " (NOT as predicted)" : ""}.`,
      );
  }
  const broken = r.cells.filter((c) => c.status !== "PASS");
  if (broken.length) {
    lines.push("", "## Details of cells that are not PASS", "");
    for (const c of broken) {
      lines.push(`### ${c.id}: ${c.status}`, "");
      if (c.reason) lines.push(`${c.reason}`, "");
      if (cellSummary(c)) lines.push(cellSummary(c), "");
      // Tests failing with the same evidence are one entry (a CRIU that cannot start fails them all alike).
      const groups = new Map<string, CellTest[]>();
      for (const t of c.tests.filter((x) => x.status === "FAIL" || x.status === "ERROR")) {
        const k = `${t.status}\u0000${t.outcome ?? ""}\u0000${t.message}\u0000${t.error_lines.join("\n")}`;
        groups.set(k, [...(groups.get(k) ?? []), t]);
      }
      for (const ts of groups.values()) {
        const t = ts[0];
        const names =
          ts.length > 4
            ? `${ts
                .slice(0, 3)
                .map((x) => `\`${x.name}\``)
                .join(", ")} and ${ts.length - 3} more`
            : ts.map((x) => `\`${x.name}\``).join(", ");
        const info = ts.every((x) => isInformational(x.name, c.informational)) ? " (informational)" : "";
        lines.push(
          `- ${names} ${t.status}${info}${t.outcome ? ` (${t.outcome})` : ""}: ${mdEscape(t.message) || "(no message)"}`,
        );
        for (const e of t.error_lines.slice(0, 4)) lines.push(`  - \`${mdEscape(e)}\``);
      }
      if (c.paths.results) lines.push("", `Evidence: \`${c.paths.results}\` (in the cache dir on ${c.host})`);
      lines.push("");
    }
  }
  if (r.excluded.length)
    lines.push("", "## Not in the matrix", "", ...r.excluded.map((e) => `- ${e.id}: ${mdEscape(e.reason)}`));
  if (r.merged_duplicates.length)
    lines.push(
      "",
      `Merged: ${r.merged_duplicates.length} cells came from more than one source; the newest was kept (${r.merged_duplicates.join(", ")}).`,
    );
  return `${lines.join("\n").replace(/\n{3,}/g, "\n\n")}\n`;
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const statusClass = (s: string) => `s-${s.toLowerCase().replace(/[^a-z]/g, "")}`;

/** One self-contained page: a coloured grid; a click on a cell's row opens its evidence. */
export function renderHtml(r: MatrixReport): string {
  const head = [
    "cell",
    "CRIU",
    "patches",
    "kernel",
    "build",
    ...r.columns.map((c) => c.title),
    "key message",
  ];
  const body = r.cells
    .map((c, i) => {
      const cols = r.columns.map((col) => {
        const s = columnStatus(c, col);
        return `<td class="${statusClass(s)}">${esc(s)}</td>`;
      });
      const tests = c.tests
        .map(
          (t) =>
            `<tr><td>${esc(t.name)}</td><td class="${statusClass(t.status)}">${t.status}</td><td>${t.seconds.toFixed(1)}</td><td>${esc(t.message)}${t.outcome ? ` <em>(${esc(t.outcome)})</em>` : ""}${
              t.error_lines.length ? `<pre>${esc(t.error_lines.join("\n"))}</pre>` : ""
            }${t.diagnostics ? `<details><summary>diagnostics</summary><pre>${esc(t.diagnostics)}</pre></details>` : ""}</td></tr>`,
        )
        .join("");
      const ids = Object.entries(c.identities)
        .map(([k, v]) => `${k}: ${esc(JSON.stringify(v))}`)
        .join("<br>");
      const detail = `<tr class="detail" id="d${i}" hidden><td colspan="${head.length}">
<p><b>${esc(c.id)}</b>: ${esc(c.status)}${c.reason ? ` &mdash; ${esc(c.reason)}` : ""}${cellSummary(c) ? `<br>${esc(cellSummary(c))}` : ""}</p>
<p>${c.sets.map((s) => `<code>--set ${esc(s)}</code>`).join(" ")}</p>
${c.predicted.length ? `<p>predicted: ${c.predicted.map((p) => `${esc(p.severity)}: ${esc(p.what)}`).join("; ")}</p>` : ""}
<p class="small">${ids}<br>stages: ${esc(JSON.stringify(c.stages))}<br>accel ${esc(c.accel ?? "-")}, ${c.seconds.toFixed(0)} s on ${esc(c.host)}; evidence: ${esc(c.paths.results ?? "-")} (in its cache dir)</p>
${tests ? `<table class="tests"><tr><th>test</th><th>status</th><th>s</th><th>message, CRIU Error lines</th></tr>${tests}</table>` : ""}
${c.console_tail ? `<details><summary>console (last lines)</summary><pre>${esc(c.console_tail)}</pre></details>` : ""}
</td></tr>`;
      return `<tr class="cell" data-d="d${i}"><td>${esc(c.id)}</td><td>${esc(c.criu_version)}</td><td>${esc(c.patches.join(", ") || "none")}</td><td>${esc(c.axes.kernel)}</td><td class="${statusClass(c.status === "BUILD-FAILED" ? "FAIL" : "")}">${esc(buildBuildColumn(c))}</td>${cols.join("")}<td>${esc(keyMessage(c))}</td></tr>${detail}`;
    })
    .join("\n");
  const findings = r.findings
    .map(
      (f) =>
        `<li><b>${esc(f.say)}</b><br>seen in: ${f.seen_in.map((s) => `${esc(s.cell)} (<code>${esc(s.message)}</code>)`).join("; ")}${f.passes_in.length ? `<br>passes in: ${esc(f.passes_in.join(", "))}` : ""}</li>`,
    )
    .join("\n");
  const t = r.totals;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CRIU version matrix: ${esc(r.name)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
tr.cell{cursor:pointer}tr.cell:hover{outline:2px solid #555}
.s-pass{background:#c8efc8}.s-xfail{background:#dde8f6}.s-xpass{background:#f3e7a8}.s-fail{background:#f6c1c1}.s-error{background:#f9e0a0}.s-skip,.s-skipped{background:#e4e4e4}.s-buildfailed{background:#e8b0e8}
pre{white-space:pre-wrap;margin:2px 0;font-size:12px}.small{font-size:12px;color:#555}table.tests{margin-top:4px}
</style></head><body>
<h1>CRIU version matrix: ${esc(r.name)}</h1>
<p>${r.cells.length} cells: ${t.PASS} PASS, ${t.FAIL} FAIL, ${t.ERROR} ERROR (infrastructure), ${t["BUILD-FAILED"]} BUILD-FAILED, ${t.SKIPPED} SKIPPED. Generated ${esc(r.created)}. Click a row for its tests, CRIU's Error lines, diagnostics and console.</p>
<p>Tests, over the cells that ran: ${esc(reportSummary(r.cells))}. XFAIL: a failure the doctor predicted (expected); XPASS: a predicted failure that passed.</p>
<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>
${body}
</table>
<h2>Findings</h2><ul>${findings || "<li>No known failure pattern was seen.</li>"}</ul>
${r.dependencies.length ? `<h2>What each result depends on</h2><ul>${r.dependencies.map((d) => `<li>${esc(d)}</li>`).join("")}</ul>` : ""}
${r.excluded.length ? `<h2>Not in the matrix</h2><ul>${r.excluded.map((e) => `<li>${esc(e.id)}: ${esc(e.reason)}</li>`).join("")}</ul>` : ""}
<script>
for (const row of document.querySelectorAll("tr.cell")) row.addEventListener("click", () => { const d = document.getElementById(row.dataset.d); d.hidden = !d.hidden; });
</script>
</body></html>
`;
}

const xmlEsc = (s: string) =>
  esc(s)
    .replace(/'/g, "&apos;")
    // XML 1.0 forbids these control characters even escaped: they are dropped.
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "");

/** A JUnit classname without dots in the cell id: viewers split dotted classnames into packages. */
export const junitClassname = (cellId: string) => `cr-guest.${cellId.replace(/\./g, "_")}`;

/**
 * JUnit as GitHub, GitLab and Jenkins viewers read it: only an unexpected failure is a
 * <failure> (with a type), an infrastructure problem an <error>; informational tests and
 * expected failures are <skipped> with the reason, so a cell the report calls PASS is green.
 */
export function renderJunit(r: MatrixReport): string {
  const suites = r.cells.map((c) => {
    const cls = xmlEsc(junitClassname(c.id));
    const cases: string[] = [];
    const kase = (name: string, time: number | undefined, inner: string) =>
      `<testcase classname="${cls}" name="${xmlEsc(name)}"${time === undefined ? "" : ` time="${time}"`}>${inner}</testcase>`;
    if (c.status === "SKIPPED")
      cases.push(kase("cell", undefined, `<skipped message="${xmlEsc(c.reason ?? "")}"/>`));
    else if (c.status === "BUILD-FAILED")
      cases.push(
        kase("build", undefined, `<failure type="build-failed" message="${xmlEsc(c.reason ?? "")}"/>`),
      );
    else if (c.status === "ERROR")
      cases.push(
        kase(
          "boot",
          undefined,
          `<error type="infrastructure" message="${xmlEsc(c.reason ?? "")}">${xmlEsc(c.console_tail)}</error>`,
        ),
      );
    const evidence = (t: CellTest) => xmlEsc([...t.error_lines, t.diagnostics ?? ""].join("\n").trim());
    const inner: Record<Verdict, (j: ReturnType<typeof judgeCell>[number]) => string> = {
      pass: () => "",
      fail: (j) =>
        `<failure type="${xmlEsc(j.test.outcome ?? "failure")}" message="${xmlEsc(j.test.message)}">${evidence(j.test)}</failure>`,
      error: (j) =>
        `<error type="test-error" message="${xmlEsc(j.test.message)}">${evidence(j.test)}</error>`,
      skip: (j) => `<skipped message="${xmlEsc(j.test.message)}"/>`,
      informational: (j) =>
        `<skipped message="${xmlEsc(`informational (${j.test.status}): ${j.test.message}`)}"/>`,
      xfail: (j) =>
        `<skipped message="${xmlEsc(`expected failure: ${j.because}`)}">${evidence(j.test)}</skipped>`,
      // A predicted failure that passed: the prediction is wrong, which deserves a look, not a red build.
      xpass: (j) =>
        `<properties><property name="unexpected-pass" value="${xmlEsc(j.because ?? "")}"/></properties>`,
    };
    for (const j of c.status === "PASS" || c.status === "FAIL" ? judgeCell(c) : [])
      cases.push(kase(j.test.name, j.test.seconds, inner[j.verdict](j)));
    const count = (re: RegExp) => cases.filter((x) => re.test(x)).length;
    return `  <testsuite name="${xmlEsc(c.id)}" tests="${cases.length}" failures="${count(/<failure/)}" errors="${count(/<error/)}" skipped="${count(/<skipped/)}" time="${c.seconds}" timestamp="${xmlEsc(c.started.replace(/\.\d+Z$/, "").replace(/Z$/, ""))}" hostname="${xmlEsc(c.host)}">\n    ${cases.join("\n    ")}\n  </testsuite>`;
  });
  const total = (attr: string) =>
    suites.reduce((n, x) => n + Number(new RegExp(`${attr}="(\\d+)"`).exec(x)?.[1] ?? 0), 0);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="cr-guest matrix ${xmlEsc(r.name)}" tests="${total("tests")}" failures="${total("failures")}" errors="${total("errors")}" skipped="${total("skipped")}">\n${suites.join("\n")}\n</testsuites>\n`;
}

export interface Change {
  cell: string;
  test: string;
  from: string;
  to: string;
  message: string;
}

export interface Comparison {
  regressions: Change[];
  fixes: Change[];
  /** Other status changes (PASS <-> SKIP, tests added or gone). */
  changes: Change[];
  newCells: string[];
  removedCells: string[];
  /** Infrastructure errors on either side: not comparable, never a regression. */
  errors: { cell: string; side: "old" | "new"; reason: string }[];
}

const RAN = (s: CellStatus) => s === "PASS" || s === "FAIL";

export function compareReports(old: CellResult[], now: CellResult[]): Comparison {
  const o = new Map(old.map((c) => [c.id, c]));
  const n = new Map(now.map((c) => [c.id, c]));
  const cmp: Comparison = {
    regressions: [],
    fixes: [],
    changes: [],
    newCells: [],
    removedCells: [],
    errors: [],
  };
  for (const id of o.keys()) if (!n.has(id)) cmp.removedCells.push(id);
  for (const [id, b] of n) {
    const a = o.get(id);
    if (!a) {
      cmp.newCells.push(id);
      continue;
    }
    if (a.status === "ERROR") cmp.errors.push({ cell: id, side: "old", reason: a.reason ?? "" });
    if (b.status === "ERROR") cmp.errors.push({ cell: id, side: "new", reason: b.reason ?? "" });
    if (a.status === "ERROR" || b.status === "ERROR") continue;
    if (RAN(a.status) && b.status === "BUILD-FAILED") {
      cmp.regressions.push({
        cell: id,
        test: "build",
        from: a.status,
        to: b.status,
        message: b.reason ?? "",
      });
      continue;
    }
    if (a.status === "BUILD-FAILED" && RAN(b.status))
      cmp.fixes.push({ cell: id, test: "build", from: a.status, to: b.status, message: "" });
    if (!RAN(a.status) || !RAN(b.status)) {
      if (a.status !== b.status)
        cmp.changes.push({ cell: id, test: "cell", from: a.status, to: b.status, message: b.reason ?? "" });
      continue;
    }
    const at = new Map(a.tests.map((t) => [t.name, t]));
    const bt = new Map(b.tests.map((t) => [t.name, t]));
    for (const [name, t] of bt) {
      const before = at.get(name);
      const change = {
        cell: id,
        test: name,
        from: before?.status ?? "(none)",
        to: t.status,
        message: t.error_lines[0] ?? t.message,
      };
      if (!before) cmp.changes.push(change);
      else if (before.status === t.status) continue;
      else if (before.status === "PASS" && (t.status === "FAIL" || t.status === "ERROR"))
        cmp.regressions.push(change);
      else if ((before.status === "FAIL" || before.status === "ERROR") && t.status === "PASS")
        cmp.fixes.push(change);
      else cmp.changes.push(change);
    }
    for (const [name, t] of at)
      if (!bt.has(name))
        cmp.changes.push({ cell: id, test: name, from: t.status, to: "(none)", message: "" });
  }
  return cmp;
}

export function renderComparison(c: Comparison, markdown: boolean): string {
  const out: string[] = [];
  const section = (title: string, items: string[]) => {
    if (!items.length) return;
    out.push(
      markdown ? `### ${title} (${items.length})` : `${title} (${items.length}):`,
      ...items.map((i) => (markdown ? `- ${i}` : `  ${i}`)),
      "",
    );
  };
  const ch = (x: Change) =>
    markdown
      ? `\`${x.cell}\` ${x.test}: ${x.from} -> ${x.to}${x.message ? ` (\`${mdEscape(x.message)}\`)` : ""}`
      : `${x.cell} ${x.test}: ${x.from} -> ${x.to}${x.message ? ` (${x.message})` : ""}`;
  if (markdown) out.push("## Matrix comparison", "");
  out.push(
    `${c.regressions.length} regressions, ${c.fixes.length} fixes, ${c.newCells.length} new cells, ${c.removedCells.length} removed cells, ${c.errors.length} infrastructure errors`,
    "",
  );
  section("Regressions", c.regressions.map(ch));
  section("Fixes", c.fixes.map(ch));
  section("Other changes", c.changes.map(ch));
  section("New cells", c.newCells);
  section("Removed cells", c.removedCells);
  section(
    "Infrastructure errors (not compared)",
    c.errors.map((e) => `${e.cell} (${e.side}): ${e.reason}`),
  );
  return `${out.join("\n").trimEnd()}\n`;
}
