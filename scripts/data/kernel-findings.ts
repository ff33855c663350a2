/**
 * The doctor's findings about a kernel config, from the kernel requirements map
 * (criu-builds/kernel-requirements.yaml) held against it by requirement-check.ts: a start-up
 * probe the config blocks (every CRIU command fails), a check of plain `criu check` it blocks,
 * a feature it costs, a kind of resource whose dump or restore it fails. Every symbol, range and alternative in the texts comes from the map and
 * the catalog, none is written here. Pure.
 */
import semver from "semver";
import { readableRange, semverOf, type CriuCatalog } from "./criu-catalog.js";
import type { Fragment } from "./fragments.js";
import type { BUILD_CONDITIONS, KernelRequirements } from "./kernel-requirements.js";
import {
  assess,
  fragmentLineFor,
  unmetText,
  type Assessment,
  type CriuFacts,
  type KernelFacts,
} from "./requirement-check.js";

export type BuildCondition = keyof typeof BUILD_CONDITIONS;

const FATAL = "every CRIU command fails at start";

/** A finding as doctor.ts lists it (its own type, kept apart so this module does not import the doctor). */
export interface KernelFinding {
  severity: "fail" | "warn";
  id: string;
  what: string;
  why: string;
  fix: string;
  /** The guest test that will show it (none for a tolerated probe: CRIU starts). */
  test?: string;
  expect?: "FAIL";
}

export interface KernelFindingsInput {
  requirements: KernelRequirements;
  catalog: CriuCatalog;
  kernel: KernelFacts;
  criu: CriuFacts;
  /** The default fragments: a fix names the line that sets the symbol. */
  fragments?: Fragment[];
}

/**
 * Blocked by the config or CRIU's build. A start-up probe's kernel range is left out: the one
 * there is (the vDSO's) is the catalog fact vdso_vvar_vclock_unknown, which the doctor says
 * with its own rule.
 */
function blockedByConfig(x: Assessment): boolean {
  if (x.req.kind === "feature" || x.req.kind === "dump") return x.blocked;
  return x.unmet.missing.length + x.unmet.anyOf.length + x.unmet.build.length > 0;
}

/** "CONFIG_USERFAULTFD=y", "one of CONFIG_A=y, CONFIG_B=y" */
function symbolsToSet(x: Assessment): string[] {
  return [
    ...x.unmet.missing.map((s) => `CONFIG_${s}=y`),
    ...x.unmet.anyOf.map((g) => `one of ${g.map((s) => `CONFIG_${s}=y`).join(", ")}`),
  ];
}

/** The oldest newer catalog CRIU from which on no version has this entry blocked, if any. */
function newerWithout(x: Assessment, i: KernelFindingsInput): string | undefined {
  const newer = [...i.catalog.versions.keys()]
    .filter((v) => semver.gt(semverOf(v), semverOf(i.criu.version)))
    .sort((a, b) => semver.compare(semverOf(a), semverOf(b)));
  const blockedIn = (v: string) =>
    assess(i.requirements, i.kernel, { ...i.criu, version: v }).some(
      (y) => y.req.kind === x.req.kind && y.req.name === x.req.name && blockedByConfig(y) && !y.tolerated,
    );
  const lastBlocked = newer.map(blockedIn).lastIndexOf(true);
  return newer[lastBlocked + 1];
}

/** Every way out the map and the catalog offer, most direct first. */
function fixOf(x: Assessment, i: KernelFindingsInput): string {
  const ways: string[] = [];
  const set = symbolsToSet(x);
  if (set.length) {
    const lines = [...x.unmet.missing, ...x.unmet.anyOf.flat()]
      .map((s) => fragmentLineFor(s, i.fragments ?? []))
      .filter((l): l is string => !!l);
    ways.push(
      `set ${set.join(" and ")} in a kernel fragment${lines.length ? ` (the default fragments do: ${lines.join(", ")})` : ""}`,
    );
  }
  if (x.unmet.build.includes("libnftables"))
    ways.push("use a CRIU linked with libnftables (criu.link: dynamic, or Debian's binary)");
  if (x.unmet.build.includes("compat")) ways.push("use a CRIU built with 32-bit compat support");
  if (x.req.when?.build?.includes("libnftables"))
    ways.push("use a CRIU built without libnftables (criu.link: static)");
  for (const p of x.req.avoidedByPatches) ways.push(`build CRIU with the ${p} patch (--patch ${p})`);
  const newer = newerWithout(x, i);
  if (newer) ways.push(`use CRIU >= ${newer}`);
  return ways.join(", or ");
}

/** Where the entry was read and what its notes add. */
function whyOf(x: Assessment): string {
  const where = `${x.req.probes[0]} (CRIU ${readableRange(x.req.criu)})`;
  return x.req.notes ? `${where}: ${x.req.notes}` : where;
}

/** "USERFAULTFD, not built into this kernel", "linux >= 6.13 (this kernel is 6.12.107)" */
function needs(x: Assessment, i: KernelFindingsInput): string {
  const u = x.unmet;
  const symbols = unmetText({ ...u, kernel: undefined, build: [] });
  return [
    ...(symbols.length ? [`${symbols.join(", ")}, not built into this kernel`] : []),
    ...(u.kernel ? [`linux ${readableRange(u.kernel)} (this kernel is ${i.kernel.version})`] : []),
    ...u.build.map((b) => `a CRIU built with ${b} (this one is not)`),
  ].join("; ");
}

/**
 * What CRIU logs when a probe of kerndat_init fails. Checked in the sources of 3.17.1 to 4.2:
 * every fatal probe that needs a Kconfig symbol or a build condition logs it in these words.
 */
const kerndatMessage = (probe: string) => `"${probe} failed when initializing kerndat"`;

function probeFinding(x: Assessment, i: KernelFindingsInput): KernelFinding {
  const v = i.criu.version;
  const name = x.req.name;
  if (x.tolerated) {
    const patches = x.req.avoidedByPatches.filter((p) => i.criu.patches.includes(p));
    return {
      severity: "warn",
      id: `probe/${name}`,
      what: `CRIU ${v} starts on this kernel only thanks to the ${patches.join(", ")} patch: start-up probe ${name} needs ${needs(x, i)}`,
      why: whyOf(x),
      fix: `set ${symbolsToSet(x).join(" and ")} for full fidelity`,
    };
  }
  return {
    severity: "fail",
    id: `probe/${name}`,
    what: `CRIU ${v}: every CRIU command will fail at start (${kerndatMessage(name)}): start-up probe ${name} needs ${needs(x, i)}`,
    why: whyOf(x),
    fix: fixOf(x, i),
    test: "criu-check",
    expect: "FAIL",
  };
}

function checkFinding(x: Assessment, i: KernelFindingsInput): KernelFinding {
  return {
    severity: "fail",
    id: `check/${x.req.name}`,
    what: `CRIU ${i.criu.version}: plain criu check will fail: its check ${x.req.name} needs ${needs(x, i)}`,
    why: whyOf(x),
    fix: fixOf(x, i),
    test: "criu-check",
    expect: "FAIL",
  };
}

function featureFinding(x: Assessment, i: KernelFindingsInput): KernelFinding {
  return {
    severity: "warn",
    id: `feature/${x.req.name}`,
    what: `CRIU ${i.criu.version}: criu check --feature ${x.req.name} will fail: it needs ${needs(x, i)}`,
    why: whyOf(x),
    fix: fixOf(x, i),
    test: `feature/${x.req.name}`,
    expect: "FAIL",
  };
}

/** A dump entry: the test is the first scenario that shows it, if one does. */
function dumpFinding(x: Assessment, i: KernelFindingsInput): KernelFinding {
  const test = x.req.shownBy[0];
  return {
    severity: "warn",
    id: `dump/${x.req.name}`,
    what: `CRIU ${i.criu.version}: dumping or restoring ${x.req.name} will fail: needs ${needs(x, i)}`,
    why: whyOf(x),
    fix: fixOf(x, i),
    ...(test ? { test, expect: "FAIL" as const } : {}),
  };
}

/**
 * The findings, most basic first: fatal start-up probes (a patch that tolerates one makes it a
 * warning), then checks of plain `criu check`, then each feature the config costs, then each
 * kind of resource it keeps from being dumped.
 */
export function kernelFindings(i: KernelFindingsInput): KernelFinding[] {
  const blocked = assess(i.requirements, i.kernel, i.criu).filter(blockedByConfig);
  const fatal = blocked.filter((x) => x.req.kind === "probe" && x.req.effect === FATAL);
  const plain = blocked.filter((x) => x.req.kind === "check" && x.req.mode === "plain");
  const features = blocked.filter((x) => x.req.kind === "feature");
  const dumps = blocked.filter((x) => x.req.kind === "dump");
  return [
    ...fatal.map((x) => probeFinding(x, i)),
    ...plain.map((x) => checkFinding(x, i)),
    ...features.map((x) => featureFinding(x, i)),
    ...dumps.map((x) => dumpFinding(x, i)),
  ];
}
