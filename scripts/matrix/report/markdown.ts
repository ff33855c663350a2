/** matrix.md: the version grid, the pairs' grids, findings, dependencies, predictions, details. */
import { isInformational, type CellResult, type CellTest } from "../cell.js";
import { renderPairGrids } from "../pairs.js";
import { buildBuildColumn, columnStatus, keyMessage } from "./columns.js";
import { mdEscape } from "./escape.js";
import type { MatrixReport } from "./model.js";
import { bootParallelism, cellSummary, predictionChecks, testsLine, totalsLine } from "./summary.js";

function packing(cells: CellResult[]): string[] {
  const p = bootParallelism(cells);
  if (!p) return [];
  const vcpus = Object.entries(p.vcpus).map(([n, boots]) => `${boots} with ${n} vCPU${n === "1" ? "" : "s"}`);
  const guests = vcpus.length ? ` (guests: ${vcpus.join(", ")})` : "";
  return [
    `Boots: ${p.bootSeconds.toFixed(0)} boot-seconds in ${p.wallSeconds.toFixed(0)} s of wall-clock, ` +
      `a parallelism of ${p.parallelism.toFixed(2)}${guests}.`,
    "",
  ];
}

/** A list of test names, the first three and a count when there are more than four. */
function someNames(names: string[]): string {
  return names.length > 4 ? `${names.slice(0, 3).join(", ")} and ${names.length - 3} more` : names.join(", ");
}

/** The version grid: one row per cell (migration pairs have grids of their own). */
function grid(r: MatrixReport): string[] {
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
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((row) => `| ${row.map((x) => mdEscape(String(x))).join(" | ")} |`),
  ];
}

function findings(r: MatrixReport): string[] {
  const lines = ["## Findings", ""];
  if (r.findings.length === 0) lines.push("No known failure pattern was seen.");
  for (const f of r.findings) {
    lines.push(`- **${f.say}**`);
    // Cells that show the same evidence are listed together, the evidence once.
    const byEvidence = new Map<string, string[]>();
    for (const s of f.seen_in) {
      const k = `${s.test}: \`${mdEscape(s.message)}\``;
      byEvidence.set(k, [...(byEvidence.get(k) ?? []), s.cell]);
    }
    const seen = [...byEvidence].map(([evidence, cells]) => `${cells.join(", ")} (${evidence})`);
    lines.push(`  Seen in: ${seen.join("; ")}.`);
    if (f.passes_in.length) lines.push(`  Passes in: ${f.passes_in.join(", ")}.`);
  }
  return lines;
}

function dependencies(r: MatrixReport): string[] {
  if (!r.dependencies.length) return [];
  return ["", "## What each result depends on", "", ...r.dependencies.map((d) => `- ${mdEscape(d)}`)];
}

function predictions(r: MatrixReport): string[] {
  const checks = r.cells.flatMap(predictionChecks);
  if (!checks.length) return [];
  return [
    "",
    "## Predictions of `cr-guest doctor` against the results",
    "",
    ...checks.map(
      (k) =>
        `- ${k.cell}: predicted ${k.expect} for ${k.test} ("${mdEscape(k.what)}"); ` +
        `observed: ${k.observed}${k.held === false ? " (NOT as predicted)" : ""}.`,
    ),
  ];
}

/**
 * A cell's failing tests; those failing with the same evidence and diagnosis are one entry (a
 * CRIU that cannot start fails them all alike), the diagnosis under CRIU's Error lines.
 */
function failureGroups(c: CellResult): string[] {
  const groups = new Map<string, CellTest[]>();
  for (const t of c.tests.filter((x) => x.status === "FAIL" || x.status === "ERROR")) {
    const k = `${t.status}\u0000${t.outcome ?? ""}\u0000${t.message}\u0000${t.error_lines.join("\n")}\u0000${t.cause?.text ?? ""}`;
    groups.set(k, [...(groups.get(k) ?? []), t]);
  }
  const lines: string[] = [];
  for (const ts of groups.values()) {
    const t = ts[0];
    const names = someNames(ts.map((x) => `\`${x.name}\``));
    const info = ts.every((x) => isInformational(x.name, c.informational)) ? " (informational)" : "";
    const outcome = t.outcome ? ` (${t.outcome})` : "";
    lines.push(`- ${names} ${t.status}${info}${outcome}: ${mdEscape(t.message) || "(no message)"}`);
    for (const e of t.error_lines.slice(0, 4)) lines.push(`  - \`${mdEscape(e)}\``);
    if (t.cause) lines.push(`  - diagnosis: ${mdEscape(t.cause.text)}`);
  }
  return lines;
}

function cellDetails(c: CellResult): string[] {
  const lines = [`### ${c.id}: ${c.status}`, ""];
  if (c.reason) lines.push(`${c.reason}`, "");
  if (cellSummary(c)) lines.push(cellSummary(c), "");
  lines.push(...failureGroups(c));
  if (c.paths.results) lines.push("", `Evidence: \`${c.paths.results}\` (in the cache dir on ${c.host})`);
  lines.push("");
  return lines;
}

function details(r: MatrixReport): string[] {
  const broken = r.cells.filter((c) => c.status !== "PASS");
  if (!broken.length) return [];
  return ["", "## Details of cells that are not PASS", "", ...broken.flatMap(cellDetails)];
}

function notInMatrix(r: MatrixReport): string[] {
  if (!r.excluded.length) return [];
  return ["", "## Not in the matrix", "", ...r.excluded.map((e) => `- ${e.id}: ${mdEscape(e.reason)}`)];
}

function merged(r: MatrixReport): string[] {
  const n = r.merged_duplicates.length;
  if (!n) return [];
  return [
    "",
    `Merged: ${n} cells came from more than one source; ` +
      `the newest was kept (${r.merged_duplicates.join(", ")}).`,
  ];
}

export function renderMarkdown(r: MatrixReport): string {
  const lines = [
    `# CRIU version matrix: ${r.name}`,
    "",
    `${totalsLine(r)} Generated ${r.created}.`,
    "",
    testsLine(r),
    "",
    ...packing(r.cells),
    ...grid(r),
    "",
    ...renderPairGrids(r.cells),
    ...findings(r),
    ...dependencies(r),
    ...predictions(r),
    ...details(r),
    ...notInMatrix(r),
    ...merged(r),
  ];
  return `${lines.join("\n").replace(/\n{3,}/g, "\n\n")}\n`;
}
