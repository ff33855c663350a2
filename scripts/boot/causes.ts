/**
 * The diagnosis of a guest run's failures: each FAIL or ERROR test held against the kernel
 * requirements map with the run's own kernel .config and version and its CRIU build
 * (data/requirement-check.ts causeOf). It is computed whenever a run is read, cached or fresh,
 * so an older run gets its causes without booting again; nothing here enters a cache key.
 * Pure apart from diagnoseRun, which reads the kernel's .config.
 */
import { existsSync } from "node:fs";
import semver from "semver";
import type { z } from "zod";
import { readDotConfig, type Fragment } from "../data/fragments.js";
import type { KernelRequirements } from "../data/kernel-requirements.js";
import { repoData } from "../data/repo-data.js";
import { assess, causeOf, criuBuildConditions, judgeConfig } from "../data/requirement-check.js";
import type { RunResultsSchema, TestCauseSchema } from "../lib/output-schemas.js";

export type TestCause = z.infer<typeof TestCauseSchema>;
type RunResults = z.infer<typeof RunResultsSchema>;

/** The CRIU of a run as results.json and cell.json name it. */
export interface CriuIdentity {
  version: string;
  provider: string;
  link: string;
  patches: string[];
}

/** What a diagnosis holds the failures against. */
export interface DiagnosisInputs {
  /** The kernel's final .config (CONFIG_X -> value) and version. */
  config: Map<string, string>;
  kernelVersion: string;
  criu: CriuIdentity;
  map: KernelRequirements;
  /** Where a fix goes: the fragments whose lines the text names, the run's own set first. */
  fragments: Fragment[];
}

/** A test as runs and cells record it (only what a diagnosis reads). */
type Diagnosable = { name: string; status: string; cause?: TestCause };

/** The fragments a fix text points into: those of the run's own fragment set first, then the rest. */
export function fixFragments(
  setNames: string[],
  all: Map<string, Fragment> = repoData().fragments,
): Fragment[] {
  const own = setNames.map((n) => all.get(n)).filter((f): f is Fragment => Boolean(f));
  return [...own, ...[...all.values()].filter((f) => !own.includes(f))];
}

/**
 * Pure: the tests, each FAIL or ERROR the map covers with its `cause` (an earlier one
 * replaced, as the map may have learnt since); every other test exactly as it was.
 */
export function withCauses<T extends Diagnosable>(tests: T[], d: DiagnosisInputs): T[] {
  // A CRIU version the map cannot place (not a version at all) gets no diagnosis.
  if (!semver.coerce(d.criu.version)) return tests;
  const kernel = { config: d.config, version: d.kernelVersion };
  const criu = { version: d.criu.version, build: criuBuildConditions(d.criu), patches: d.criu.patches };
  const ctx = {
    verdict: judgeConfig(d.map, kernel, criu),
    assessments: assess(d.map, kernel, criu),
    fragments: d.fragments,
  };
  return tests.map((t) => {
    const found = t.status === "FAIL" || t.status === "ERROR" ? causeOf(t.name, ctx) : undefined;
    if (!found && t.cause === undefined) return t;
    const { cause: _earlier, ...rest } = t;
    if (!found) return rest as T;
    const cause: TestCause = {
      kind: found.kind,
      entries: found.entries,
      symbols: found.symbols,
      text: found.text,
    };
    return { ...rest, cause } as T;
  });
}

/** The kernel a stored run or cell booted, by its identity: its final .config when the cache has it. */
export function kernelConfigOf(file: string): Map<string, string> | undefined {
  return existsSync(file) ? readDotConfig(file).values : undefined;
}

/**
 * A run's results with the causes of its failures, from its kernel's final .config
 * (`<kernel dir>/config`); unchanged when that file is gone or the run has no tests.
 */
export function diagnoseRun(
  results: RunResults,
  kernelConfigFile: string,
  fragments: Fragment[],
): RunResults {
  if (!results.tests.some((t) => t.status === "FAIL" || t.status === "ERROR")) return results;
  const config = kernelConfigOf(kernelConfigFile);
  if (!config) return results;
  const tests = withCauses(results.tests, {
    config,
    kernelVersion: results.identities.kernel.version,
    criu: results.identities.criu,
    map: repoData().kernelRequirements,
    fragments,
  });
  return { ...results, tests };
}
