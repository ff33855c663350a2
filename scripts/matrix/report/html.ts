/** matrix.html: one self-contained page, a coloured grid; a click on a cell's row opens its evidence. */
import type { CellResult, CellTest } from "../cell.js";
import { buildBuildColumn, columnStatus, keyMessage } from "./columns.js";
import { htmlEscape as esc } from "./escape.js";
import type { MatrixReport } from "./model.js";
import { cellSummary, testsLine, totalsLine } from "./summary.js";

const STYLE = [
  "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}",
  "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}",
  "tr.cell{cursor:pointer}tr.cell:hover{outline:2px solid #555}",
  [
    ".s-pass{background:#c8efc8}",
    ".s-xfail{background:#dde8f6}",
    ".s-xpass{background:#f3e7a8}",
    ".s-fail{background:#f6c1c1}",
    ".s-error{background:#f9e0a0}",
    ".s-skip,.s-skipped{background:#e4e4e4}",
    ".s-buildfailed{background:#e8b0e8}",
  ].join(""),
  "pre{white-space:pre-wrap;margin:2px 0;font-size:12px}.small{font-size:12px;color:#555}" +
    "table.tests{margin-top:4px}",
];

/** A row's click shows or hides the detail row after it. */
const SCRIPT = [
  'for (const row of document.querySelectorAll("tr.cell")) row.addEventListener("click", () => {',
  " const d = document.getElementById(row.dataset.d); d.hidden = !d.hidden; });",
].join("");

const statusClass = (s: string) => `s-${s.toLowerCase().replace(/[^a-z]/g, "")}`;
const td = (text: string, cls?: string) => `<td${cls === undefined ? "" : ` class="${cls}"`}>${text}</td>`;
const statusTd = (s: string) => td(esc(s), statusClass(s));
const details = (summary: string, text: string) =>
  `<details><summary>${summary}</summary><pre>${esc(text)}</pre></details>`;
const list = (items: string[]) => `<ul>${items.map((i) => `<li>${i}</li>`).join("")}</ul>`;

/** One test of a cell: its status, time, message, the map's diagnosis and CRIU's Error lines, diagnostics folded. */
function testRow(t: CellTest): string {
  const outcome = t.outcome ? ` <em>(${esc(t.outcome)})</em>` : "";
  const cause = t.cause ? `<br>diagnosis: ${esc(t.cause.text)}` : "";
  const errors = t.error_lines.length ? `<pre>${esc(t.error_lines.join("\n"))}</pre>` : "";
  const diagnostics = t.diagnostics ? details("diagnostics", t.diagnostics) : "";
  return [
    "<tr>",
    td(esc(t.name)),
    td(t.status, statusClass(t.status)),
    td(t.seconds.toFixed(1)),
    td(`${esc(t.message)}${outcome}${cause}${errors}${diagnostics}`),
    "</tr>",
  ].join("");
}

function testsTable(c: CellResult): string {
  const tests = c.tests.map(testRow).join("");
  if (!tests) return "";
  const head = ["test", "status", "s", "message, CRIU Error lines"].map((h) => `<th>${h}</th>`).join("");
  return `<table class="tests"><tr>${head}</tr>${tests}</table>`;
}

/** The hidden row under a cell: its status, sets, predictions, identities, tests and console. */
function detailRow(c: CellResult, id: string, columns: number): string {
  const reason = c.reason ? ` &mdash; ${esc(c.reason)}` : "";
  const summary = cellSummary(c) ? `<br>${esc(cellSummary(c))}` : "";
  const predicted = c.predicted.map((p) => `${esc(p.severity)}: ${esc(p.what)}`).join("; ");
  const ids = Object.entries(c.identities)
    .map(([k, v]) => `${k}: ${esc(JSON.stringify(v))}`)
    .join("<br>");
  const run = [
    `accel ${esc(c.accel ?? "-")}, ${c.seconds.toFixed(0)} s on ${esc(c.host)}`,
    `evidence: ${esc(c.paths.results ?? "-")} (in its cache dir)`,
  ].join("; ");
  return [
    `<tr class="detail" id="${id}" hidden><td colspan="${columns}">`,
    `<p><b>${esc(c.id)}</b>: ${esc(c.status)}${reason}${summary}</p>`,
    `<p>${c.sets.map((s) => `<code>--set ${esc(s)}</code>`).join(" ")}</p>`,
    c.predicted.length ? `<p>predicted: ${predicted}</p>` : "",
    `<p class="small">${ids}<br>stages: ${esc(JSON.stringify(c.stages))}<br>${run}</p>`,
    testsTable(c),
    c.console_tail ? details("console (last lines)", c.console_tail) : "",
    "</td></tr>",
  ].join("\n");
}

/** A cell's row in the grid, then its detail row. */
function cellRows(r: MatrixReport, c: CellResult, i: number, columns: number): string {
  const row = [
    `<tr class="cell" data-d="d${i}">`,
    td(esc(c.id)),
    td(esc(c.criu_version)),
    td(esc(c.patches.join(", ") || "none")),
    td(esc(c.axes.kernel)),
    td(esc(buildBuildColumn(c)), statusClass(c.status === "BUILD-FAILED" ? "FAIL" : "")),
    ...r.columns.map((col) => statusTd(columnStatus(c, col))),
    td(esc(keyMessage(c))),
    "</tr>",
  ].join("");
  return `${row}${detailRow(c, `d${i}`, columns)}`;
}

function findingItem(f: MatrixReport["findings"][number]): string {
  const seen = f.seen_in.map((s) => `${esc(s.cell)} (<code>${esc(s.message)}</code>)`).join("; ");
  const passes = f.passes_in.length ? `<br>passes in: ${esc(f.passes_in.join(", "))}` : "";
  return `<li><b>${esc(f.say)}</b><br>seen in: ${seen}${passes}</li>`;
}

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
  const findings = r.findings.map(findingItem).join("\n");
  const title = `CRIU version matrix: ${esc(r.name)}`;
  const dependencies = r.dependencies.length
    ? `<h2>What each result depends on</h2>${list(r.dependencies.map(esc))}`
    : "";
  const excluded = r.excluded.length
    ? `<h2>Not in the matrix</h2>${list(r.excluded.map((e) => `${esc(e.id)}: ${esc(e.reason)}`))}`
    : "";
  const click = "Click a row for its tests, CRIU's Error lines, diagnostics and console.";
  return [
    "<!doctype html>",
    `<html lang="en"><head><meta charset="utf-8"><title>${title}</title>`,
    "<style>",
    ...STYLE,
    "</style></head><body>",
    `<h1>${title}</h1>`,
    `<p>${totalsLine(r)} Generated ${esc(r.created)}. ${click}</p>`,
    `<p>${esc(testsLine(r))}</p>`,
    `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>`,
    r.cells.map((c, i) => cellRows(r, c, i, head.length)).join("\n"),
    "</table>",
    `<h2>Findings</h2><ul>${findings || "<li>No known failure pattern was seen.</li>"}</ul>`,
    dependencies,
    excluded,
    "<script>",
    SCRIPT,
    "</script>",
    "</body></html>",
    "",
  ].join("\n");
}
