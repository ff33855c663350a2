/**
 * One bisect step: the pipeline for one test (`smoke --test ID`), its raw verdict (good, bad,
 * cannot be tested, abort) and the evidence. What cannot be built (CRIU at a commit that does
 * not build, an image that cannot be made, a kernel variant that does not compile) cannot be
 * tested; a run that fails as infrastructure after its retries is no verdict at all.
 */
import { join } from "node:path";
import { drive, failedStageOf, type DriveOptions, type Outcomes, type StageName } from "../driver.js";
import { resolveAndPlanCriu } from "../criu/stage.js";
import semver from "semver";
import { semverOf } from "../data/criu-catalog.js";
import { repoData } from "../data/repo-data.js";
import { loadScenarios, observedTests, type Scenario } from "../data/scenarios.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import {
  selectTest,
  testOutcome,
  type StepVerdict,
  type TestOutcome,
  type TestSelection,
} from "../boot/test-selection.js";

export interface StepResult {
  verdict: StepVerdict;
  status: TestOutcome["status"] | "UNBUILT";
  reason: string;
  tests: TestOutcome["tests"];
  /** The stage that failed, when one did. */
  failed_stage: StageName | null;
  criu: { version: string; identity: string } | null;
  /** The run of record: its results.json is the evidence. */
  run: { key: string; dir: string; results: string; cached: boolean } | null;
  seconds: number;
}

export interface StepOptions {
  /** The CRIU plan when the caller resolved it already (smoke --test checks the test id with it). */
  plan?: ReturnType<typeof resolveAndPlanCriu>;
  /** CRIU built even where the doctor predicts a failure: the raw status decides. */
  force?: boolean;
  /** Boot again even when the cache holds a complete run (a culprit re-checked). */
  rerun?: boolean;
  kernel?: DriveOptions["kernel"];
  onOutcome?: DriveOptions["onOutcome"];
}

function message(err: unknown): string {
  if (err instanceof UserError) return err.message;
  return err instanceof Error ? err.message.split("\n").slice(0, 3).join(" ") : String(err);
}

function unbuilt(
  verdict: StepVerdict,
  stage: StageName | undefined,
  reason: string,
  seconds: number,
): StepResult {
  return {
    verdict,
    status: "UNBUILT",
    reason,
    tests: [],
    failed_stage: stage ?? null,
    criu: null,
    run: null,
    seconds,
  };
}

/** The scenarios of the config's scenarios file that apply to this CRIU version. */
export function scenariosOf(config: PipelineConfig, criuVersion: string): Scenario[] {
  const v = semverOf(criuVersion);
  return loadScenarios(config.boot.scenarios).filter((s) => semver.satisfies(v, s.criu));
}

/** Runs the pipeline for one test; never throws for a stage failure (it is the step's verdict). */
export async function runTestStep(
  config: PipelineConfig,
  test: string,
  o: StepOptions,
): Promise<{ step: StepResult; out?: Outcomes }> {
  const t0 = Date.now();
  const seconds = () => Math.round((Date.now() - t0) / 100) / 10;
  let out: Outcomes;
  let plan;
  try {
    plan = o.plan ?? resolveAndPlanCriu(config, { strict: true });
  } catch (err) {
    // The source at this point is no CRIU the pipeline can use (no Makefile.versions, ...).
    return { step: unbuilt("skip", "criu", `the CRIU source cannot be used: ${message(err)}`, seconds()) };
  }
  const scenarios = scenariosOf(config, plan.entry.version);
  let selection: TestSelection;
  try {
    selection = selectTest(test, plan.entry.version, repoData().kernelRequirements, scenarios);
  } catch (err) {
    // A CRIU of this commit without the test (a feature it does not know yet) cannot be tested.
    return { step: unbuilt("skip", undefined, message(err), seconds()) };
  }
  try {
    out = await drive(config, ["boot"], {
      kernel: o.kernel,
      criu: { force: o.force, plan },
      boot: { force: o.rerun, only: selection },
      onOutcome: o.onOutcome,
    });
  } catch (err) {
    const stage = failedStageOf(err);
    // Building nothing testable is a skip; a boot that fails after its retries, or anything
    // outside the stages (the host itself), stops the bisect: a broken host is not a verdict.
    const verdict: StepVerdict = stage && stage !== "boot" ? "skip" : "abort";
    const what = stage ? `the ${stage} stage failed` : "the pipeline failed";
    return { step: unbuilt(verdict, stage, `${what}: ${message(err)}`, seconds()) };
  }
  const run = out.boot!.value;
  const outcome = testOutcome(selection, run.results, observedTests(scenarios));
  const criu = out.criu!.value;
  return {
    out,
    step: {
      verdict: outcome.verdict,
      status: outcome.status,
      reason: outcome.reason,
      tests: outcome.tests,
      failed_stage: null,
      criu: { version: criu.metadata.version, identity: criu.metadata.identity },
      run: {
        key: run.results.run_key,
        dir: run.dir,
        results: join(run.dir, "results.json"),
        cached: run.cached,
      },
      seconds: seconds(),
    },
  };
}
