/**
 * Bisection as data (scripts/bisect/plan.ts) driven to its end by an oracle over a real shape
 * of range (171 commits, as v3.18..v3.19), and the test selection of `smoke --test`
 * (scripts/boot/test-selection.ts) against the repository's real scenarios, map and a
 * recorded guest run.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  nextStep,
  worstCase,
  bounds,
  progress,
  type BisectRange,
  type BisectStep,
  type Candidate,
} from "../../scripts/bisect/plan.js";
import {
  BISECT_EXIT,
  knownTestIds,
  scenariosFor,
  selectTest,
  testOutcome,
} from "../../scripts/boot/test-selection.js";
import { loadScenarios, scriptCases } from "../../scripts/data/scenarios.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { UserError } from "../../scripts/lib/errors.js";

const commits = (n: number): Candidate[] =>
  [...Array(n).keys()].map((i) => ({
    id: `c${String(i).padStart(3, "0")}`.padEnd(40, "0"),
    title: `commit ${i}`,
  }));

type Oracle = (c: Candidate, role: BisectStep["role"], runs: number) => "good" | "bad" | "skip";

/** Runs the plan to its answer; the oracle answers each step. */
function drive(n: number, oracle: Oracle, maxSteps = 40) {
  const good: Candidate = { id: "g".padEnd(40, "0"), title: "the good end" };
  const r: BisectRange = { good, candidates: commits(n), steps: [] };
  const runs = new Map<string, number>();
  for (let i = 0; i < maxSteps; i++) {
    const next = nextStep(r);
    if (next.action === "done") return { r, answer: next.answer };
    const k = (runs.get(next.candidate.id) ?? 0) + 1;
    runs.set(next.candidate.id, k);
    r.steps.push({
      id: next.candidate.id,
      role: next.role,
      verdict: oracle(next.candidate, next.role, k),
      status: "x",
      reason: "x",
      evidence: null,
      seconds: 1,
      at: "",
    });
  }
  throw new Error("the bisect did not end");
}

const index = (c: Candidate) => (c.id.startsWith("g") ? -1 : Number(c.id.slice(1, 4)));
const culpritAt =
  (k: number): Oracle =>
  (c) =>
    index(c) >= k ? "bad" : "good";

describe("bisect plan", () => {
  it("finds the culprit of 171 commits in the worst-case number of steps, ends confirmed first and the culprit re-run", () => {
    for (const k of [0, 1, 85, 130, 169, 170]) {
      const { r, answer } = drive(171, culpritAt(k));
      expect(answer.kind).toBe("found");
      if (answer.kind !== "found") continue;
      expect(answer.culprit.id).toBe(commits(171)[k]!.id);
      expect(answer.parent.id).toBe(k === 0 ? "g".padEnd(40, "0") : commits(171)[k - 1]!.id);
      expect(answer.confirmed).toBe(true);
      expect(r.steps.slice(0, 2).map((s) => s.role)).toEqual(["good-end", "bad-end"]);
      expect(r.steps.slice(-2).map((s) => s.role)).toEqual(["confirm-culprit", "confirm-parent"]);
      expect(r.steps.length).toBeLessThanOrEqual(worstCase(171).steps);
    }
    expect(worstCase(171)).toEqual({ steps: 12, builds: 10, boots: 12 });
  });

  it("stops at the ends: a good end that fails, a bad end that passes, an end that cannot be tested", () => {
    const a = drive(10, () => "bad").answer;
    expect(a).toMatchObject({ kind: "ends" });
    expect(a.kind === "ends" && a.why).toMatch(/the good end g0{11} fails/);
    const b = drive(10, () => "good").answer;
    expect(b.kind === "ends" && b.why).toMatch(/the bad end c009.* passes/);
    const c = drive(10, (x) => (index(x) === 9 ? "skip" : "good")).answer;
    expect(c.kind === "ends" && c.why).toMatch(/cannot be tested/);
  });

  it("skips what cannot be tested, and names every candidate when skips hide the culprit", () => {
    // Commits 40..59 do not build; the culprit is 70: found around them.
    const around: Oracle = (c) =>
      index(c) >= 40 && index(c) < 60 ? "skip" : index(c) >= 70 ? "bad" : "good";
    const found = drive(100, around).answer;
    expect(found.kind === "found" && found.culprit.title).toBe("commit 70");
    // The culprit is 50, inside the untestable block: the answer is the block and the first bad.
    const hidden: Oracle = (c) =>
      index(c) >= 40 && index(c) < 60 ? "skip" : index(c) >= 50 ? "bad" : "good";
    const amb = drive(100, hidden).answer;
    expect(amb.kind).toBe("ambiguous");
    if (amb.kind === "ambiguous") {
      expect(amb.among.map((c) => c.title)).toEqual(
        [...Array(20).keys()].map((i) => `commit ${40 + i}`).concat("commit 60"),
      );
    }
    const all = drive(5, (c) => (index(c) === -1 ? "good" : index(c) === 4 ? "bad" : "skip")).answer;
    expect(all.kind === "ambiguous" && all.why).toBe("every commit between the ends cannot be tested");
  });

  it("says so when the culprit does not fail again on re-run (a flaky test)", () => {
    const flaky: Oracle = (c, role) => (role === "confirm-culprit" ? "good" : culpritAt(3)(c, role, 1));
    const a = drive(8, flaky).answer;
    expect(a).toMatchObject({ kind: "found", confirmed: false });
    expect(a.kind === "found" && a.why).toMatch(
      /not confirmed on re-run: the culprit is good, its parent passes/,
    );
  });

  it("resumes from the recorded steps: the next step is the one an uninterrupted bisect would take", () => {
    const full = drive(50, culpritAt(33));
    const half: BisectRange = { ...full.r, steps: full.r.steps.slice(0, 4) };
    const next = nextStep(half);
    expect(next.action === "test" && next.candidate.id).toBe(full.r.steps[4]!.id);
    expect(bounds(half).hi - bounds(half).lo).toBeLessThan(50);
    expect(progress(half)).toMatch(/^step 5 of about \d+, \d+ candidate\(s\) left \(c0/);
  });
});

describe("smoke --test: the test and its gate", () => {
  const map = repoData().kernelRequirements;
  const scenarios = loadScenarios(join(REPO_ROOT, "scenarios.yaml"));

  it("reads each scenario's cases from its script", () => {
    expect(scenarios.find((s) => s.name === "pidns-init")!.cases).toEqual(["no-setsid", "setsid"]);
    expect(scenarios.find((s) => s.name === "membarrier-enosys")!.cases).toEqual(["check"]);
    expect(scriptCases('run_case a-b f\n  case_begin "$X"\ncase_begin c\n')).toEqual(["a-b", "c"]);
  });

  it("knows checks, this version's features, scenarios and cases; an unknown id is exit 2 with the closest", () => {
    const ids = knownTestIds("4.1.1", map, scenarios);
    expect(ids).toEqual(
      expect.arrayContaining(["criu-check", "feature/uffd-noncoop", "pidns-init", "pidns-init/setsid"]),
    );
    // A feature 4.2 added is not 4.1.1's.
    expect(knownTestIds("4.2.1", map, scenarios)).toContain("feature/timer_cr_ids");
    expect(ids).not.toContain("feature/timer_cr_ids");
    expect(selectTest("pidns-init/setsid", "4.1.1", map, scenarios)).toEqual({
      id: "pidns-init/setsid",
      kind: "case",
      scenario: "pidns-init",
    });
    expect(selectTest("feature/uffd", "4.1.1", map, scenarios).kind).toBe("feature");
    let err: unknown;
    try {
      selectTest("criu-chek", "4.1.1", map, scenarios);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toMatch(/did you mean 'criu-check'/);
    expect((err as UserError).exitCode).toBe(2);
    expect(scenariosFor(selectTest("criu-check", "4.1.1", map, scenarios), scenarios)).toEqual([]);
    expect(
      scenariosFor(selectTest("pidns-init/setsid", "4.1.1", map, scenarios), scenarios).map((s) => s.name),
    ).toEqual(["pidns-init"]);
  });

  it("gives git bisect run's verdict from a recorded run's raw statuses", () => {
    const results = JSON.parse(
      readFileSync(join(REPO_ROOT, "test/fixtures/runs/6.12.107-criu-4.1.1-results.json"), "utf8"),
    );
    const v = (id: string) => testOutcome(selectTest(id, "4.1.1", map, scenarios), results);
    expect(v("criu-check")).toMatchObject({ verdict: "good", status: "PASS" });
    expect(v("criu-check-all")).toMatchObject({ verdict: "bad", status: "FAIL" });
    // A scenario: the worst of its cases; an observing case never decides.
    expect(v("frozen-cgroup").verdict).toBe("bad");
    expect(v("pidns-init/setsid")).toMatchObject({ verdict: "skip", status: "MISSING" });
    const kata = scenarios.find((s) => s.name === "kata-container")!;
    const sel = selectTest("kata-container", "4.1.1", map, scenarios);
    expect(
      testOutcome(
        sel,
        results,
        kata.observe.map((c) => `kata-container/${c}`),
      ).verdict,
    ).toBe(kata.observe.includes("sandbox-mounts") ? "skip" : "bad");
    const skipped = {
      ...results,
      tests: [{ ...results.tests[0], name: "pidns-init/setsid", status: "SKIP" }],
    };
    expect(testOutcome(selectTest("pidns-init/setsid", "4.1.1", map, scenarios), skipped).verdict).toBe(
      "skip",
    );
    const infra = { ...results, status: "ERROR", error: "boot timeout" };
    expect(testOutcome(selectTest("criu-check", "4.1.1", map, scenarios), infra).verdict).toBe("abort");
    expect(BISECT_EXIT).toEqual({ good: 0, bad: 1, skip: 125, abort: 128 });
  });
});
