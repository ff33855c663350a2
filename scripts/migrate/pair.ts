/**
 * A migration pair (pure): what each boot is told, and the pair's verdict from the two runs.
 * Boot A runs the dump halves of the migrating cases and hands them over on the transfer
 * disk; boot B takes them over and runs the restore halves. An in-place upgrade runs both
 * halves in one boot, dumping with one CRIU and restoring with the other.
 */
import type { RunResults } from "../boot/stage.js";
import type { TestRecord } from "../boot/results.js";
import { hasFact, type CriuCatalog } from "../data/criu-catalog.js";

/** One side of a pair: its names (CRIU version, kernel id, patches) and the config they set. */
export interface PairSide {
  criu: string;
  kernel: string;
  patches: string[];
  /** --set arguments for this side (from the flags, or a matrix cell's axis values). */
  sets: string[];
}

/** A side from command-line values. */
export function sideFromFlags(criu: string, kernel: string, patches: string[]): PairSide {
  return {
    criu,
    kernel,
    patches,
    sets: [
      `criu.version=${JSON.stringify(criu)}`,
      `kernel.version=${JSON.stringify(kernel)}`,
      `criu.patches=${JSON.stringify(patches)}`,
    ],
  };
}

export interface PairSpec {
  from: PairSide;
  to: PairSide;
  /** One boot, both CRIUs (a CRIU upgraded inside the guest); kernels must then be equal. */
  inPlace: boolean;
}

export type PairStatus = "PASS" | "FAIL" | "ERROR" | "SKIPPED";

export interface HalfResult {
  status: TestRecord["status"];
  message: string;
  error_lines: string[];
  seconds: number;
}

export interface PairCase {
  name: string;
  status: "PASS" | "FAIL" | "SKIP";
  /** Where the case stopped and why, in plain words. */
  message: string;
  dump: HalfResult | null;
  restore: HalfResult | null;
}

export interface PairVerdict {
  status: PairStatus;
  reason: string | null;
  cases: PairCase[];
  /** Boot B is not started when nothing was dumped (or boot A failed). */
  restoreBootNeeded: boolean;
}

function sideId(s: PairSide): string {
  return [s.criu, s.kernel, s.patches.join("+") || "unpatched"].join("_");
}

/** `4.1.1_6.12_unpatched-to-4.2.1_6.12_unpatched`; an in-place upgrade says so. */
export function pairId(p: PairSpec): string {
  return `${sideId(p.from)}-${p.inPlace ? "in-place-to" : "to"}-${sideId(p.to)}`;
}

/** What changes from A to B, in words, for titles and the report. */
export function pairAxes(p: PairSpec): string {
  const d: string[] = [];
  if (p.from.criu !== p.to.criu || p.from.patches.join("+") !== p.to.patches.join("+"))
    d.push(`CRIU ${[p.from.criu, ...p.from.patches].join("+")} -> ${[p.to.criu, ...p.to.patches].join("+")}`);
  if (p.from.kernel !== p.to.kernel) d.push(`kernel ${p.from.kernel} -> ${p.to.kernel}`);
  return `${d.join(", ") || "nothing changes"}${p.inPlace ? " (in place, one boot)" : ""}`;
}

/**
 * run.conf for one boot of a pair. `criuPaths` are the guest paths of A's and B's binaries;
 * each half uses its own CRIU's syntax where they differ (external mount masters).
 */
export function migrateConf(
  phase: "dump" | "restore" | "both",
  cases: string[],
  criuPaths: { dump: string; restore: string },
  versions: { dump: string; restore: string },
  catalog: CriuCatalog,
): Record<string, string> {
  const syntax = (v: string) => (hasFact(catalog, "external_mnt_master_syntax", v) ? "mnt" : "enable");
  const own = phase === "restore" ? criuPaths.restore : criuPaths.dump;
  return {
    PHASE: phase,
    MIGRATE: cases.join(" "),
    CRIU: own,
    CRIU_DUMP: criuPaths.dump,
    CRIU_RESTORE: criuPaths.restore,
    EXTERNAL_MASTERS_SYNTAX_DUMP: syntax(versions.dump),
  };
}

function half(t: TestRecord | undefined): HalfResult | null {
  return t ? { status: t.status, message: t.message, error_lines: t.error_lines, seconds: t.seconds } : null;
}

/** Why a half has no record for a case: the gate, or the case did not run at all. */
function missing(run: RunResults, what: string): string {
  const check = run.tests.find((t) => t.name === "criu-check");
  return check && check.status !== "PASS"
    ? `${what} did not run: criu check failed (${check.message})`
    : `${what} did not run (no record)`;
}

/**
 * The verdict after boot A (b undefined: B not run yet, or not needed) or after both. For an
 * in-place upgrade `a` is the one boot and carries both halves in each case's record.
 */
export function judgePair(
  cases: string[],
  a: RunResults,
  b?: RunResults | null,
  inPlace = false,
): PairVerdict {
  if (a.status === "ERROR")
    return { status: "ERROR", reason: `boot A (dump): ${a.error}`, cases: [], restoreBootNeeded: false };
  const byName = (r: RunResults) => new Map(r.tests.map((t) => [t.name, t]));
  const inA = byName(a);
  const out: PairCase[] = [];
  for (const name of cases) {
    const d = inA.get(name);
    if (inPlace) {
      const st = d?.status === "PASS" ? "PASS" : d?.status === "SKIP" ? "SKIP" : "FAIL";
      out.push({
        name,
        status: st,
        message: d ? d.message : missing(a, "the case"),
        dump: null,
        restore: half(d),
      });
      continue;
    }
    if (!d)
      out.push({
        name,
        status: "FAIL",
        message: `dump: ${missing(a, "the dump half")}`,
        dump: null,
        restore: null,
      });
    else if (d.status === "SKIP")
      out.push({ name, status: "SKIP", message: inHalf("dump", d.message), dump: half(d), restore: null });
    else if (d.status !== "PASS")
      out.push({ name, status: "FAIL", message: inHalf("dump", d.message), dump: half(d), restore: null });
    else
      out.push({ name, status: "FAIL", message: "dumped; not restored yet", dump: half(d), restore: null });
  }
  const dumped = out.filter((c) => c.dump?.status === "PASS");
  if (inPlace) return finish(out, null, false);
  if (!dumped.length) return finish(out, "nothing was dumped in boot A: boot B not started", false);
  if (b === undefined)
    return { status: "FAIL", reason: "boot B not run yet", cases: out, restoreBootNeeded: true };
  if (b === null)
    return { status: "ERROR", reason: "boot B did not run", cases: out, restoreBootNeeded: true };
  if (b.status === "ERROR")
    return { status: "ERROR", reason: `boot B (restore): ${b.error}`, cases: out, restoreBootNeeded: true };
  if (b.guest.transfer_status && b.guest.transfer_status !== "read")
    return {
      status: "ERROR",
      reason: `boot B could not read the transfer disk: ${b.guest.transfer_reason ?? b.guest.transfer_status}`,
      cases: out,
      restoreBootNeeded: true,
    };
  const inB = byName(b);
  for (const c of dumped) {
    const r = inB.get(c.name);
    c.restore = half(r);
    if (!r) {
      c.status = "FAIL";
      c.message = `restore: ${missing(b, "the restore half")}`;
    } else {
      c.status = r.status === "PASS" ? "PASS" : r.status === "SKIP" ? "SKIP" : "FAIL";
      c.message = r.status === "PASS" ? r.message : inHalf("restore", r.message);
    }
  }
  return finish(out, null, true);
}

/** A half's message, named once (the guest may have named the half already). */
export function inHalf(half: "dump" | "restore", message: string): string {
  return message.startsWith(`${half}: `) ? message : `${half}: ${message}`;
}

function finish(cases: PairCase[], reason: string | null, restoreBootNeeded: boolean): PairVerdict {
  const failed = cases.filter((c) => c.status === "FAIL");
  return {
    status: failed.length ? "FAIL" : "PASS",
    reason:
      reason ??
      (failed.length
        ? `${failed.length} of ${cases.length} cases failed: ${failed.map((c) => c.name).join(", ")}`
        : null),
    cases,
    restoreBootNeeded,
  };
}

/** A prediction in a cell's `predicted` list (an expected failure when it names a test). */
export interface PairPrediction {
  severity: string;
  id: string;
  what: string;
  test?: string;
  expect?: "PASS" | "FAIL";
}

/**
 * What the catalog predicts for a pair's cases: a registration only survives when both CRIUs
 * keep it; a dump on a kernel that refuses socket options fails for CRIUs that read them. A
 * failure predicted here is an expected failure (XFAIL) of the pair, under the rule of #10.
 */
export function pairPredictions(
  catalog: CriuCatalog,
  v: { dump: string; restore: string; dumpKernel?: string; restoreKernel?: string },
  cases: string[],
): PairPrediction[] {
  const out: PairPrediction[] = [];
  const has = (fact: string, criu: string, kernel?: string) => hasFact(catalog, fact, criu, kernel);
  if (cases.includes("membarrier/registration")) {
    const keeps = (criu: string, kernel?: string) =>
      has("restores_membarrier_registration", criu) ||
      has("membarrier_registrations_without_get_registrations", criu, kernel);
    const lost = [
      !keeps(v.dump, v.dumpKernel) && `the dumping CRIU ${v.dump}`,
      !keeps(v.restore, v.restoreKernel) && `the restoring CRIU ${v.restore}`,
    ].filter(Boolean);
    if (lost.length)
      out.push({
        severity: "warn",
        id: "pair-membarrier-registration",
        what: `${lost.join(" and ")} does not keep a membarrier registration across a dump and restore`,
        test: "membarrier/registration",
        expect: "FAIL",
      });
  }
  // An image format the restoring CRIU cannot read fails every case.
  if (has("pagemap_nr_pages_64", v.dump) && !has("pagemap_nr_pages_64", v.restore))
    for (const test of cases)
      out.push({
        severity: "warn",
        id: "pair-pagemap-nr-pages",
        what: `CRIU ${v.restore} cannot read the page runs CRIU ${v.dump} writes (pagemap nr_pages): it restores no memory`,
        test,
        expect: "FAIL",
      });
  if (has("sockopt_passcred_refused", v.dump, v.dumpKernel))
    for (const test of ["tcp-established/loopback", "kata-container/dump-restore"].filter((t) =>
      cases.includes(t),
    ))
      out.push({
        severity: "warn",
        id: "pair-sockopt-passcred",
        what: `CRIU ${v.dump} cannot dump a TCP socket on linux ${v.dumpKernel} (SO_PASSCRED refused on TCP sockets)`,
        test,
        expect: "FAIL",
      });
  return out;
}
