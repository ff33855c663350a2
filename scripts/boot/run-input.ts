/**
 * What a guest run is told (pure): run.conf (shell assignments), the requested kernel
 * symbols and the scenarios that apply to this CRIU version. Expectations come from the
 * catalog's facts, so the guest never guesses which behaviour is right for a version.
 */
import semver from "semver";
import { hasFact, semverOf, type CriuCatalog } from "../data/criu-catalog.js";
import { featureNames, type KernelRequirements } from "../data/kernel-requirements.js";
import type { Scenario } from "../data/scenarios.js";
import { scenariosFor, type TestSelection } from "./test-selection.js";

export interface RunInputOptions {
  criuVersion: string;
  patches: string[];
  catalog: CriuCatalog;
  /** The kernel requirements map: the `criu check --feature` names of this CRIU version. */
  requirements: KernelRequirements;
  requested: Map<string, string>;
  scenarios: Scenario[];
  testTimeoutSeconds: number;
  /** Scenarios run at once in the guest; 0: as many as it has vCPUs. */
  scenarioJobs?: number;
  /** More assignments for run.conf (a migration's phase and binaries). */
  conf?: Record<string, string>;
  /** One test and its gate (smoke --test): ONLY in run.conf, and only its scenario. */
  only?: TestSelection;
}

/** A value for a shell assignment: single-quoted, so the guest's sh takes it literally. */
export function shQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function runInput(o: RunInputOptions): {
  files: Record<string, string>;
  scenarios: Scenario[];
  expectations: Record<string, string>;
} {
  const v = semverOf(o.criuVersion);
  const membarrierFatal =
    hasFact(o.catalog, "membarrier_get_registrations_probe", o.criuVersion) &&
    !o.patches.includes("membarrier-probe-nonfatal");
  const expectations = {
    MEMBARRIER_PROBE: membarrierFatal ? "fatal" : "tolerant",
    EXTERNAL_MASTERS_SYNTAX: hasFact(o.catalog, "external_mnt_master_syntax", o.criuVersion)
      ? "mnt"
      : "enable",
  };
  const conf = {
    CRIU_VERSION: o.criuVersion,
    CRIU_PATCHES: o.patches.join(" "),
    FEATURES: featureNames(o.requirements, o.criuVersion).join(" "),
    TEST_TIMEOUT: String(o.testTimeoutSeconds),
    ...(o.scenarioJobs ? { SCENARIO_JOBS: String(o.scenarioJobs) } : {}),
    ...expectations,
    ...o.conf,
    ...(o.only ? { ONLY: o.only.id } : {}),
  };
  const applicable = scenariosFor(
    o.only,
    o.scenarios.filter((s) => semver.satisfies(v, s.criu)),
  );
  const requested = [...o.requested]
    .map(([sym, val]) => (val === "n" ? `# ${sym} is not set` : `${sym}=${val}`))
    .join("\n");
  return {
    files: {
      "run.conf": `${Object.entries(conf)
        .map(([k, val]) => `${k}=${shQuote(val)}`)
        .join("\n")}\n`,
      "requested.conf": requested ? `${requested}\n` : "",
      "scenarios.conf":
        applicable
          .map(
            (s) =>
              `${s.name}\t${s.timeout}\t${s.script}\t${s.gated ? "yes" : "no"}\t${s.holds.join(" ") || "-"}`,
          )
          .join("\n") + (applicable.length ? "\n" : ""),
    },
    scenarios: applicable,
    expectations,
  };
}
