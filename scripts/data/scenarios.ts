/**
 * The dump/restore scenarios (scenarios.yaml, or the file boot.scenarios names): what each
 * runs in the guest, its deadline, the CRIU versions it applies to, and the cases that only
 * observe (reported, never deciding a verdict).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import semver from "semver";
import { z } from "zod";
import { UserError } from "../lib/errors.js";
import { GUEST_RUNNER_DIR } from "../lib/guest-contract.js";
import { loadYamlFile } from "../lib/yaml-file.js";
import { checkYaml } from "../lib/yaml-schema.js";

const ScenarioSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]+$/, "must be lower-case words joined by '-', e.g. simple-process"),
  /** A script under guest/scenarios/. */
  script: z.string(),
  /** Seconds. */
  timeout: z.number().positive(),
  criu: z
    .string()
    .refine((r) => semver.validRange(r) !== null, 'must be a semver range, e.g. ">=3.19.0"')
    .optional(),
  about: z.string().optional(),
  /** Skipped when `criu check` fails (default); false for scenarios about that failure. */
  gated: z.boolean().optional(),
  /** Cases that record what happens (the evidence), reported but never deciding a verdict. */
  observe: z.array(z.string()).optional(),
  /** Cases that can migrate: dumped in one boot, restored in another (guest/scenario-lib.sh run_case). */
  migrate: z.array(z.string().regex(/^[a-z0-9-]+$/, "a case name, e.g. dump-restore")).optional(),
  /**
   * What the scenario changes or reads for the whole guest (e.g. root-mounts, the root mount table):
   * scenarios run side by side, but two that hold the same name never at once.
   */
  holds: z.array(z.string().regex(/^[a-z0-9-]+$/, "a lower-case name, e.g. root-mounts")).optional(),
});

export const SCENARIOS_SCHEMA = z.strictObject({ scenarios: z.array(ScenarioSchema) });

export interface Scenario {
  name: string;
  script: string;
  timeout: number;
  criu: string;
  about: string;
  gated: boolean;
  observe: string[];
  migrate: string[];
  holds: string[];
  /** The cases its script records (SCENARIO/CASE), read from the script's run_case and case_begin lines. */
  cases: string[];
}

/**
 * The case names a scenario script records: the literal first word of each `run_case NAME` and
 * `case_begin NAME` line (scenario-lib.sh), in order. A case named by a variable is not listed.
 */
export function scriptCases(text: string): string[] {
  const names = [...text.matchAll(/^\s*(?:run_case|case_begin)\s+([a-z0-9][a-z0-9-]*)(?=\s|$)/gm)].map(
    (m) => m[1]!,
  );
  return [...new Set(names)];
}

/** The cases (scenario/case) that migrate, of the scenarios that apply. */
export function migratingCases(scenarios: Scenario[]): string[] {
  return scenarios.flatMap((s) => s.migrate.map((c) => `${s.name}/${c}`));
}

/** Test names that are reported but never decide a run's verdict: the observing cases. */
export function observedTests(scenarios: Scenario[]): string[] {
  return scenarios.flatMap((s) => s.observe.map((c) => `${s.name}/${c}`));
}

export function loadScenarios(file: string): Scenario[] {
  const src = loadYamlFile(file);
  const doc = checkYaml(SCENARIOS_SCHEMA, src, { what: "scenarios" });
  return doc.scenarios.map((s, i) => {
    const script = join(GUEST_RUNNER_DIR, "scenarios", s.script);
    if (!existsSync(script))
      throw new UserError(
        `${file}:${src.lineOf(["scenarios", i, "script"]) ?? "?"}: scenario ${s.name}: script guest/scenarios/${s.script} does not exist`,
        "write the script, or fix the name",
      );
    return {
      name: s.name,
      script: s.script,
      timeout: s.timeout,
      criu: s.criu ?? "*",
      about: s.about ?? "",
      gated: s.gated !== false,
      observe: s.observe ?? [],
      migrate: s.migrate ?? [],
      holds: s.holds ?? [],
      cases: scriptCases(readFileSync(script, "utf8")),
    };
  });
}
