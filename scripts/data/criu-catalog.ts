/**
 * The CRIU version catalog (criu-builds/versions.yaml): versions, where each comes from, and
 * facts as semver ranges. Pure but for loading, so resolution and facts are unit-tested.
 */
import semver from "semver";
import { CRIU_PROVIDERS, type CriuProvider } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { CRIU_CATALOG_FILE } from "../lib/paths.js";
import { z } from "zod";
import { loadYamlFile, type LocatedYaml } from "../lib/yaml-file.js";
import { checkYaml } from "../lib/yaml-schema.js";

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "must be a sha256 (64 hex digits)");
const semverRange = z
  .string()
  .refine((r) => semver.validRange(r) !== null, 'must be a semver range, e.g. ">=3.19.0"');

const VersionEntrySchema = z.strictObject({
  /** The pin of the GitHub tag archive v<version>.tar.gz. */
  upstream: z.strictObject({ sha256: sha256Hex, size: z.number().optional() }).optional(),
  debian: z
    .strictObject({
      version: z.string(),
      suite: z.string(),
      orig_sha256: sha256Hex,
      debian_tar_sha256: sha256Hex.optional(),
    })
    .optional(),
  binary: z.strictObject({ version: z.string(), suite: z.string() }).optional(),
  min_suite: z.string(),
  debian_patches: z.array(z.string()).optional(),
  /** This version's own provider order (else the catalog's provider_order). */
  providers: z.array(z.enum(CRIU_PROVIDERS)).optional(),
});

/** A fact holds for the CRIU versions in `criu` and, when it has one, the guest kernels in `kernel`. */
const FactSchema = z.strictObject({ criu: semverRange, kernel: semverRange.optional(), says: z.string() });

/** criu-builds/versions.yaml. */
export const CRIU_CATALOG_SCHEMA = z.strictObject({
  versions: z.record(z.string(), VersionEntrySchema),
  suites: z.record(z.string(), z.strictObject({ glibc: z.string() })),
  facts: z.record(z.string(), FactSchema).optional(),
  provider_order: z.array(z.enum(CRIU_PROVIDERS)).optional(),
});

export interface CriuVersionEntry extends z.infer<typeof VersionEntrySchema> {
  version: string;
  /** For a source whose version the catalog does not list: the catalog version whose facts apply. */
  facts_from?: string;
}

export type CriuFact = z.infer<typeof FactSchema>;

export interface CriuCatalog {
  versions: Map<string, CriuVersionEntry>;
  /** Guest suites, oldest first. */
  suites: { name: string; glibc: string }[];
  facts: Record<string, CriuFact>;
  /** Providers in the order tried when the config names none. */
  providerOrder: CriuProvider[];
}

/** CRIU writes "3.19" and "4.0": semver wants three parts. */
export function semverOf(version: string): string {
  const v = semver.coerce(version);
  if (!v) throw new UserError(`'${version}' is not a CRIU version`, "write it like 4.1 or 4.1.1");
  return v.version;
}

export function parseCriuCatalog(src: LocatedYaml): CriuCatalog {
  const doc = checkYaml(CRIU_CATALOG_SCHEMA, src, { what: "CRIU catalog" });
  const versions = new Map<string, CriuVersionEntry>();
  for (const [version, entry] of Object.entries(doc.versions)) {
    if (!doc.suites[entry.min_suite])
      throw new UserError(
        `${src.file}:${src.lineOf(["versions", version, "min_suite"]) ?? "?"}: CRIU ${version} has min_suite '${entry.min_suite}', not one of ${Object.keys(doc.suites).join(", ")}`,
        "fix the catalog",
      );
    versions.set(version, { version, ...entry });
  }
  return {
    versions,
    suites: Object.entries(doc.suites).map(([name, s]) => ({ name, glibc: s.glibc })),
    facts: doc.facts ?? {},
    providerOrder: doc.provider_order ?? [...CRIU_PROVIDERS],
  };
}

export function loadCriuCatalog(file = CRIU_CATALOG_FILE): CriuCatalog {
  return parseCriuCatalog(loadYamlFile(file));
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

/**
 * The catalog entry for a version a source tree declares (git, local source). A listed version
 * is itself; another one takes the facts of the newest catalog version not above it, and
 * nothing that names a release artifact (pins, Debian packages, Debian patches).
 */
export function entryForSourceVersion(version: string, catalog: CriuCatalog): CriuVersionEntry {
  const v = semverOf(version);
  const listed = [...catalog.versions.values()].find((e) => semverOf(e.version) === v);
  if (listed) return listed;
  const below = [...catalog.versions.values()]
    .filter((e) => semver.lte(semverOf(e.version), v))
    .sort((a, b) => semver.rcompare(semverOf(a.version), semverOf(b.version)))[0];
  if (!below)
    throw new UserError(
      `CRIU ${version} is older than every catalog version`,
      `the catalog starts at ${[...catalog.versions.keys()].sort((a, b) => semver.compare(semverOf(a), semverOf(b)))[0]}`,
    );
  return { version, min_suite: below.min_suite, facts_from: below.version };
}

/**
 * Can a machine with network access get this version by its pins alone (the GitHub tag
 * archive, Debian's source or binary package)? Decided from the catalog, never from what the
 * asking machine reaches, so a generated CI file is the same everywhere.
 */
export function servableFromPins(requested: string, catalog: CriuCatalog): boolean {
  let e: CriuVersionEntry;
  try {
    e = resolveCriuVersion(requested, catalog);
  } catch {
    return false;
  }
  return Boolean(e.upstream || e.debian || e.binary);
}

/** The providers to try for this version: the config's when it names any, else the catalog's. */
export function providerOrderFor(
  entry: CriuVersionEntry,
  catalog: CriuCatalog,
  configured: CriuProvider[],
): CriuProvider[] {
  if (configured.length) return configured;
  const facts = entry.facts_from ? catalog.versions.get(entry.facts_from) : entry;
  return entry.providers ?? (facts?.providers && !entry.facts_from ? facts.providers : catalog.providerOrder);
}

/** ">=3.19.0" -> ">= 3.19", "<3.18.0" -> "< 3.18": a semver range as a reader writes it. */
export function readableRange(range: string): string {
  return range.replace(
    /([<>]=?|=)\s*(\d+)\.(\d+)\.(\d+)/g,
    (_m, op, a, b, c) => `${op} ${a}.${b}${c === "0" ? "" : `.${c}`}`,
  );
}

/** "6.12.57+deb13-cloud-amd64" -> "6.12.57": a kernel release as semver. */
export function kernelSemver(release: string): string {
  const v = semver.coerce(release);
  if (!v) throw new UserError(`'${release}' is not a kernel version`, "write it like 6.12 or 6.12.107");
  return v.version;
}

/**
 * Does the fact hold for this CRIU version (and, for a fact with a kernel range, this guest
 * kernel)? A kernel fact with the kernel unknown does not hold: nothing is claimed unseen.
 */
export function hasFact(
  catalog: CriuCatalog,
  fact: string,
  version: string,
  kernelVersion?: string,
): boolean {
  const f = catalog.facts[fact];
  if (!f) throw new Error(`unknown CRIU fact '${fact}'`);
  if (!semver.satisfies(semverOf(version), f.criu)) return false;
  if (!f.kernel) return true;
  return kernelVersion !== undefined && semver.satisfies(kernelSemver(kernelVersion), f.kernel);
}

/**
 * The oldest catalog version from which on every catalog version has the fact (`holds`), or
 * lacks it (`holds: false`, for a fact that is a bug fixed later): where a text says "use CRIU
 * >= X", X comes from here, never from a hand-written range. Only the fact's CRIU range counts.
 */
export function firstCriuWith(catalog: CriuCatalog, fact: string, holds = true): string {
  const f = catalog.facts[fact];
  if (!f) throw new Error(`unknown CRIU fact '${fact}'`);
  const ascending = [...catalog.versions.keys()].sort((a, b) => semver.compare(semverOf(a), semverOf(b)));
  const matches = ascending.map((v) => semver.satisfies(semverOf(v), f.criu) === holds);
  if (!matches.at(-1))
    throw new Error(
      `the newest catalog CRIU ${holds ? "lacks" : "has"} fact '${fact}': no version to point to`,
    );
  const lastMiss = matches.lastIndexOf(false);
  return ascending[lastMiss + 1];
}

/** "CRIU >= 3.18": the versions from firstCriuWith on. */
export function criuFrom(catalog: CriuCatalog, fact: string, holds = true): string {
  return `CRIU >= ${firstCriuWith(catalog, fact, holds)}`;
}

/** Suites a binary built for `suite` runs in: that suite and newer ones. */
export function suitesFrom(catalog: Pick<CriuCatalog, "suites">, suite: string): string[] {
  const i = catalog.suites.findIndex((s) => s.name === suite);
  if (i < 0)
    throw new UserError(
      `unknown guest suite '${suite}'`,
      `known suites: ${catalog.suites.map((s) => s.name).join(", ")}`,
    );
  return catalog.suites.slice(i).map((s) => s.name);
}

/** What a CRIU binary is, for where it may run: Debian's binary package is always dynamic. */
export type CriuBinaryKind = "static" | "dynamic" | "debian-binary";

export interface GuestSuiteSettings {
  /** criu.guest_suite: "" leaves the suite to the rule below. */
  guest_suite: string;
  /** criu.static_guest_suite: a static build's guest suite when guest_suite is empty. */
  static_guest_suite: string;
  /** criu.static_build_suite: the suite a static build is made in (its glibc). */
  static_build_suite: string;
}

/**
 * The guest userland a CRIU runs in. criu.guest_suite when set. Otherwise a static build runs
 * in criu.static_guest_suite: it needs only the glibc of the suite it was built in, so the
 * version's min_suite (which binds Debian's dynamic builds) does not apply. A dynamic source
 * build is made in its guest suite and defaults to the version's min_suite; Debian's binary
 * package needs its own suite's libraries, so it defaults to min_suite or the package's suite,
 * whichever is later (the doctor fails it in an older suite). A static build asked to run in
 * a suite older than the one it is built in is an error: its glibc would be too old.
 */
export function guestSuiteFor(
  entry: Pick<CriuVersionEntry, "version" | "min_suite" | "binary">,
  catalog: Pick<CriuCatalog, "suites">,
  kind: CriuBinaryKind,
  settings: GuestSuiteSettings,
): string {
  const names = catalog.suites.map((s) => s.name);
  const known = (suite: string, key: string) => {
    if (!names.includes(suite))
      throw new UserError(`unknown guest suite '${suite}' (${key})`, `known suites: ${names.join(", ")}`);
    return suite;
  };
  if (settings.guest_suite) known(settings.guest_suite, "criu.guest_suite");
  if (kind === "static") {
    const key = settings.guest_suite ? "criu.guest_suite" : "criu.static_guest_suite";
    const suite = known(settings.guest_suite || settings.static_guest_suite, key);
    const build = known(settings.static_build_suite, "criu.static_build_suite");
    const runsIn = suitesFrom(catalog, build);
    if (!runsIn.includes(suite)) {
      const glibc = (name: string) => catalog.suites.find((s) => s.name === name)!.glibc;
      throw new UserError(
        `a static CRIU ${entry.version} built in ${build} (glibc ${glibc(build)}) does not run in ${suite} (glibc ${glibc(suite)}), the guest suite ${key} asks for`,
        `set ${key} to ${runsIn.join(" or ")} (--guest-suite), or build in an older suite (criu.static_build_suite)`,
      );
    }
    return suite;
  }
  if (settings.guest_suite) return settings.guest_suite;
  if (kind === "debian-binary" && entry.binary) {
    const binarySuite = known(entry.binary.suite, `the catalog's binary suite of CRIU ${entry.version}`);
    return names[Math.max(names.indexOf(entry.min_suite), names.indexOf(binarySuite))];
  }
  return entry.min_suite;
}
