/**
 * The kernel requirements map (criu-builds/kernel-requirements.yaml): for every `criu check
 * --feature` name, every check of `criu check` and every start-up probe of each CRIU version,
 * the CRIU functions that decide it and what they need (Kconfig symbols, a kernel version, a
 * runtime or build condition), with where that was read. Pure but for loading.
 */
import { join } from "node:path";
import semver from "semver";
import { z } from "zod";
import { UserError } from "../lib/errors.js";
import { CRIU_BUILDS_DIR } from "../lib/paths.js";
import { didYouMean } from "../lib/suggest.js";
import { loadYamlFile, type LocatedYaml } from "../lib/yaml-file.js";
import { checkYaml } from "../lib/yaml-schema.js";
import { semverOf } from "./criu-catalog.js";

export const KERNEL_REQUIREMENTS_FILE = join(CRIU_BUILDS_DIR, "kernel-requirements.yaml");

export const KINDS = ["feature", "check", "probe", "dump"] as const;
export type RequirementKind = (typeof KINDS)[number];

/** Conditions of the running system a check can need (the file's header says each in full). */
export const RUNTIME_CONDITIONS = {
  root: "CRIU runs as root (not --unprivileged)",
  dev_net_tun: "/dev/net/tun exists",
  dev_ptmx: "/dev/ptmx exists and devpts is mounted on /dev/pts",
  loopback_up: "the loopback interface is up in CRIU's network namespace",
  tmp_mountable: "/tmp is writable and a tmpfs can be mounted on a directory in it",
  ptrace_permitted: "ptrace attach and PTRACE_TRACEME are allowed (Yama ptrace_scope below 3)",
  apparmor_active: "AppArmor is the active LSM and securityfs is mounted",
  iptables_legacy: "legacy iptables-save (or iptables-legacy-save) is in PATH",
  ipv6_enabled: "/proc/sys/net/ipv6 exists",
  hw_breakpoints: "the CPU or hypervisor honours x86 debug registers",
} as const;

/** How CRIU itself was built. */
export const BUILD_CONDITIONS = {
  libnftables: "CRIU was linked with libnftables",
  compat: "CRIU was built with 32-bit compat support (CONFIG_COMPAT)",
} as const;

export const EFFECTS = [
  "the feature check fails",
  "plain criu check fails",
  "criu check --all reports it missing",
  "every CRIU command fails at start",
  "none: the result only sets a kerndat flag",
  "dumping or restoring it fails",
] as const;

const runtimeKeys = Object.keys(RUNTIME_CONDITIONS) as [keyof typeof RUNTIME_CONDITIONS];
const buildKeys = Object.keys(BUILD_CONDITIONS) as [keyof typeof BUILD_CONDITIONS];

const semverRange = z
  .string()
  .refine((r) => semver.validRange(r) !== null, 'must be a semver range, e.g. ">=3.19.0"');
const kconfigSymbol = z
  .string()
  .regex(/^(?!CONFIG_)[A-Z0-9_]+$/, "must be a Kconfig symbol without CONFIG_, e.g. USERFAULTFD");

/** criu/cr-check.c:check_uffd@v4.2: a CRIU function at a tag. */
export const CRIU_REF = /^((?:criu|compel|soccr|lib)\/[\w./+-]+):(\w+)@v(\d+\.\d+(?:\.\d+)?)$/;
/** fs/locks.c:2982@6.12.107 (or fs/locks.c@6.12.107 for "absent from this file"): a kernel line. */
export const KERNEL_REF = /^([\w./+-]+?)(?::(\d+))?@(\d+\.\d+\.\d+)$/;

const criuRef = z
  .string()
  .regex(CRIU_REF, "must be file:function@vTAG, e.g. criu/cr-check.c:check_uffd@v4.2");
const sourceRef = z
  .string()
  .refine(
    (s) => CRIU_REF.test(s) || KERNEL_REF.test(s),
    "must be a CRIU file:function@vTAG or a kernel path:line@VERSION",
  );

const NeedsSchema = z.strictObject({
  all_of: z.array(kconfigSymbol).optional(),
  /** Groups of which one symbol is enough. */
  any_of: z.array(z.array(kconfigSymbol).min(2)).optional(),
  /** A range the kernel version must be in (necessary, not sufficient). */
  kernel: semverRange.optional(),
  runtime: z.array(z.enum(runtimeKeys)).optional(),
  build: z.array(z.enum(buildKeys)).optional(),
});

const WhenSchema = z.strictObject({
  runtime: z.array(z.enum(runtimeKeys)).optional(),
  build: z.array(z.enum(buildKeys)).optional(),
});

/** One run that proved the entry: the symbols turned off, on which kernel, with which CRIU. */
const ProofSchema = z.strictObject({
  symbols: z.array(kconfigSymbol).min(1),
  kernel: z.string(),
  criu: z.string(),
  date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must be a date, e.g. 2026-12-06"),
  run: z.string(),
});

const EntrySchema = z.strictObject({
  criu: semverRange,
  /** Checks only: plain `criu check` (category 1) or what --all adds. */
  mode: z.enum(["plain", "all"]).optional(),
  probes: z.array(criuRef).min(1),
  needs: NeedsSchema.optional(),
  when: WhenSchema.optional(),
  /** Checks only: the feature whose function this check runs (its needs and sources apply). */
  same_as: z
    .string()
    .regex(/^feature\/[\w-]+$/, "must be feature/NAME")
    .optional(),
  sources: z.array(sourceRef).min(1).optional(),
  effect: z.enum(EFFECTS),
  /** Probes only: the features that read the flag this probe sets. */
  feeds: z.array(z.string()).optional(),
  /** CRIU patches (criu-builds/patches) that make this fatal probe tolerant. */
  avoided_by_patches: z.array(z.string()).optional(),
  proven: z.union([z.literal(false), z.array(ProofSchema)]).optional(),
  /** Dump entries only: the guest tests (scenario/case) whose failure the entry explains. */
  shown_by: z
    .array(
      z.string().regex(/^[a-z0-9-]+\/[a-z0-9-]+$/, "must be scenario/case, e.g. tcp-established/loopback"),
    )
    .optional(),
  notes: z.string().optional(),
});

const entryOrList = z
  .union([EntrySchema, z.array(EntrySchema).min(1)])
  .meta({ id: "kernel-requirement", description: "one entry, or a list with disjoint criu ranges" });

/** criu-builds/kernel-requirements.yaml (the published JSON Schema; the loader checks each entry). */
export const KERNEL_REQUIREMENTS_SCHEMA = z.strictObject({
  /** The kernel version whose source the Kconfig claims were checked in. */
  kernel_tree: z.string(),
  feature: z.record(z.string(), entryOrList),
  check: z.record(z.string(), entryOrList),
  probe: z.record(z.string(), entryOrList),
  /** What dumping or restoring a kind of resource needs. */
  dump: z.record(z.string(), entryOrList).optional(),
});

const DocumentShape = z.strictObject({
  kernel_tree: z.string().regex(/^\d+\.\d+\.\d+$/, "must be a kernel version, e.g. 6.12.107"),
  feature: z.record(z.string(), z.unknown()),
  check: z.record(z.string(), z.unknown()),
  probe: z.record(z.string(), z.unknown()),
  dump: z.record(z.string(), z.unknown()).optional(),
});

export type Needs = z.infer<typeof NeedsSchema>;
export type Proof = z.infer<typeof ProofSchema>;

export interface Requirement {
  kind: RequirementKind;
  name: string;
  criu: string;
  mode?: "plain" | "all";
  probes: string[];
  /** For a check with same_as: the feature's needs. */
  needs: Needs;
  when?: z.infer<typeof WhenSchema>;
  sameAs?: string;
  /** For a check with same_as: the feature's sources. */
  sources: string[];
  effect: (typeof EFFECTS)[number];
  feeds: string[];
  avoidedByPatches: string[];
  proven: Proof[];
  /** Dump entries: the guest tests (scenario/case) whose failure it explains. */
  shownBy: string[];
  notes?: string;
  /** Where the entry is written, for messages: file:line. */
  at: string;
}

export interface KernelRequirements {
  kernelTree: string;
  entries: Requirement[];
}

export interface LoadOptions {
  /** Kconfig symbols the pinned kernel defines: a symbol outside them is refused. */
  knownSymbols?: ReadonlySet<string>;
  /** CRIU patch names (criu-builds/patches): avoided_by_patches must name one of them. */
  knownPatches?: ReadonlySet<string>;
  /** Guest scenario tests (scenario/case): shown_by must name one of them. */
  knownTests?: ReadonlySet<string>;
}

/** The Kconfig symbols an entry needs (all_of and every any_of alternative). */
export function symbolsOf(needs: Needs): string[] {
  return [...(needs.all_of ?? []), ...(needs.any_of ?? []).flat()];
}

type Path = (string | number)[];

function fail(src: LocatedYaml, path: Path, what: string, fix: string): never {
  throw new UserError(`${src.file}:${src.lineOf(path) ?? "?"}: ${what}`, fix);
}

/** Rules across fields a schema cannot say: what each kind may carry, and where claims were read. */
function checkEntryShape(
  e: z.infer<typeof EntrySchema>,
  kind: RequirementKind,
  name: string,
  kernelTree: string,
  src: LocatedYaml,
  path: Path,
): void {
  const id = `${kind}/${name}`;
  const only = (key: keyof typeof e, allowed: RequirementKind) => {
    if (e[key] !== undefined && kind !== allowed)
      fail(src, [...path, key], `${id}: ${key} is for ${allowed} entries only`, `remove ${key}`);
  };
  only("mode", "check");
  only("same_as", "check");
  only("feeds", "probe");
  only("shown_by", "dump");
  if (kind === "check" && !e.mode)
    fail(src, path, `${id} needs mode: plain or all`, "add mode: plain (category 1) or mode: all");
  if (e.same_as) {
    for (const key of ["needs", "sources"] as const)
      if (e[key] !== undefined)
        fail(
          src,
          [...path, key],
          `${id} runs ${e.same_as}: its ${key} come from there`,
          `remove ${key}, or drop same_as`,
        );
    return;
  }
  if (!e.needs) fail(src, path, `${id} needs the key 'needs'`, "add needs: {} when nothing is needed");
  if (!e.sources) fail(src, path, `${id} needs the key 'sources'`, "add sources: [where it was read]");
  const kernelRefs = e.sources.filter((s) => !CRIU_REF.test(s));
  if (symbolsOf(e.needs).length && !kernelRefs.length)
    fail(
      src,
      [...path, "sources"],
      `${id} names Kconfig symbols but cites no kernel source`,
      `add the kernel line that guards it, e.g. fs/locks.c:2982@${kernelTree}`,
    );
  kernelRefs.forEach((ref) => {
    const version = KERNEL_REF.exec(ref)?.[3];
    if (version !== kernelTree)
      fail(
        src,
        [...path, "sources", e.sources!.indexOf(ref)],
        `${id}: kernel source ${ref} is not of the kernel_tree ${kernelTree}`,
        `read it in ${kernelTree} and write @${kernelTree}`,
      );
  });
}

function checkSymbols(
  r: Requirement,
  known: ReadonlySet<string>,
  src: LocatedYaml,
  path: Path,
  kernelTree: string,
): void {
  for (const key of ["all_of", "any_of"] as const) {
    const list = r.needs[key];
    if (!list) continue;
    const flat = list.flat();
    for (const sym of flat)
      if (!known.has(sym))
        fail(
          src,
          [...path, "needs", key],
          `${r.kind}/${r.name} needs CONFIG_${sym}, which linux ${kernelTree} does not define${didYouMean(sym, known)}`,
          "name a symbol of the kernel's Kconfig (without CONFIG_)",
        );
  }
}

/** One name's entries (one, or a list with disjoint CRIU ranges), each checked. */
function parseName(
  kind: RequirementKind,
  name: string,
  value: unknown,
  kernelTree: string,
  src: LocatedYaml,
): { r: Requirement; path: Path }[] {
  const list = Array.isArray(value) ? value : [value];
  const mine: { r: Requirement; path: Path }[] = [];
  list.forEach((item, i) => {
    const path: Path = Array.isArray(value) ? [kind, name, i] : [kind, name];
    const e = checkYaml(EntrySchema, src, { what: "kernel requirements", at: path }, item);
    checkEntryShape(e, kind, name, kernelTree, src, path);
    const clash = mine.find((m) => semver.intersects(m.r.criu, e.criu));
    if (clash)
      fail(
        src,
        [...path, "criu"],
        `${kind}/${name}: CRIU range ${e.criu} overlaps ${clash.r.criu} of the same name`,
        "make the ranges of one name disjoint",
      );
    const r: Requirement = {
      kind,
      name,
      criu: e.criu,
      mode: e.mode,
      probes: e.probes,
      needs: e.needs ?? {},
      when: e.when,
      sameAs: e.same_as,
      sources: e.sources ?? [],
      effect: e.effect,
      feeds: e.feeds ?? [],
      avoidedByPatches: e.avoided_by_patches ?? [],
      proven: e.proven || [],
      shownBy: e.shown_by ?? [],
      notes: e.notes,
      at: `${src.file}:${src.lineOf(path) ?? "?"}`,
    };
    mine.push({ r, path });
  });
  return mine;
}

/** same_as takes the feature's needs and sources; feeds and patches must name what exists. */
function resolveReferences(
  r: Requirement,
  path: Path,
  features: Requirement[],
  src: LocatedYaml,
  o: LoadOptions,
): void {
  const featureNames = features.map((f) => f.name);
  if (r.sameAs) {
    const target = r.sameAs.slice("feature/".length);
    const feature = features.find((f) => f.name === target && semver.subset(r.criu, f.criu));
    if (!feature)
      fail(
        src,
        [...path, "same_as"],
        `${r.kind}/${r.name} runs ${r.sameAs}, but no such feature covers CRIU ${r.criu}${didYouMean(target, featureNames)}`,
        "name a feature of this file whose range holds the check's",
      );
    r.needs = feature.needs;
    r.sources = feature.sources;
  }
  r.feeds.forEach((f, i) => {
    if (!featureNames.includes(f))
      fail(
        src,
        [...path, "feeds", i],
        `${r.kind}/${r.name} feeds '${f}', which is no feature of this file${didYouMean(f, featureNames)}`,
        "name a feature entry",
      );
  });
  const tests = o.knownTests;
  if (tests)
    r.shownBy.forEach((t, i) => {
      if (!tests.has(t))
        fail(
          src,
          [...path, "shown_by", i],
          `${r.kind}/${r.name}: shown_by names '${t}', which is no scenario case of scenarios.yaml${didYouMean(t, tests)}`,
          "name a scenario/case that scenarios.yaml lists (its migrate or observe cases), or drop it",
        );
    });
  const patches = o.knownPatches;
  if (patches)
    r.avoidedByPatches.forEach((p, i) => {
      if (!patches.has(p))
        fail(
          src,
          [...path, "avoided_by_patches", i],
          `${r.kind}/${r.name}: unknown CRIU patch '${p}'${didYouMean(p, patches)}`,
          "name a patch of criu-builds/patches/patches.yaml",
        );
    });
}

/** The map, every entry checked; cross-entry references resolved (same_as, feeds, patches). */
export function parseKernelRequirements(src: LocatedYaml, o: LoadOptions = {}): KernelRequirements {
  const doc = checkYaml(DocumentShape, src, { what: "kernel requirements" });
  const parsed = KINDS.flatMap((kind) =>
    Object.entries(doc[kind] ?? {}).flatMap(([name, value]) =>
      parseName(kind, name, value, doc.kernel_tree, src),
    ),
  );
  const features = parsed.map((p) => p.r).filter((r) => r.kind === "feature");
  for (const { r, path } of parsed) {
    resolveReferences(r, path, features, src, o);
    if (o.knownSymbols) checkSymbols(r, o.knownSymbols, src, path, doc.kernel_tree);
  }
  return { kernelTree: doc.kernel_tree, entries: parsed.map((p) => p.r) };
}

export function loadKernelRequirements(
  file = KERNEL_REQUIREMENTS_FILE,
  o: LoadOptions = {},
): KernelRequirements {
  return parseKernelRequirements(loadYamlFile(file), o);
}

/** The entries that hold for this CRIU version. */
export function requirementsFor(map: KernelRequirements, criuVersion: string): Requirement[] {
  const v = semverOf(criuVersion);
  return map.entries.filter((r) => semver.satisfies(v, r.criu));
}

/** The `criu check --feature` names this CRIU version accepts, in its cr-check.c order. */
export function featureNames(map: KernelRequirements, criuVersion: string): string[] {
  return requirementsFor(map, criuVersion)
    .filter((r) => r.kind === "feature")
    .map((r) => r.name);
}

/** Every Kconfig symbol the map names, sorted. */
export function allSymbols(map: KernelRequirements): string[] {
  return [...new Set(map.entries.flatMap((r) => (r.sameAs ? [] : symbolsOf(r.needs))))].sort();
}
