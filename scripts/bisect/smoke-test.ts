/**
 * `cr-guest smoke --test ID [--bisect-exit]`: one test and its gate, in the pipeline smoke
 * runs. With --bisect-exit the exit code is `git bisect run`'s, on the test's raw status, so
 * `git bisect run cr-guest smoke --local-source . --test criu-check --bisect-exit` works in a
 * CRIU checkout.
 */
import { configOf, type CommandContext } from "../commands.js";
import type { PipelineConfig } from "../lib/config.js";
import { resolveAndPlanCriu } from "../criu/stage.js";
import { repoData } from "../data/repo-data.js";
import { UserError } from "../lib/errors.js";
import { BISECT_EXIT, knownTestIds, selectTest, type TestSelection } from "../boot/test-selection.js";
import { runTestStep, scenariosOf, type StepResult } from "./step.js";

/** The selection for `id` at this CRIU version (exit 2 with "did you mean" when it has none). */
export function testSelectionFor(config: PipelineConfig, id: string, criuVersion: string): TestSelection {
  return selectTest(id, criuVersion, repoData().kernelRequirements, scenariosOf(config, criuVersion));
}

/**
 * The selection at this version; with --bisect-exit, undefined when only another catalog
 * version has the test (this commit cannot be tested). A name no version has is exit 2.
 */
function knownSomewhere(
  config: PipelineConfig,
  id: string,
  version: string,
  bisectExit: boolean,
): TestSelection | undefined {
  try {
    return testSelectionFor(config, id, version);
  } catch (err) {
    if (!bisectExit) throw err;
    const elsewhere = [...repoData().criu.versions.keys()].some((v) =>
      knownTestIds(v, repoData().kernelRequirements, scenariosOf(config, v)).includes(id),
    );
    if (!elsewhere) throw err;
    return undefined;
  }
}

/** The step as lines: verdict, the records with CRIU's Error lines, the evidence. */
export function formatStep(id: string, step: StepResult): string[] {
  const lines = [`${id}: ${step.status} -> ${step.verdict} (${step.reason})`];
  for (const t of step.tests) {
    if (step.tests.length > 1 || t.name !== id) lines.push(`  ${t.status.padEnd(5)} ${t.name}  ${t.message}`);
    if (t.status !== "PASS") for (const e of t.error_lines.slice(0, 5)) lines.push(`    ${e}`);
    if (t.cause) lines.push(`    diagnosis: ${t.cause.text}`);
  }
  if (step.run) lines.push(`evidence: ${step.run.results}${step.run.cached ? " (cached run)" : ""}`);
  return lines;
}

/** smoke with --test (or --bisect-exit); the rest of smoke is commands.ts's. */
export async function smokeTestCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  checkSmokeTestFlags(v);
  const config = configOf(ctx);
  const id = v.test!;
  const bisectExit = Boolean(v["bisect-exit"]);
  // Bad input (an unknown version, a source that is not CRIU, an unknown test) exits 2 before
  // anything is built, --bisect-exit or not: it is the caller's mistake, not the commit's.
  const plan = resolveAndPlanCriu(config, { strict: true });
  const version = plan.entry.version;
  const selection = knownSomewhere(config, id, version, bisectExit);
  if (!selection) {
    // A test a later CRIU has (a feature this commit does not know yet): this commit cannot
    // be tested, which is not the same as failing it.
    ctx.say(`${id}: CRIU ${version} at this point has no such test: cannot be tested (exit 125)`);
    ctx.emit({
      test: id,
      verdict: "skip",
      exit_code: BISECT_EXIT.skip,
      reason: `CRIU ${version} has no test ${id}`,
    });
    return BISECT_EXIT.skip;
  }
  if (v["dry-run"]) {
    const { planStages, formatDryRun } = await import("../plan-only.js");
    const force = bisectExit || v.force;
    const dry = await planStages("smoke", config, ["boot"], {
      extraFragments: v.fragment ?? [],
      force: v.force,
      criuForce: force,
      only: selection,
    });
    ctx.say(formatDryRun(dry));
    ctx.emit(dry);
    return 0;
  }
  ctx.say(`smoke --test ${id}: CRIU ${version}, the test and its gate only`);
  const { step } = await runTestStep(config, id, {
    plan,
    // The raw status decides a bisect step: CRIU is built whatever the doctor predicts.
    force: bisectExit || Boolean(v.force),
    rerun: Boolean(v.force),
    kernel: { extraFragments: v.fragment ?? [] },
  });
  for (const l of formatStep(id, step)) ctx.say(l);
  const code = bisectExit
    ? BISECT_EXIT[step.verdict]
    : step.status === "UNBUILT"
      ? step.verdict === "abort"
        ? 4
        : 1
      : step.verdict === "abort"
        ? 4
        : v.strict && step.verdict === "bad"
          ? 1
          : 0;
  if (bisectExit) ctx.say(`exit ${code} (git bisect run: 0 good, 1 bad, 125 skip, 128 stops the bisect)`);
  ctx.emit({ test: id, kind: selection.kind, exit_code: code, ...step });
  return code;
}

/** --bisect-exit alone means nothing: it needs the test whose status it reports. */
export function checkSmokeTestFlags(values: CommandContext["values"]): void {
  if (values["bisect-exit"] && !values.test)
    throw new UserError("smoke --bisect-exit needs --test ID", "add --test criu-check (or another test id)");
}
