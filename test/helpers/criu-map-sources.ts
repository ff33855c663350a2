/**
 * The kernel requirements map held against one CRIU release tree, as the unit tests read the
 * mirror's archives (3.17.1 to 4.2) and the migration test reads 4.2.1 (Debian's orig tarball,
 * which the CRIU stage downloads): the --feature names of cr-check.c, the checks of cr_check,
 * and kerndat's start-up probes, fatal exactly where the source fails the start.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import {
  featureNames,
  requirementsFor,
  type KernelRequirements,
} from "../../scripts/data/kernel-requirements.js";

/** The body of a C function: from its definition line to the first "}" at the start of a line. */
export function body(text: string, fn: string): string {
  const m = new RegExp(`^[^\\s#][^;\\n]*\\b${fn}\\([^;{]*\\)\\s*\\{\\n([\\s\\S]*?)\\n\\}`, "m").exec(text);
  return m?.[1] ?? "";
}

const names = (entries: { name: string }[]) => [...new Set(entries.map((e) => e.name))].sort();

export function expectFeaturesMatch(map: KernelRequirements, version: string, tree: string): void {
  const src = readFileSync(join(tree, "criu/cr-check.c"), "utf8");
  const table = /feature_list\[\] = \{([\s\S]*?)\n\};/.exec(src)?.[1] ?? "";
  const listed = [...table.matchAll(/\{\s*"([^"]+)"\s*,/g)].map((m) => m[1]);
  expect(listed.length).toBeGreaterThan(30);
  expect(featureNames(map, version)).toEqual(listed);
}

export function expectChecksMatch(map: KernelRequirements, version: string, tree: string): void {
  const src = readFileSync(join(tree, "criu/cr-check.c"), "utf8");
  const crCheck = body(src, "cr_check");
  const plain = [...crCheck.matchAll(/CHECK_CAT1\((\w+)\(/g)].map((m) => m[1]);
  if (crCheck.includes("is_root_user()")) plain.push("cr_check");
  const all = [...crCheck.matchAll(/ret \|= (\w+)\(/g)].map((m) => m[1]);
  const checks = requirementsFor(map, version).filter((r) => r.kind === "check");
  expect(names(checks.filter((r) => r.mode === "plain"))).toEqual([...new Set(plain)].sort());
  expect(names(checks.filter((r) => r.mode === "all"))).toEqual([...new Set(all)].sort());
}

const NOT_PROBES = new Set([
  "kerndat_try_load_cache",
  "kerndat_try_load_new",
  "root_only_init",
  "kerndat_save_cache",
]);

export function expectProbesMatch(map: KernelRequirements, version: string, tree: string): void {
  const src = readFileSync(join(tree, "criu/kerndat.c"), "utf8");
  const calls = [body(src, "kerndat_init"), body(src, "root_only_init")].join("\n");
  const called = [...calls.matchAll(/\b(\w+)\(\)/g)].map((m) => m[1]).filter((f) => !NOT_PROBES.has(f));
  // `if ([!ret && ]... probe() ...) { ... ret = -1; }`: the probe's error fails the start.
  const fatal = new Set(
    [...calls.matchAll(/if \(([^{;]*?)\)\s*\{([^}]*)\}/g)]
      .filter((m) => /ret = -1/.test(m[2]))
      .map((m) => /\b(\w+)\(\)/.exec(m[1])?.[1])
      .filter((f): f is string => !!f && !NOT_PROBES.has(f)),
  );
  const crCheck = readFileSync(join(tree, "criu/cr-check.c"), "utf8");
  if (/^int check_caps\(void\)/m.test(crCheck)) {
    called.push("check_caps");
    fatal.add("check_caps");
  }
  const probes = requirementsFor(map, version).filter((r) => r.kind === "probe");
  expect(names(probes)).toEqual([...new Set(called)].sort());
  for (const p of probes)
    expect(p.effect, `${p.name} in CRIU ${version}`).toBe(
      fatal.has(p.name) ? "every CRIU command fails at start" : "none: the result only sets a kerndat flag",
    );
}
