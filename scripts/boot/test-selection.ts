/**
 * One test as a bisect step (pure): `smoke --test ID` names a guest test (a check, a feature, a
 * scenario case) or a scenario (all its cases); the guest runs it and the gate it needs
 * (`criu check`). Its raw status, never the doctor's prediction, is the step's verdict, in the
 * exit codes `git bisect run` expects.
 */
import { featureNames, type KernelRequirements } from "../data/kernel-requirements.js";
import type { Scenario } from "../data/scenarios.js";
import { UserError } from "../lib/errors.js";
import { didYouMean } from "../lib/suggest.js";
import type { z } from "zod";
import type { RunResultsSchema } from "../lib/output-schemas.js";
import type { TestRecord } from "./results.js";

/** The tests guest/run-tests runs by name, apart from features and scenarios. */
export const GUEST_CHECKS = [
  "criu-check",
  "criu-check-all",
  "ptrace-strace",
  "ptrace-attach",
  "kernel-config",
] as const;

export interface TestSelection {
  /** What the user named: a test id or a scenario name. */
  id: string;
  kind: "check" | "feature" | "scenario" | "case";
  /** The scenario it runs, for a scenario or a case. */
  scenario?: string;
}

/** Every id `--test` accepts for this CRIU version: checks, features, scenarios and their cases. */
export function knownTestIds(
  criuVersion: string,
  requirements: KernelRequirements,
  scenarios: Scenario[],
): string[] {
  return [
    ...GUEST_CHECKS,
    ...featureNames(requirements, criuVersion).map((f) => `feature/${f}`),
    ...scenarios.flatMap((s) => [s.name, ...s.cases.map((c) => `${s.name}/${c}`)]),
  ];
}

/**
 * The test `id` names for this CRIU version (`scenarios`: those that apply to it), or exit 2
 * with the closest id.
 */
export function selectTest(
  id: string,
  criuVersion: string,
  requirements: KernelRequirements,
  scenarios: Scenario[],
): TestSelection {
  const known = knownTestIds(criuVersion, requirements, scenarios);
  if (!known.includes(id))
    throw new UserError(
      `--test ${id}: CRIU ${criuVersion}'s suite has no test or scenario of that name${didYouMean(id, known)}`,
      "name a check (criu-check, criu-check-all, ptrace-strace, ptrace-attach, kernel-config), feature/NAME, a scenario or SCENARIO/CASE (`cr-guest explain NAME` lists the features)",
    );
  if ((GUEST_CHECKS as readonly string[]).includes(id)) return { id, kind: "check" };
  if (id.startsWith("feature/")) return { id, kind: "feature" };
  const [scenario, c] = id.split("/");
  return { id, kind: c === undefined ? "scenario" : "case", scenario };
}

/** The scenarios a run for this selection carries: its own, or none. */
export function scenariosFor(selection: TestSelection | undefined, scenarios: Scenario[]): Scenario[] {
  if (!selection) return scenarios;
  return scenarios.filter((s) => s.name === selection.scenario);
}

type RunResults = z.infer<typeof RunResultsSchema>;

export type StepVerdict = "good" | "bad" | "skip" | "abort";

/** `git bisect run`'s codes: 0 good, 1 bad, 125 cannot be tested, 128 stops the bisect. */
export const BISECT_EXIT: Record<StepVerdict, number> = { good: 0, bad: 1, skip: 125, abort: 128 };

export interface TestOutcome {
  verdict: StepVerdict;
  /** The selected test's raw status (a scenario: the worst of its deciding cases). */
  status: "PASS" | "FAIL" | "SKIP" | "ERROR" | "MISSING";
  /** The records it is made of. */
  tests: TestRecord[];
  /** One line: why this verdict. */
  reason: string;
}

/**
 * The verdict of a complete run on the selected test: PASS good, FAIL bad; SKIP (its gate
 * failed for another reason), ERROR or no record at all cannot be tested. A run in ERROR
 * (QEMU, boot, panic, after the retries) is no verdict: abort. Observing cases never decide.
 */
export function testOutcome(
  selection: TestSelection,
  results: RunResults,
  observed: string[] = [],
): TestOutcome {
  if (results.status !== "COMPLETE")
    return {
      verdict: "abort",
      status: "MISSING",
      tests: [],
      reason: `the run failed as infrastructure (${results.error ?? "no results"}): no verdict`,
    };
  const tests =
    selection.kind === "scenario"
      ? results.tests.filter((t) => t.name.startsWith(`${selection.id}/`) && !observed.includes(t.name))
      : results.tests.filter((t) => t.name === selection.id);
  // A scenario whose script died before its cases records the scenario itself.
  const own = selection.kind === "scenario" ? results.tests.filter((t) => t.name === selection.id) : [];
  const all = [...own, ...tests];
  if (!all.length)
    return {
      verdict: "skip",
      status: "MISSING",
      tests: [],
      reason: `the run has no result for ${selection.id}`,
    };
  const failed = all.find((t) => t.status === "FAIL");
  if (failed)
    return { verdict: "bad", status: "FAIL", tests: all, reason: `${failed.name} FAIL: ${failed.message}` };
  const odd = all.find((t) => t.status !== "PASS");
  if (odd)
    return {
      verdict: "skip",
      status: odd.status,
      tests: all,
      reason: `${odd.name} ${odd.status}: ${odd.message || "no message"} (cannot be tested)`,
    };
  return {
    verdict: "good",
    status: "PASS",
    tests: all,
    reason: all.length === 1 ? `${all[0]!.name} PASS` : `${all.length} cases PASS`,
  };
}
