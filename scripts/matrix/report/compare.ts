/** Comparing two runs' cells: regressions, fixes, other changes; and the comparison as text. */
import type { CellResult, CellStatus } from "../cell.js";
import { bisectAdvice } from "./bisect.js";
import { mdEscape } from "./escape.js";

export interface Change {
  cell: string;
  test: string;
  from: string;
  to: string;
  message: string;
}

/** A regression, with the `cr-guest bisect` command that would find its cause, when one would. */
export interface Regression extends Change {
  bisect: string[];
  /** Why there is no command when one was expected (both CRIU and the kernel config changed). */
  bisect_note?: string;
}

export interface Comparison {
  regressions: Regression[];
  fixes: Change[];
  /** Other status changes (PASS <-> SKIP, tests added or gone). */
  changes: Change[];
  newCells: string[];
  removedCells: string[];
  /** Infrastructure errors on either side: not comparable, never a regression. */
  errors: { cell: string; side: "old" | "new"; reason: string }[];
}

const RAN = (s: CellStatus) => s === "PASS" || s === "FAIL";
const failed = (s: string) => s === "FAIL" || s === "ERROR";

function regression(change: Change, a: CellResult, b: CellResult): Regression {
  const { commands, note } = bisectAdvice(a, b, change.test);
  return { ...change, bisect: commands, ...(note ? { bisect_note: note } : {}) };
}

/** One cell on both sides, when neither is an infrastructure error. */
function compareCell(cmp: Comparison, id: string, a: CellResult, b: CellResult): void {
  if (RAN(a.status) && b.status === "BUILD-FAILED") {
    const change = { cell: id, test: "build", from: a.status, to: b.status, message: b.reason ?? "" };
    cmp.regressions.push(regression(change, a, b));
    return;
  }
  if (a.status === "BUILD-FAILED" && RAN(b.status))
    cmp.fixes.push({ cell: id, test: "build", from: a.status, to: b.status, message: "" });
  if (!RAN(a.status) || !RAN(b.status)) {
    if (a.status !== b.status)
      cmp.changes.push({ cell: id, test: "cell", from: a.status, to: b.status, message: b.reason ?? "" });
    return;
  }
  compareTests(cmp, a, b);
}

/** The tests of one cell that ran on both sides. */
function compareTests(cmp: Comparison, a: CellResult, b: CellResult): void {
  const id = b.id;
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
    else if (before.status === "PASS" && failed(t.status)) cmp.regressions.push(regression(change, a, b));
    else if (failed(before.status) && t.status === "PASS") cmp.fixes.push(change);
    else cmp.changes.push(change);
  }
  for (const [name, t] of at)
    if (!bt.has(name)) cmp.changes.push({ cell: id, test: name, from: t.status, to: "(none)", message: "" });
}

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
    if (a.status !== "ERROR" && b.status !== "ERROR") compareCell(cmp, id, a, b);
  }
  return cmp;
}

/** A regression's bisect commands under it: a nested list item in Markdown, an indented line in text. */
function bisectLines(x: Regression, markdown: boolean): string {
  const lines = [
    ...x.bisect.map((b) => `bisect: ${markdown ? `\`${b}\`` : b}`),
    ...(x.bisect_note ? [x.bisect_note] : []),
  ];
  return lines.map((line) => (markdown ? `\n  - ${line}` : `\n    ${line}`)).join("");
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
  const counts = [
    `${c.regressions.length} regressions`,
    `${c.fixes.length} fixes`,
    `${c.newCells.length} new cells`,
    `${c.removedCells.length} removed cells`,
    `${c.errors.length} infrastructure errors`,
  ];
  out.push(counts.join(", "), "");
  section(
    "Regressions",
    c.regressions.map((x) => ch(x) + bisectLines(x, markdown)),
  );
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
