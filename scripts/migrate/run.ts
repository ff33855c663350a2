/**
 * Running a migration pair: the kernels and CRIU builds (the same stages every cell uses),
 * one image holding both CRIUs (static builds, one userland for both boots: CRIU checks the
 * files a process maps when it restores), boot A (dump halves, transfer disk written), the
 * transfer disk verified, boot B (a fresh copy of it; restore halves), the verdict. Output:
 * <cache>/migrate/<pair id>/pair.json, pointing at both runs' evidence.
 */
import { join, relative } from "node:path";
import type { RunRecord } from "../boot/stage.js";
import { resolveAndPlanCriu, servingCandidate } from "../criu/stage.js";
import { migratingCases, loadScenarios } from "../data/scenarios.js";
import { repoData } from "../data/repo-data.js";
import { drive, type Outcomes, type StageOutcome } from "../driver.js";
import { criuGuestPath } from "../image/stage.js";
import { loadConfig, type PipelineConfig } from "../lib/config.js";
import { writeAtomic } from "../lib/fs-atomic.js";
import { GUEST_PATHS } from "../lib/guest-contract.js";
import semver from "semver";
import {
  judgePair,
  migrateConf,
  pairAxes,
  pairId,
  pairPredictions,
  type PairPrediction,
  type PairSide,
  type PairSpec,
  type PairVerdict,
} from "./pair.js";
import { TransferDiskError, verifyTransferDisk } from "../boot/transfer-disk.js";
import { inspectPairDump, type CritReading } from "./crit.js";

export const PAIR_SCHEMA = 1;

export interface PairResult {
  schema: typeof PAIR_SCHEMA;
  id: string;
  axes: { from: PairSide; to: PairSide; in_place: boolean; changes: string };
  status: PairVerdict["status"];
  reason: string | null;
  cases: PairVerdict["cases"];
  /** The catalog's predictions for the cases: a predicted failure is an expected one. */
  predicted: PairPrediction[];
  /** The CRIU builds and kernels each side used. */
  identities: { from: SideIdentity; to: SideIdentity; image: string | null };
  /** Each boot's run directory (relative to the cache), for the evidence. */
  runs: { dump: string | null; restore: string | null };
  transfer: { disk: string; bytes: number; sha256: string } | null;
  /** crit of each side's CRIU on boot A's dump (informational; absent in place: no dump leaves the guest). */
  crit: CritReading[];
  seconds: number;
  created: string;
}

interface SideIdentity {
  criu: { version: string; sha256: string; provider: string; link: string; patches: string[] } | null;
  kernel: { version: string; key: string } | null;
}

/** The config of one side: its CRIU and kernel, a static CRIU (one rootfs serves both sides). */
export function sideConfig(base: { configFile?: string; set: string[] }, side: PairSide): PipelineConfig {
  const sets = [...base.set, ...side.sets, "criu.link=static"];
  const config = loadConfig({ configFile: base.configFile, set: sets });
  // A Debian binary is dynamic, linked against its own suite: never one of a pair.
  const plan = resolveAndPlanCriu(config, { strict: true });
  const first = servingCandidate(plan);
  if (first?.provider !== "debian-binary") return config;
  const others = plan.candidates.map((c) => c.provider).filter((p) => p !== "debian-binary");
  return loadConfig({
    configFile: base.configFile,
    set: [...sets, `criu.providers=${JSON.stringify(others)}`],
  });
}

export interface MigrateOptions {
  force?: boolean;
  log?: (line: string) => void;
  onOutcome?: (o: StageOutcome) => void;
}

function identity(o: Outcomes): SideIdentity {
  const m = o.criu?.value.metadata;
  const k = o.kernel?.value.ref;
  return {
    criu: m
      ? {
          version: m.version,
          sha256: m.criu.sha256,
          provider: m.provider,
          link: m.link,
          patches: m.patches.map((p) => p.name),
        }
      : null,
    kernel: k ? { version: k.version, key: k.key } : null,
  };
}

/** What both boots of a pair share: its sides' configs, the result being filled, how to boot. */
interface PairRun {
  pair: PairSpec;
  cfgA: PipelineConfig;
  cfgB: PipelineConfig;
  catalog: ReturnType<typeof repoData>["criu"];
  result: PairResult;
  log: (line: string) => void;
  /** A directory as the result records it: relative to the cache. */
  rel: (dir: string) => string;
  drv: (
    config: PipelineConfig,
    targets: Parameters<typeof drive>[1],
    opts?: Parameters<typeof drive>[2],
  ) => ReturnType<typeof drive>;
  force?: boolean;
}

/** The kernels, CRIU builds and the one image of a pair, and where each CRIU is in it. */
interface PairBuilds {
  kA: StageOutcome<"kernel">;
  kB: StageOutcome<"kernel">;
  criuA: StageOutcome<"criu">;
  criuB: StageOutcome<"criu">;
  imageOut: Outcomes;
  paths: { dump: string; restore: string };
  versions: { dump: string; restore: string };
}

export async function runMigration(
  base: { configFile?: string; set: string[] },
  pair: PairSpec,
  o: MigrateOptions = {},
): Promise<PairResult> {
  const t0 = Date.now();
  const cfgA = sideConfig(base, pair.from);
  const id = pairId(pair);
  const p: PairRun = {
    pair,
    cfgA,
    cfgB: sideConfig(base, pair.to),
    catalog: repoData().criu,
    result: emptyPairResult(id, pair),
    log: o.log ?? (() => undefined),
    rel: (dir) => relative(cfgA.cache_dir, dir),
    drv: (config, targets, opts = {}) => drive(config, targets, { ...opts, onOutcome: o.onOutcome }),
    force: o.force,
  };
  const b = await pairBuilds(p);
  // The cases both CRIUs run (a scenario's criu range may exclude one of them).
  const { dump, restore } = b.versions;
  const scenarios = loadScenarios(cfgA.boot.scenarios).filter(
    (s) => semver.satisfies(dump, s.criu) && semver.satisfies(restore, s.criu),
  );
  const cases = migratingCases(scenarios);
  p.result.predicted = pairPredictions(
    p.catalog,
    { ...b.versions, dumpKernel: b.kA.value.ref?.version, restoreKernel: b.kB.value.ref?.version },
    cases,
  );
  await (pair.inPlace ? bootInPlace(p, b, cases) : bootAcross(p, b, cases));
  p.result.seconds = (Date.now() - t0) / 1000;
  await writeAtomic(
    join(cfgA.cache_dir, "migrate", id, "pair.json"),
    `${JSON.stringify(p.result, null, 2)}\n`,
  );
  return p.result;
}

function emptyPairResult(id: string, pair: PairSpec): PairResult {
  return {
    schema: PAIR_SCHEMA,
    id,
    axes: { from: pair.from, to: pair.to, in_place: pair.inPlace, changes: pairAxes(pair) },
    status: "ERROR",
    reason: null,
    cases: [],
    predicted: [],
    identities: { from: { criu: null, kernel: null }, to: { criu: null, kernel: null }, image: null },
    runs: { dump: null, restore: null },
    transfer: null,
    crit: [],
    seconds: 0,
    created: new Date().toISOString(),
  };
}

/** Kernels and CRIUs: the stages of any cell (shared caches); then one image for both. */
async function pairBuilds(p: PairRun): Promise<PairBuilds> {
  const { cfgA, cfgB, drv, result } = p;
  const kA = (await drv(cfgA, ["kernel"])).kernel!;
  const kB =
    JSON.stringify(cfgB.kernel) === JSON.stringify(cfgA.kernel) ? kA : (await drv(cfgB, ["kernel"])).kernel!;
  const criuA = (await drv(cfgA, ["criu"], { given: { kernel: kA }, criu: { force: true, strict: false } }))
    .criu!;
  const criuB = (await drv(cfgB, ["criu"], { given: { kernel: kB }, criu: { force: true, strict: false } }))
    .criu!;
  result.identities.from = identity({ kernel: kA, criu: criuA });
  result.identities.to = identity({ kernel: kB, criu: criuB });

  // One image for both: the older of the two CRIUs' guest suites that both run in (static
  // builds run in their build suite and every later one), else the later one.
  const sameCriu = criuA.value.metadata.criu.sha256 === criuB.value.metadata.criu.sha256;
  const [primaryCfg, primary, other] = imageSide(p.catalog, [cfgA, criuA], [cfgB, criuB]);
  const imageOut = await drv(primaryCfg, ["image"], {
    given: { criu: primary },
    image: { more: sameCriu ? [] : [other.value] },
  });
  result.identities.image = imageOut.image!.value.manifest.image_key;
  const paths = sameCriu
    ? { dump: GUEST_PATHS.criu, restore: GUEST_PATHS.criu }
    : { dump: criuGuestPath(criuA.value.metadata), restore: criuGuestPath(criuB.value.metadata) };
  const versions = { dump: criuA.value.metadata.version, restore: criuB.value.metadata.version };
  return { kA, kB, criuA, criuB, imageOut, paths, versions };
}

/** One boot of a pair's side, in the pair's image. */
async function bootSide(
  p: PairRun,
  b: PairBuilds,
  side: "A" | "B",
  conf: Record<string, string>,
  transfer?: { mode: "write" } | { mode: "read"; readFrom: string },
): Promise<RunRecord> {
  const [config, kernel, criu] = side === "A" ? [p.cfgA, b.kA, b.criuA] : [p.cfgB, b.kB, b.criuB];
  const given = { kernel, criu, agent: b.imageOut.agent, image: b.imageOut.image };
  return (await p.drv(config, ["boot"], { given, boot: { force: p.force, log: p.log, conf, transfer } }))
    .boot!.value;
}

/** In place: one boot dumps and restores each case. */
async function bootInPlace(
  p: PairRun,
  b: PairBuilds,
  cases: ReturnType<typeof migratingCases>,
): Promise<void> {
  const { paths, versions } = b;
  p.log(`in place: ${cases.length} cases, dump with ${paths.dump}, restore with ${paths.restore}`);
  const run = await bootSide(p, b, "A", migrateConf("both", cases, paths, versions, p.catalog));
  p.result.runs.dump = p.rel(run.dir);
  Object.assign(p.result, pick(judgePair(cases, run.results, null, true)));
}

/** Boot A dumps onto the transfer disk, which is verified; boot B restores from a copy of it. */
async function bootAcross(
  p: PairRun,
  b: PairBuilds,
  cases: ReturnType<typeof migratingCases>,
): Promise<void> {
  const { paths, versions } = b;
  const { result, rel, log } = p;
  log(`boot A (${p.pair.from.kernel}, CRIU ${versions.dump}): dump ${cases.length} cases`);
  const confA = migrateConf("dump", cases, paths, versions, p.catalog);
  const runA = await bootSide(p, b, "A", confA, { mode: "write" });
  result.runs.dump = rel(runA.dir);
  const afterA = judgePair(cases, runA.results);
  if (!afterA.restoreBootNeeded) {
    Object.assign(result, pick(afterA));
    return;
  }
  const disk = join(runA.dir, "transfer.img");
  try {
    const rec = verifyTransferDisk(disk);
    result.transfer = { disk: rel(disk), bytes: rec.bytes, sha256: rec.sha256 };
  } catch (err) {
    if (!(err instanceof TransferDiskError)) throw err;
    Object.assign(result, pick(afterA), { status: "ERROR", reason: err.message });
    return;
  }
  // crit reads the dump on the host while boot B runs (it never throws: its failures are evidence).
  const crit = inspectPairDump(
    [
      { role: "dump", config: p.cfgA, criu: b.criuA.value.metadata },
      { role: "restore", config: p.cfgB, criu: b.criuB.value.metadata },
    ],
    disk,
    cases,
    log,
  );
  log(`boot B (${p.pair.to.kernel}, CRIU ${versions.restore}): restore from ${disk}`);
  const confB = migrateConf("restore", cases, paths, versions, p.catalog);
  const runB = await bootSide(p, b, "B", confB, { mode: "read", readFrom: disk });
  result.runs.restore = rel(runB.dir);
  result.crit = await crit;
  Object.assign(result, pick(judgePair(cases, runA.results, runB.results)));
}

type Side = [PipelineConfig, StageOutcome<"criu">];

/** Which side's CRIU makes the image (its guest suite), and the other. Exported for tests. */
export function imageSide(
  catalog: ReturnType<typeof repoData>["criu"],
  a: Side,
  b: Side,
): [PipelineConfig, StageOutcome<"criu">, StageOutcome<"criu">] {
  const order = (x: Side) => catalog.suites.findIndex((s) => s.name === x[1].value.metadata.guest_suite);
  const [older, newer] = order(a) <= order(b) ? [a, b] : [b, a];
  const fits = newer[1].value.metadata.runs_in.includes(older[1].value.metadata.guest_suite);
  const [primary, rest] = fits ? [older, newer] : [newer, older];
  return [primary[0], primary[1], rest[1]];
}

function pick(v: PairVerdict): Pick<PairResult, "status" | "reason" | "cases"> {
  return { status: v.status, reason: v.reason, cases: v.cases };
}

/** The pair as a table, for the terminal. */
export function formatPair(r: PairResult): string {
  const width = Math.max(10, ...r.cases.map((c) => c.name.length));
  const lines = [`${r.id}: ${r.axes.changes}`, ""];
  for (const c of r.cases) {
    lines.push(`${c.status.padEnd(5)} ${c.name.padEnd(width)}  ${c.message}`);
    const errs = [
      ...(c.dump?.status === "FAIL" ? c.dump.error_lines : []),
      ...(c.restore?.status === "FAIL" ? c.restore.error_lines : []),
    ];
    for (const e of errs.slice(0, 3)) lines.push(`${" ".repeat(width + 8)}${e}`);
  }
  for (const c of r.crit ?? [])
    lines.push(`crit ${c.version} (${c.role === "both" ? "dump and restore" : c.role}): ${c.message}`);
  lines.push("", `pair: ${r.status}${r.reason ? ` (${r.reason})` : ""}, ${r.seconds.toFixed(0)} s`);
  if (r.transfer)
    lines.push(
      `transfer disk: ${r.transfer.disk} (${r.transfer.bytes} bytes, sha256 ${r.transfer.sha256.slice(0, 16)}...)`,
    );
  return lines.join("\n");
}
