/**
 * What a guest run is told (pure): run.conf (shell assignments), the requested kernel
 * symbols and the scenarios that apply to this CRIU version. Expectations come from the
 * catalog's facts, so the guest never guesses which behaviour is right for a version.
 */
import semver from "semver";
import { checkFeatures, hasFact, semverOf, type CriuCatalog } from "../criu/catalog.js";
import { UserError } from "../lib/errors.js";
import { loadYamlFile } from "../lib/yaml-file.js";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { GUEST_RUNNER_DIR } from "../lib/guest-contract.js";
import { didYouMean } from "../lib/suggest.js";

export interface Scenario {
  name: string;
  script: string;
  timeout: number;
  criu: string;
  about: string;
  /** Skipped when `criu check` fails (default); false for scenarios about that failure. */
  gated: boolean;
  /** Cases that record what happens (the evidence), reported but never deciding a verdict. */
  observe: string[];
}

const SCENARIO_KEYS = ["name", "script", "timeout", "criu", "about", "gated", "observe"];

/** Test names that are reported but never decide a run's verdict: the observing cases. */
export function observedTests(scenarios: Scenario[]): string[] {
  return scenarios.flatMap((s) => s.observe.map((c) => `${s.name}/${c}`));
}

export function loadScenarios(file: string): Scenario[] {
  const src = loadYamlFile(file);
  const list = (src.value as { scenarios?: unknown })?.scenarios;
  if (!Array.isArray(list)) throw new UserError(`${file}: no 'scenarios:' list`, "see scenarios.yaml in the repository for the format");
  return list.map((raw, i) => {
    const where = `${file}:${src.lineOf(["scenarios", i]) ?? "?"}`;
    const s = raw as Record<string, unknown>;
    for (const k of Object.keys(s)) if (!SCENARIO_KEYS.includes(k)) throw new UserError(`${where}: unknown scenario key '${k}'${didYouMean(k, SCENARIO_KEYS)}`, `keys: ${SCENARIO_KEYS.join(", ")}`);
    if (typeof s.name !== "string" || !/^[a-z0-9-]+$/.test(s.name)) throw new UserError(`${where}: scenario name must be lower-case words joined by '-'`, "e.g. name: simple-process");
    if (typeof s.script !== "string" || !existsSync(join(GUEST_RUNNER_DIR, "scenarios", s.script)))
      throw new UserError(`${where}: scenario ${s.name}: script guest/scenarios/${String(s.script)} does not exist`, "write the script, or fix the name");
    if (typeof s.timeout !== "number" || s.timeout <= 0) throw new UserError(`${where}: scenario ${s.name}: timeout must be a positive number of seconds`, "e.g. timeout: 60");
    const range = String(s.criu ?? "*");
    if (!semver.validRange(range)) throw new UserError(`${where}: scenario ${s.name}: '${range}' is not a semver range`, 'e.g. criu: ">=3.19.0"');
    if (s.gated !== undefined && typeof s.gated !== "boolean") throw new UserError(`${where}: scenario ${s.name}: gated must be true or false`, "gated: false runs it even when criu check fails");
    if (s.observe !== undefined && !(Array.isArray(s.observe) && s.observe.every((c) => typeof c === "string")))
      throw new UserError(`${where}: scenario ${s.name}: observe must be a list of case names`, "e.g. observe: [without-freeze-cgroup]");
    return { name: s.name, script: s.script, timeout: s.timeout, criu: range, about: String(s.about ?? ""), gated: s.gated !== false, observe: (s.observe as string[] | undefined) ?? [] };
  });
}

export interface RunInputOptions {
  criuVersion: string;
  patches: string[];
  catalog: CriuCatalog;
  requested: Map<string, string>;
  scenarios: Scenario[];
  testTimeoutSeconds: number;
}

/** A value for a shell assignment: single-quoted, so the guest's sh takes it literally. */
export function shQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function runInput(o: RunInputOptions): { files: Record<string, string>; scenarios: Scenario[]; expectations: Record<string, string> } {
  const v = semverOf(o.criuVersion);
  const membarrierFatal = hasFact(o.catalog, "membarrier_get_registrations_probe", o.criuVersion) && !o.patches.includes("membarrier-probe-nonfatal");
  const expectations = {
    MEMBARRIER_PROBE: membarrierFatal ? "fatal" : "tolerant",
    EXTERNAL_MASTERS_SYNTAX: hasFact(o.catalog, "external_mnt_master_syntax", o.criuVersion) ? "mnt" : "enable",
  };
  const conf = {
    CRIU_VERSION: o.criuVersion,
    CRIU_PATCHES: o.patches.join(" "),
    FEATURES: checkFeatures(o.catalog, o.criuVersion).join(" "),
    TEST_TIMEOUT: String(o.testTimeoutSeconds),
    ...expectations,
  };
  const applicable = o.scenarios.filter((s) => semver.satisfies(v, s.criu));
  const requested = [...o.requested].map(([sym, val]) => (val === "n" ? `# ${sym} is not set` : `${sym}=${val}`)).join("\n");
  return {
    files: {
      "run.conf": `${Object.entries(conf).map(([k, val]) => `${k}=${shQuote(val)}`).join("\n")}\n`,
      "requested.conf": requested ? `${requested}\n` : "",
      "scenarios.conf": applicable.map((s) => `${s.name}\t${s.timeout}\t${s.script}\t${s.gated ? "yes" : "no"}`).join("\n") + (applicable.length ? "\n" : ""),
    },
    scenarios: applicable,
    expectations,
  };
}
