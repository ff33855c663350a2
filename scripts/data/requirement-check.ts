/**
 * The kernel requirements map held against one kernel: its .config and version, and the CRIU
 * that will run on it. Says, per entry, what is unmet; per CRIU version, what the config gives
 * (does CRIU start, does `criu check` pass, how many features); per failing guest test, the
 * cause the map finds, or that it finds none. Pure: callers read the .config.
 */
import { relative } from "node:path";
import semver from "semver";
import { REPO_ROOT } from "../lib/paths.js";
import type { Fragment } from "./fragments.js";
import {
  BUILD_CONDITIONS,
  RUNTIME_CONDITIONS,
  requirementsFor,
  type KernelRequirements,
  type Requirement,
} from "./kernel-requirements.js";

/** The kernel a verdict is about. */
export interface KernelFacts {
  /** CONFIG_X -> value (the final .config). */
  config: Map<string, string>;
  version?: string;
  /** The image carries the kernel's modules, so =m counts as present (cr-guest's do not). */
  modules?: boolean;
}

/** The CRIU a verdict is about. */
export interface CriuFacts {
  version: string;
  /** Build conditions that hold for this binary (libnftables, compat). */
  build: (keyof typeof BUILD_CONDITIONS)[];
  patches: string[];
}

/** What one entry lacks on this kernel, by kind of need. */
export interface Unmet {
  /** all_of symbols that are off (or =m without modules). */
  missing: string[];
  /** any_of groups of which none is on. */
  anyOf: string[][];
  /** Of missing and anyOf: the symbols that are =m (present, but the image has no modules). */
  modules: string[];
  /** The kernel range the version is outside of. */
  kernel?: string;
  build: string[];
  /** Runtime conditions the entry needs: not decidable from a .config, said when nothing else explains. */
  runtime: string[];
}

export interface Assessment {
  req: Requirement;
  unmet: Unmet;
  /** The config (or version, or CRIU build) keeps it from working. */
  blocked: boolean;
  /** A fatal probe whose failure a CRIU patch in this build tolerates. */
  tolerated: boolean;
}

const FATAL = "every CRIU command fails at start";

/** A symbol is present when built in, or as a module when the image carries modules. */
export function present(k: KernelFacts, symbol: string): boolean {
  const v = k.config.get(`CONFIG_${symbol}`);
  return v === "y" || (v === "m" && k.modules === true);
}

function kernelSemver(version: string): string {
  return semver.coerce(version)?.version ?? version;
}

export function unmetNeeds(r: Requirement, k: KernelFacts, c: CriuFacts): Unmet {
  const isModule = (s: string) => k.config.get(`CONFIG_${s}`) === "m" && !k.modules;
  const missing = (r.needs.all_of ?? []).filter((s) => !present(k, s));
  const anyOf = (r.needs.any_of ?? []).filter((g) => !g.some((s) => present(k, s)));
  const kernel =
    r.needs.kernel && k.version && !semver.satisfies(kernelSemver(k.version), r.needs.kernel)
      ? r.needs.kernel
      : undefined;
  return {
    missing,
    anyOf,
    modules: [...missing, ...anyOf.flat()].filter(isModule),
    kernel,
    build: (r.needs.build ?? []).filter((b) => !c.build.includes(b)),
    runtime: r.needs.runtime ?? [],
  };
}

/** An entry applies when its `when` holds: build conditions are known, runtime ones are taken as the guest's (root, no LSM). */
function applies(r: Requirement, c: CriuFacts): boolean {
  if ((r.when?.build ?? []).some((b) => !c.build.includes(b))) return false;
  // The guest runs CRIU as root with no LSM: root holds, apparmor_active does not.
  return (r.when?.runtime ?? []).every((cond) => cond === "root");
}

/** Every entry of this CRIU version that applies, with what the kernel leaves unmet. */
export function assess(map: KernelRequirements, k: KernelFacts, c: CriuFacts): Assessment[] {
  return requirementsFor(map, c.version)
    .filter((r) => applies(r, c))
    .map((req) => {
      const unmet = unmetNeeds(req, k, c);
      const blocked = unmet.missing.length + unmet.anyOf.length + unmet.build.length > 0 || !!unmet.kernel;
      const tolerated =
        blocked && req.effect === FATAL && req.avoidedByPatches.some((p) => c.patches.includes(p));
      return { req, unmet, blocked, tolerated };
    });
}

/** What a config gives one CRIU version, before anything is built or booted. */
export interface ConfigVerdict {
  criu: string;
  /** Fatal start-up probes the kernel fails: every CRIU command fails. */
  fatal: Assessment[];
  /** Fatal probes a patch of this build tolerates. */
  tolerated: Assessment[];
  /** Checks of plain `criu check` the kernel fails. */
  plain: Assessment[];
  /** What --all adds that the kernel fails. */
  all: Assessment[];
  features: { total: number; ok: number; missing: Assessment[] };
  /** Dump entries the kernel fails: dumping or restoring that resource fails (not counted in features). */
  dump: Assessment[];
  starts: boolean;
  checkPasses: boolean;
}

export function judgeConfig(map: KernelRequirements, k: KernelFacts, c: CriuFacts): ConfigVerdict {
  const a = assess(map, k, c);
  const blocked = (pred: (r: Requirement) => boolean) => a.filter((x) => pred(x.req) && x.blocked);
  const fatalAll = blocked((r) => r.kind === "probe" && r.effect === FATAL);
  const fatal = fatalAll.filter((x) => !x.tolerated);
  const plain = blocked((r) => r.kind === "check" && r.mode === "plain");
  const features = a.filter((x) => x.req.kind === "feature");
  const featureMissing = features.filter((x) => x.blocked || fedByBlocked(x.req.name, fatalAll));
  return {
    criu: c.version,
    fatal,
    tolerated: fatalAll.filter((x) => x.tolerated),
    plain,
    all: blocked((r) => r.kind === "check" && r.mode === "all"),
    features: {
      total: features.length,
      ok: fatal.length ? 0 : features.length - featureMissing.length,
      missing: fatal.length ? features : featureMissing,
    },
    dump: blocked((r) => r.kind === "dump"),
    starts: fatal.length === 0,
    checkPasses: fatal.length === 0 && plain.length === 0,
  };
}

const fedByBlocked = (feature: string, probes: Assessment[]) =>
  probes.some((p) => p.req.feeds.includes(feature));

/** "USERFAULTFD", "MEMBARRIER (=m, no modules in the image)", "one of IPV6, INET", "kernel >=6.13.0". */
export function unmetText(u: Unmet): string[] {
  const sym = (s: string) => (u.modules.includes(s) ? `${s} (=m; the image has no modules)` : s);
  return [
    ...u.missing.map(sym),
    ...u.anyOf.map((g) => `one of ${g.map(sym).join(", ")}`),
    ...(u.kernel ? [`a kernel ${u.kernel}`] : []),
    ...u.build.map((b) => `a CRIU built with ${b}`),
  ];
}

/** "uffd (USERFAULTFD)" */
const short = (x: Assessment) => `${x.req.name} (${unmetText(x.unmet).join(", ")})`;

/** One line per CRIU version: "CRIU 4.1.1 with this .config: criu check passes; 38/42 features; missing: ..." */
export function formatVerdict(v: ConfigVerdict, label = "this .config"): string {
  const head = `CRIU ${v.criu} with ${label}:`;
  if (!v.starts)
    return `${head} every CRIU command fails at start (${v.fatal.map(short).join("; ")}); 0/${v.features.total} features`;
  const check = v.checkPasses ? "criu check passes" : `criu check fails (${v.plain.map(short).join("; ")})`;
  const missing = v.features.missing.map((x) =>
    x.blocked ? short(x) : `${x.req.name} (start-up probe ${feedingProbe(x, v)})`,
  );
  const patched = v.tolerated.length
    ? `; starts only thanks to a patch (${v.tolerated.map((x) => `${short(x)}: ${x.req.avoidedByPatches.join(", ")}`).join("; ")})`
    : "";
  const dumps = v.dump.length ? `; dumps that will fail: ${v.dump.map(short).join(", ")}` : "";
  return `${head} ${check}; ${v.features.ok}/${v.features.total} features${missing.length ? `; missing: ${missing.join(", ")}` : ""}${patched}${dumps}`;
}

/** One entry of a verdict's lists: its name and what the kernel leaves unmet. */
const listed = (x: Assessment) => ({ name: x.req.name, needs: unmetText(x.unmet) });

/** A verdict as --json prints it: the counts, what fails and why, and formatVerdict's line. */
export function verdictDocument(v: ConfigVerdict, label = "this .config") {
  return {
    criu: v.criu,
    starts: v.starts,
    check_passes: v.checkPasses,
    features: { ok: v.features.ok, total: v.features.total },
    fatal: v.fatal.map(listed),
    tolerated: v.tolerated.map((x) => ({ ...listed(x), patches: x.req.avoidedByPatches })),
    plain: v.plain.map(listed),
    all: v.all.map(listed),
    missing_features: v.features.missing.map(listed),
    dump: v.dump.map(listed),
    line: formatVerdict(v, label),
  };
}

function feedingProbe(x: Assessment, v: ConfigVerdict): string {
  const p = v.tolerated.find((t) => t.req.feeds.includes(x.req.name));
  return p ? short(p) : "?";
}

/** Where a fix goes: the first fragment line that sets the symbol (not to n), if one does. */
export function fragmentLineFor(symbol: string, fragments: Fragment[]): string | undefined {
  for (const f of fragments) {
    const e = f.entries.find((x) => x.symbol === `CONFIG_${symbol}` && x.value !== "n");
    if (e)
      return `${relative(REPO_ROOT, e.file).startsWith("..") ? e.file : relative(REPO_ROOT, e.file)}:${e.line}`;
  }
  return undefined;
}

/** The cause the map finds for a failing guest test. */
export interface Cause {
  test: string;
  /**
   * config: the kernel explains it (a Kconfig symbol off, or its version), with or without
   * CRIU's build; build: only how CRIU was built does (libnftables, compat); unexplained:
   * the kernel has every option the map says it needs.
   */
  kind: "config" | "build" | "unexplained";
  /** The entries that explain it (kind/name). */
  entries: string[];
  /** The Kconfig symbols to turn on. */
  symbols: string[];
  /** One sentence for every output format. */
  text: string;
}

export interface CauseContext {
  verdict: ConfigVerdict;
  assessments: Assessment[];
  /** Fragments to name the line that sets a symbol (the default set first). */
  fragments?: Fragment[];
}

/** A test is about CRIU when it runs CRIU: its checks, its features and the scenarios. */
function runsCriu(test: string): boolean {
  return !["kernel-config", "criu-version"].includes(test) && !test.startsWith("ptrace-");
}

/** The entries whose unmet needs explain this test's failure, most basic first; fatal: CRIU does not start. */
function explaining(test: string, ctx: CauseContext): { found: Assessment[]; fatal: boolean } {
  const v = ctx.verdict;
  if (!runsCriu(test)) return { found: [], fatal: false };
  if (v.fatal.length) return { found: v.fatal, fatal: true };
  if (test === "criu-check") return { found: v.plain, fatal: false };
  if (test === "criu-check-all") return { found: [...v.plain, ...v.all], fatal: false };
  const feature = /^feature\/(.+)$/.exec(test)?.[1];
  if (!feature) return { found: blockedDumpsShownBy(test, ctx.assessments), fatal: false };
  const entry = ctx.assessments.filter((a) => a.req.kind === "feature" && a.req.name === feature);
  const probes = ctx.assessments.filter((a) => a.req.kind === "probe" && a.req.feeds.includes(feature));
  return { found: [...entry, ...probes].filter((a) => a.blocked), fatal: false };
}

/** The blocked dump entries whose shown_by names this scenario test. */
function blockedDumpsShownBy(test: string, assessments: Assessment[]): Assessment[] {
  return assessments.filter((a) => a.req.kind === "dump" && a.blocked && a.req.shownBy.includes(test));
}

const cfg = (s: string) => `CONFIG_${s}`;

/**
 * What one entry lacks, in words: "CONFIG_USERFAULTFD, off in this kernel", "a CRIU linked
 * with libnftables, which this build is not".
 */
export function unmetSentence(u: Unmet): string {
  const isModule = (s: string) => u.modules.includes(s);
  const off = u.missing.filter((s) => !isModule(s));
  const modules = u.missing.filter(isModule);
  return [
    ...(off.length ? [`${off.map(cfg).join(", ")}, off in this kernel`] : []),
    ...(modules.length
      ? [`${modules.map(cfg).join(", ")} built in (=m in this kernel, and the image carries no modules)`]
      : []),
    ...u.anyOf.map((g) => `one of ${g.map(cfg).join(", ")}, none built into this kernel`),
    ...(u.kernel ? [`a kernel ${u.kernel}, which this one is not`] : []),
    ...u.build.map(
      (b) =>
        `${BUILD_CONDITIONS[b as keyof typeof BUILD_CONDITIONS].replace(/^CRIU was /, "a CRIU ")}, which this build is not`,
    ),
  ].join(", and ");
}

/**
 * "; set it in a fragment (kernel-fragments/checkpoint-restore.conf:27 sets it)"; the symbols
 * are named when the sentence before names more than one need (`it` would be ambiguous).
 */
function fixFor(symbols: string[], fragments: Fragment[] | undefined, plain: boolean): string {
  if (!symbols.length) return "";
  const lines = symbols.flatMap((s) => {
    const at = fragmentLineFor(s, fragments ?? []);
    return at ? [`${at} sets ${plain ? "it" : cfg(s)}`] : [];
  });
  const where = lines.length ? lines.join(", ") : "e.g. kernel-fragments/checkpoint-restore.conf";
  return `; set ${plain ? "it" : symbols.map(cfg).join(", ")} in a fragment (${where})`;
}

function unexplained(test: string, feature: string | undefined, ctx: CauseContext): Cause {
  const entry = ctx.assessments.find((a) => a.req.kind === "feature" && a.req.name === feature);
  const runtime = entry?.unmet.runtime.filter((r) => r !== "root") ?? [];
  const cond = runtime.length
    ? `; it also needs ${runtime.map((r) => RUNTIME_CONDITIONS[r as keyof typeof RUNTIME_CONDITIONS]).join(", ")}, which a .config cannot show`
    : "";
  return {
    test,
    kind: "unexplained",
    entries: entry ? [`feature/${entry.req.name}`] : [],
    symbols: [],
    text: `unexplained: the kernel has every option this needs${cond}`,
  };
}

/** Why a failing test failed, as far as the map and the cell's .config tell; undefined for tests the map does not cover. */
export function causeOf(test: string, ctx: CauseContext): Cause | undefined {
  const { found, fatal } = explaining(test, ctx);
  const feature = /^feature\/(.+)$/.exec(test)?.[1];
  const covered =
    found.length > 0 ||
    test === "criu-check" ||
    test === "criu-check-all" ||
    (feature !== undefined &&
      ctx.assessments.some((a) => a.req.kind === "feature" && a.req.name === feature));
  if (!covered) return undefined;
  if (!found.length) return unexplained(test, feature, ctx);
  const symbols = [...new Set(found.flatMap((a) => [...a.unmet.missing, ...a.unmet.anyOf.map((g) => g[0])]))];
  // The test's own feature entry needs no name: "feature/uffd FAIL: needs CONFIG_USERFAULTFD, ...".
  const label = (a: Assessment) =>
    a.req.kind === "feature" && a.req.name === feature
      ? ""
      : `${a.req.kind === "probe" ? "start-up probe " : a.req.kind === "dump" ? "dumping or restoring " : ""}${a.req.name} `;
  const needs = found.map((a) => `${label(a)}needs ${unmetSentence(a.unmet)}`).join("; ");
  const byKernel = symbols.length > 0 || found.some((a) => a.unmet.kernel);
  return {
    test,
    kind: byKernel ? "config" : "build",
    entries: found.map((a) => `${a.req.kind}/${a.req.name}`),
    symbols,
    text: `${fatal ? "every CRIU command fails at start: " : ""}${needs}${fixFor(symbols, ctx.fragments, found.length === 1 && symbols.length === 1)}`,
  };
}

/**
 * The build conditions of the kernel requirements map that a binary meets. libnftables: a
 * dynamic build installs libnftables-dev (criu/build-recipe.ts), and Debian's binary is taken
 * to be linked with it; the static build leaves it out ("Building without nftables support" in
 * its log). compat: CRIU's Makefile.config turns CONFIG_COMPAT on when the compiler assembles
 * its x86 compat test (.code32 code, no -m32), which an amd64 gcc does without multilib: every
 * build has it (its log compiles sigaction_compat_pie.o; feature/compat_cr passes in the guest).
 */
export function criuBuildConditions(c: { provider?: string; link?: string }): CriuFacts["build"] {
  const nftables = c.provider === "debian-binary" || c.link === "debian-binary" || c.link === "dynamic";
  return [...(nftables ? ["libnftables" as const] : []), "compat"];
}

/** A CRIU build's facts from its metadata (or the plan of one). */
export function criuFacts(meta: {
  version: string;
  provider?: string;
  link?: string;
  patches: { name: string }[];
}): CriuFacts {
  return {
    version: meta.version,
    build: criuBuildConditions(meta),
    patches: meta.patches.map((p) => p.name),
  };
}
