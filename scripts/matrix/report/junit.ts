/**
 * junit.xml as GitHub, GitLab and Jenkins viewers read it: only an unexpected failure is a
 * <failure> (with a type), an infrastructure problem an <error>; informational tests and
 * expected failures are <skipped> with the reason, so a cell the report calls PASS is green.
 */
import type { CellResult, CellTest } from "../cell.js";
import { judgeCell, type JudgedTest, type Verdict } from "../verdicts.js";
import { xmlEscape } from "./escape.js";
import type { MatrixReport } from "./model.js";

/** A JUnit classname without dots in the cell id: viewers split dotted classnames into packages. */
export const junitClassname = (cellId: string) => `cr-guest.${cellId.replace(/\./g, "_")}`;

type Attributes = Record<string, string | number | undefined>;

/** Escaped attributes, in order; an undefined one is left out. */
const attributes = (a: Attributes) =>
  Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${xmlEscape(String(v))}"`)
    .join("");

/** An element; without inner text, self-closing. */
const element = (name: string, a: Attributes, inner?: string) =>
  inner === undefined ? `<${name}${attributes(a)}/>` : `<${name}${attributes(a)}>${inner}</${name}>`;

const openTag = (name: string, a: Attributes) => `<${name}${attributes(a)}>`;

/** What a test case holds, by which the suite counts it. */
type Kind = "failure" | "error" | "skipped" | "passed";
interface Case {
  kind: Kind;
  xml: string;
}

/** A message with the map's diagnosis after it, when the test has one. */
const withCause = (message: string, t: CellTest) =>
  t.cause ? `${message}${message ? "; " : ""}diagnosis: ${t.cause.text}` : message;

const evidence = (t: CellTest) => xmlEscape([...t.error_lines, t.diagnostics ?? ""].join("\n").trim());

/** A judged test's content in its <testcase>, by verdict. */
const VERDICT_CONTENT: Record<Verdict, (j: JudgedTest) => { kind: Kind; inner: string }> = {
  pass: () => ({ kind: "passed", inner: "" }),
  fail: (j) => ({
    kind: "failure",
    inner: element(
      "failure",
      { type: j.test.outcome ?? "failure", message: withCause(j.test.message, j.test) },
      evidence(j.test),
    ),
  }),
  error: (j) => ({
    kind: "error",
    inner: element(
      "error",
      { type: "test-error", message: withCause(j.test.message, j.test) },
      evidence(j.test),
    ),
  }),
  skip: (j) => ({ kind: "skipped", inner: element("skipped", { message: j.test.message }) }),
  informational: (j) => ({
    kind: "skipped",
    inner: element("skipped", {
      message: withCause(`informational (${j.test.status}): ${j.test.message}`, j.test),
    }),
  }),
  xfail: (j) => ({
    kind: "skipped",
    inner: element(
      "skipped",
      { message: withCause(`expected failure: ${j.because}`, j.test) },
      evidence(j.test),
    ),
  }),
  // A predicted failure that passed: the prediction is wrong, which deserves a look, not a red build.
  xpass: (j) => ({
    kind: "passed",
    inner: element(
      "properties",
      {},
      element("property", { name: "unexpected-pass", value: j.because ?? "" }),
    ),
  }),
};

/** The one case of a cell that never booted: why, as JUnit's kind of result. */
function cellCase(c: CellResult): { name: string; kind: Kind; inner: string } | undefined {
  const reason = c.reason ?? "";
  if (c.status === "SKIPPED")
    return { name: "cell", kind: "skipped", inner: element("skipped", { message: reason }) };
  if (c.status === "BUILD-FAILED")
    return {
      name: "build",
      kind: "failure",
      inner: element("failure", { type: "build-failed", message: reason }),
    };
  if (c.status === "ERROR")
    return {
      name: "boot",
      kind: "error",
      inner: element("error", { type: "infrastructure", message: reason }, xmlEscape(c.console_tail)),
    };
  return undefined;
}

function casesOf(c: CellResult): Case[] {
  const testcase = (name: string, time: number | undefined, kind: Kind, inner: string): Case => ({
    kind,
    xml: element("testcase", { classname: junitClassname(c.id), name, time }, inner),
  });
  const cases: Case[] = [];
  const never = cellCase(c);
  if (never) cases.push(testcase(never.name, undefined, never.kind, never.inner));
  for (const j of c.status === "PASS" || c.status === "FAIL" ? judgeCell(c) : []) {
    const { kind, inner } = VERDICT_CONTENT[j.verdict](j);
    cases.push(testcase(j.test.name, j.test.seconds, kind, inner));
  }
  return cases;
}

interface Counts {
  tests: number;
  failures: number;
  errors: number;
  skipped: number;
}

function countsOf(cases: Case[]): Counts {
  const n = (k: Kind) => cases.filter((x) => x.kind === k).length;
  return { tests: cases.length, failures: n("failure"), errors: n("error"), skipped: n("skipped") };
}

/** One <testsuite> per cell, indented as the file is laid out. */
function suiteOf(c: CellResult): { xml: string; counts: Counts } {
  const cases = casesOf(c);
  const counts = countsOf(cases);
  const open = openTag("testsuite", {
    name: c.id,
    ...counts,
    time: c.seconds,
    timestamp: c.started.replace(/\.\d+Z$/, "").replace(/Z$/, ""),
    hostname: c.host,
  });
  const lines = [`  ${open}`, ...cases.map((x) => `    ${x.xml}`), "  </testsuite>"];
  // A suite without cases still has its (empty) case line, as the file always had.
  if (!cases.length) lines.splice(1, 0, "    ");
  return { xml: lines.join("\n"), counts };
}

export function renderJunit(r: MatrixReport): string {
  const suites = r.cells.map(suiteOf);
  const total = (k: keyof Counts) => suites.reduce((n, s) => n + s.counts[k], 0);
  const open = openTag("testsuites", {
    name: `cr-guest matrix ${r.name}`,
    tests: total("tests"),
    failures: total("failures"),
    errors: total("errors"),
    skipped: total("skipped"),
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    open,
    suites.map((s) => s.xml).join("\n"),
    "</testsuites>",
    "",
  ].join("\n");
}
