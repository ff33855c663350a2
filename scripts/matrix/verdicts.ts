/**
 * What each test result means, pure: deciding or informational, and for a deciding failure
 * whether the doctor predicted it (an expected failure, like pytest's xfail) or not. A
 * predicted failure that passes is an unexpected pass. The predictions come from the cell's
 * `predicted` list (catalog facts and doctor rules), never from cell ids. The CLI, matrix.md,
 * the HTML page, JUnit and CI's exit code all read this one judgement.
 */
import { isInformational, type CellResult, type CellTest } from "./cell.js";

export type Verdict = "pass" | "fail" | "error" | "skip" | "informational" | "xfail" | "xpass";

export interface JudgedTest {
  test: CellTest;
  verdict: Verdict;
  /** For xfail / xpass: the prediction; for informational: why it does not decide. */
  because?: string;
}

type Prediction = CellResult["predicted"][number];

const covers = (pattern: string, name: string) => name === pattern || name.startsWith(`${pattern}/`);

/**
 * A prediction that CRIU will not start: every test that needs CRIU fails with it. A plain
 * check the kernel fails (id check/NAME) fails criu check alone, and explains nothing else.
 */
const startsNot = (p: Prediction) =>
  p.test === "criu-check" && p.expect === "FAIL" && !p.id.startsWith("check/");

export function judgeCell(cell: CellResult): JudgedTest[] {
  const failing = cell.predicted.filter((p) => p.test && p.expect === "FAIL");
  const check = cell.tests.find((t) => t.name === "criu-check");
  // Only when the predicted start failure is what happened does it explain the other failures.
  const noStart = check?.status === "FAIL" ? failing.find(startsNot) : undefined;
  return cell.tests.map((t): JudgedTest => {
    if (isInformational(t.name, cell.informational))
      return {
        test: t,
        verdict: "informational",
        because:
          t.name.startsWith("feature/") || t.name === "criu-check-all"
            ? "criu check --all and --feature never decide"
            : "an observing case: it shows a behaviour, it does not decide",
      };
    const p = failing.find((x) => covers(x.test!, t.name));
    if (p && t.status === "PASS") return { test: t, verdict: "xpass", because: p.what };
    if (t.status === "FAIL" || t.status === "ERROR") {
      if (p) return { test: t, verdict: "xfail", because: p.what };
      if (noStart && t.status === "FAIL") return { test: t, verdict: "xfail", because: noStart.what };
      return { test: t, verdict: t.status === "FAIL" ? "fail" : "error" };
    }
    return { test: t, verdict: t.status === "PASS" ? "pass" : "skip" };
  });
}

export interface Tally {
  passed: number;
  failed: number;
  errors: number;
  skipped: number;
  expectedFailures: number;
  unexpectedPasses: number;
  features: { passed: number; total: number };
  /** Informational tests other than features that did not pass (criu check --all, observing cases). */
  observed: { name: string; status: string; outcome?: string | null }[];
}

export function tally(judged: JudgedTest[]): Tally {
  const n = (v: Verdict) => judged.filter((j) => j.verdict === v).length;
  const features = judged.filter((j) => j.test.name.startsWith("feature/"));
  return {
    passed: n("pass"),
    failed: n("fail"),
    errors: n("error"),
    skipped: n("skip"),
    expectedFailures: n("xfail"),
    unexpectedPasses: n("xpass"),
    features: { passed: features.filter((j) => j.test.status === "PASS").length, total: features.length },
    observed: judged
      .filter(
        (j) =>
          j.verdict === "informational" &&
          !j.test.name.startsWith("feature/") &&
          j.test.status !== "PASS" &&
          j.test.status !== "SKIP",
      )
      .map((j) => ({ name: j.test.name, status: j.test.status, outcome: j.test.outcome })),
  };
}

/** Unexpected failures (and errors): what makes CI red, besides regressions. */
export const unexpected = (t: Tally) => t.failed + t.errors;

/**
 * One line a reader takes at its word, e.g. "deciding: 18 passed, 0 failed, 2 expected
 * failures; informational: 36/41 features, observed: frozen-cgroup/without-freeze-cgroup (hang)".
 */
export function summaryLine(t: Tally): string {
  const deciding = [`${t.passed} passed`, `${t.failed} failed`];
  if (t.errors) deciding.push(`${t.errors} errors`);
  if (t.expectedFailures)
    deciding.push(`${t.expectedFailures} expected failure${t.expectedFailures === 1 ? "" : "s"}`);
  if (t.unexpectedPasses)
    deciding.push(`${t.unexpectedPasses} unexpected pass${t.unexpectedPasses === 1 ? "" : "es"}`);
  if (t.skipped) deciding.push(`${t.skipped} skipped`);
  const info = [`${t.features.passed}/${t.features.total} features`];
  // Over many cells the same observation is counted, not repeated.
  const seen = new Map<string, number>();
  for (const o of t.observed) {
    const k = `${o.name} (${o.outcome && o.outcome !== "error" ? o.outcome : o.status})`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  if (seen.size)
    info.push(`observed: ${[...seen].map(([k, n]) => (n > 1 ? `${k} in ${n} cells` : k)).join(", ")}`);
  return `deciding: ${deciding.join(", ")}; informational: ${info.join(", ")}`;
}

/** The tallies of several cells added up (cells that never ran add nothing). */
export function sumTallies(ts: Tally[]): Tally {
  return ts.reduce(
    (a, t) => ({
      passed: a.passed + t.passed,
      failed: a.failed + t.failed,
      errors: a.errors + t.errors,
      skipped: a.skipped + t.skipped,
      expectedFailures: a.expectedFailures + t.expectedFailures,
      unexpectedPasses: a.unexpectedPasses + t.unexpectedPasses,
      features: { passed: a.features.passed + t.features.passed, total: a.features.total + t.features.total },
      observed: [...a.observed, ...t.observed],
    }),
    {
      passed: 0,
      failed: 0,
      errors: 0,
      skipped: 0,
      expectedFailures: 0,
      unexpectedPasses: 0,
      features: { passed: 0, total: 0 },
      observed: [],
    },
  );
}

/** A cell that ran and has a deciding failure nobody predicted (what --strict and CI fail on). */
export const failsUnexpectedly = (cell: CellResult) =>
  cell.status === "FAIL" && unexpected(tally(judgeCell(cell))) > 0;
