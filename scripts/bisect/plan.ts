/**
 * Bisection as data (pure): the state of a bisect over an ordered range of candidates (CRIU
 * commits, oldest first), the next step to run, and the answer. As KernelCI bisects: first
 * confirm that the good end passes and the bad end fails, then halve the range, skipping what
 * cannot be tested (`git bisect run`'s 125), then re-run the culprit and its parent.
 */
import type { StepVerdict } from "../boot/test-selection.js";

export type StepRole = "good-end" | "bad-end" | "step" | "confirm-culprit" | "confirm-parent";

/** A candidate of the range: a commit (its subject) or, for a config bisect, a set of symbols. */
export interface Candidate {
  id: string;
  title: string;
}

export interface BisectStep {
  /** The candidate's id; the good end's for the good end. */
  id: string;
  role: StepRole;
  verdict: Exclude<StepVerdict, "abort">;
  status: string;
  reason: string;
  /** The run whose results.json is the evidence (none when nothing could be built). */
  evidence: string | null;
  seconds: number;
  at: string;
}

export interface BisectRange {
  good: Candidate;
  /** Oldest first; the bad end is the last. */
  candidates: Candidate[];
  steps: BisectStep[];
}

export type BisectAnswer =
  | { kind: "found"; culprit: Candidate; parent: Candidate; confirmed: boolean; why: string }
  | { kind: "ambiguous"; among: Candidate[]; why: string }
  | { kind: "ends"; why: string };

export type NextStep =
  { action: "test"; candidate: Candidate; role: StepRole } | { action: "done"; answer: BisectAnswer };

/** The last verdict of a bisecting step (ends and halvings; confirmations are apart). */
function verdictOf(r: BisectRange, id: string): BisectStep | undefined {
  return r.steps.filter((s) => s.id === id && !s.role.startsWith("confirm")).at(-1);
}

/** Where the first bad candidate is: after `lo` (-1: the good end), at or before `hi`. */
export function bounds(r: BisectRange): { lo: number; hi: number; untested: number[]; skipped: number[] } {
  const n = r.candidates.length;
  const v = r.candidates.map((c) => verdictOf(r, c.id)?.verdict);
  let hi = v.findIndex((x) => x === "bad");
  if (hi < 0) hi = n - 1;
  let lo = -1;
  for (let i = hi - 1; i >= 0; i--)
    if (v[i] === "good") {
      lo = i;
      break;
    }
  const inside = [...Array(Math.max(0, hi - lo - 1)).keys()].map((k) => lo + 1 + k);
  return {
    lo,
    hi,
    untested: inside.filter((i) => v[i] === undefined),
    skipped: inside.filter((i) => v[i] === "skip"),
  };
}

/** The untested index nearest the middle of (lo, hi), the lower one on a tie. */
function middle(lo: number, hi: number, untested: number[]): number {
  const mid = (lo + hi) / 2;
  return [...untested].sort((a, b) => Math.abs(a - mid) - Math.abs(b - mid) || a - b)[0]!;
}

const endName = (role: StepRole) => (role === "good-end" ? "good" : "bad");

export function nextStep(r: BisectRange): NextStep {
  const bad = r.candidates.at(-1)!;
  for (const [role, c, want] of [
    ["good-end", r.good, "good"],
    ["bad-end", bad, "bad"],
  ] as const) {
    const s = r.steps.find((x) => x.role === role);
    if (!s) return { action: "test", candidate: c, role };
    if (s.verdict !== want) {
      const got = s.verdict === "skip" ? "cannot be tested" : s.verdict === "good" ? "passes" : "fails";
      return {
        action: "done",
        answer: {
          kind: "ends",
          why: `the ${endName(role)} end ${c.id.slice(0, 12)} ${got} (${s.reason})${s.evidence ? `; evidence ${s.evidence}` : ""}`,
        },
      };
    }
  }
  const { lo, hi, untested, skipped } = bounds(r);
  if (untested.length)
    return { action: "test", candidate: r.candidates[middle(lo, hi, untested)]!, role: "step" };
  const culprit = r.candidates[hi]!;
  if (skipped.length)
    return {
      action: "done",
      answer: {
        kind: "ambiguous",
        among: [...skipped.map((i) => r.candidates[i]!), culprit],
        why:
          skipped.length === hi - lo - 1 && lo === -1 && hi === r.candidates.length - 1
            ? "every commit between the ends cannot be tested"
            : `${skipped.length} commit(s) before ${culprit.id.slice(0, 12)} cannot be tested`,
      },
    };
  const parent = lo >= 0 ? r.candidates[lo]! : r.good;
  for (const [role, c] of [
    ["confirm-culprit", culprit],
    ["confirm-parent", parent],
  ] as const)
    if (!r.steps.some((s) => s.role === role && s.id === c.id)) return { action: "test", candidate: c, role };
  const cc = r.steps.filter((s) => s.role === "confirm-culprit" && s.id === culprit.id).at(-1)!;
  const cp = r.steps.filter((s) => s.role === "confirm-parent" && s.id === parent.id).at(-1)!;
  const confirmed = cc.verdict === "bad" && cp.verdict === "good";
  return {
    action: "done",
    answer: {
      kind: "found",
      culprit,
      parent,
      confirmed,
      why: confirmed
        ? "re-run: the culprit fails again and its parent passes again"
        : `not confirmed on re-run: the culprit ${cc.verdict === "bad" ? "fails" : `is ${cc.verdict}`}, its parent ${cp.verdict === "good" ? "passes" : `is ${cp.verdict}`} (a flaky test?)`,
    },
  };
}

/** Steps still to run at most: untested ends, the halvings left, the two confirmations. */
export function stepsLeft(r: BisectRange): number {
  const ends = ["good-end", "bad-end"].filter((role) => !r.steps.some((s) => s.role === role)).length;
  const { untested } = bounds(r);
  const confirms = 2 - r.steps.filter((s) => s.role.startsWith("confirm")).length;
  return ends + Math.ceil(Math.log2(untested.length + 1)) + Math.max(0, confirms);
}

/** The worst case of a fresh bisect over `n` candidates (the bad end included). */
export function worstCase(n: number): { steps: number; builds: number; boots: number } {
  const halvings = Math.ceil(Math.log2(Math.max(1, n)));
  // The confirmations boot again what was built: no new builds.
  return { steps: 2 + halvings + 2, builds: 2 + halvings, boots: 2 + halvings + 2 };
}

/** "step N of about M, K left in the range": the progress line's head. */
export function progress(r: BisectRange): string {
  const n = r.steps.length + 1;
  const { lo, hi } = bounds(r);
  return `step ${n} of about ${r.steps.length + stepsLeft(r)}, ${hi - lo} candidate(s) left (${r.candidates[lo + 1]?.id.slice(0, 12) ?? "?"}..${r.candidates[hi]?.id.slice(0, 12) ?? "?"})`;
}
