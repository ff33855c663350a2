/**
 * The CRIU version catalog (criu-builds/versions.yaml): versions, where each comes from, and
 * facts as semver ranges. Pure but for loading, so resolution and facts are unit-tested.
 */
import semver from "semver";
import { UserError } from "../lib/errors.js";
import { CRIU_CATALOG_FILE } from "../lib/paths.js";
import { loadYamlFile } from "../lib/yaml-file.js";

export interface CriuVersionEntry {
  version: string;
  upstream?: { url: string; sha256?: string };
  debian?: { version: string; suite: string; orig_sha256: string };
  binary?: { version: string; suite: string };
  min_suite: string;
  debian_patches?: string[];
}

export interface CriuFact {
  criu: string;
  says: string;
}

export interface CriuCatalog {
  versions: Map<string, CriuVersionEntry>;
  /** Guest suites, oldest first. */
  suites: { name: string; glibc: string }[];
  facts: Record<string, CriuFact>;
  checkFeatures: { criu: string; names: string[] }[];
}

/** CRIU writes "3.19" and "4.0": semver wants three parts. */
export function semverOf(version: string): string {
  const v = semver.coerce(version);
  if (!v) throw new UserError(`'${version}' is not a CRIU version`, "write it like 4.1 or 4.1.1");
  return v.version;
}

export function parseCriuCatalog(value: unknown, file: string): CriuCatalog {
  const doc = value as {
    versions?: Record<string, Omit<CriuVersionEntry, "version">>;
    suites?: Record<string, { glibc: string }>;
    facts?: Record<string, CriuFact>;
    check_features?: { criu: string; names: string[] }[];
  };
  if (!doc?.versions || !doc.suites) throw new UserError(`${file}: needs 'versions:' and 'suites:'`, "see the comment at the top of the file");
  const versions = new Map<string, CriuVersionEntry>();
  for (const [version, entry] of Object.entries(doc.versions)) {
    if (!entry.min_suite || !doc.suites[entry.min_suite])
      throw new UserError(`${file}: CRIU ${version} has min_suite '${entry.min_suite}', not one of ${Object.keys(doc.suites).join(", ")}`, "fix the catalog");
    versions.set(version, { version, ...entry });
  }
  return {
    versions,
    suites: Object.entries(doc.suites).map(([name, s]) => ({ name, glibc: String(s.glibc) })),
    facts: doc.facts ?? {},
    checkFeatures: doc.check_features ?? [],
  };
}

export function loadCriuCatalog(file = CRIU_CATALOG_FILE): CriuCatalog {
  return parseCriuCatalog(loadYamlFile(file).value, file);
}

/** "4.1" -> newest 4.1.x in the catalog (4.1.1); "4.1.0" -> the 4.1 release; "latest" -> newest. */
export function resolveCriuVersion(requested: string, catalog: CriuCatalog): CriuVersionEntry {
  const known = [...catalog.versions.keys()].sort((a, b) => semver.rcompare(semverOf(a), semverOf(b)));
  const want = String(requested).trim();
  let match: string | undefined;
  if (want === "latest") match = known[0];
  else if (/^\d+\.\d+$/.test(want)) match = known.find((k) => semver.satisfies(semverOf(k), `~${want}.0`));
  else if (semver.valid(want)) match = known.find((k) => semverOf(k) === want);
  if (!match)
    throw new UserError(
      `unknown CRIU version '${requested}'`,
      `known versions: ${known.join(", ")} (4.1 picks the newest 4.1.x); add it to criu-builds/versions.yaml`,
    );
  return catalog.versions.get(match)!;
}

export function hasFact(catalog: CriuCatalog, fact: string, version: string): boolean {
  const f = catalog.facts[fact];
  if (!f) throw new Error(`unknown CRIU fact '${fact}'`);
  return semver.satisfies(semverOf(version), f.criu);
}

/** The `criu check --feature` names this version knows. */
export function checkFeatures(catalog: CriuCatalog, version: string): string[] {
  const v = semverOf(version);
  return catalog.checkFeatures.filter((g) => semver.satisfies(v, g.criu)).flatMap((g) => g.names);
}

/** Suites a binary built for `suite` runs in: that suite and newer ones. */
export function suitesFrom(catalog: CriuCatalog, suite: string): string[] {
  const i = catalog.suites.findIndex((s) => s.name === suite);
  if (i < 0) throw new UserError(`unknown guest suite '${suite}'`, `known suites: ${catalog.suites.map((s) => s.name).join(", ")}`);
  return catalog.suites.slice(i).map((s) => s.name);
}
