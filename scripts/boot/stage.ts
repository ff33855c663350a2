/**
 * The boot-and-test stage: kernel + image -> one QEMU run with a results disk -> results.json.
 * The image is attached copy-on-write (snapshot=on), so runs never change it. Infrastructure
 * failures (QEMU error, boot timeout, panic/oops, no end marker, unreadable results) are
 * ERROR, retried, and never reported as CRIU failures. Output: images/runs/<key>/.
 */
import { repoData } from "../data/repo-data.js";
import type { z } from "zod";
import type { RunResultsSchema } from "../lib/output-schemas.js";
import { existsSync, readFileSync } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { CriuStageResult } from "../criu/stage.js";

import type { ImageResult } from "../image/stage.js";
import { ArtifactCache } from "../lib/cache.js";
import type { PipelineConfig } from "../lib/config.js";
import { cacheKey, sha256 } from "../lib/hash.js";
import { fromPhase, runPhases, type Phase, type PhaseLog, type PhaseTiming } from "../lib/phases.js";
import { bootVm, type Accel, type BootResult } from "../lib/qemu.js";
import { diagnoseRun, fixFragments } from "./causes.js";
import { createResultsDisk, readResultsDisk } from "./results-disk.js";
import { parseKeyValues, readTestRecords, RESULTS_SCHEMA, summarize, type TestRecord } from "./results.js";
import type { TestSelection } from "./test-selection.js";
import { runInput } from "./run-input.js";
import { copyTransferDisk, createTransferDisk, verifyTransferDisk } from "./transfer-disk.js";
import { loadScenarios } from "../data/scenarios.js";
import type { KernelRef } from "../kernel/result.js";
import {
  GUEST_CLOCK_PREFIX,
  GUEST_END_MARKER,
  GUEST_INIT,
  GUEST_STARTED_MARKER,
} from "../lib/guest-contract.js";

// 2: the guest sees every vCPU (one socket each; with -smp N alone it saw one) and runs its
// scenarios side by side. 3: the guest has a virtio-rng device, as Kata's have.
export const RUN_RECIPE_VERSION = 3;

export { GUEST_END_MARKER, GUEST_INIT, GUEST_STARTED_MARKER };

export interface Attempt {
  status: BootResult["status"] | "results-unreadable";
  reason: string;
  seconds: number;
  /** QEMU start to the guest init's first line. */
  boot_seconds: number | null;
  /** Host preparing the results disk; QEMU start to the end marker; host reading the results. */
  prepare_seconds?: number;
  /** The guest's vCPUs in this attempt. */
  vcpus?: number;
  /** The guest's clock marks (uptime at each), from the console. */
  guest_clock?: GuestMark[];
  end_seconds?: number | null;
  read_seconds?: number;
  console_log: string;
}

/** results.json: one guest run (the schema is in lib/output-schemas.ts). */
export type RunResults = z.infer<typeof RunResultsSchema>;

/** A guest run of record (or the attempt that failed) and where its evidence is. */
export interface RunRecord {
  dir: string;
  cached: boolean;
  results: RunResults;
  /** This call's phases, each timed (none for a run of record found in the cache). */
  phases?: PhaseTiming[];
}

export interface RunOptions {
  kernel: KernelRef;
  image: ImageResult;
  criu: CriuStageResult;
  accel: Accel;
  /** The disks' bus: NVMe for a kernel that builds only that in. */
  bus?: "virtio" | "nvme";
  force?: boolean;
  log?: (line: string) => void;
  /** More run.conf assignments (a migration's PHASE, MIGRATE, CRIU_DUMP, CRIU_RESTORE). */
  conf?: Record<string, string>;
  /**
   * A migration's transfer disk: boot A gets a blank one and keeps what it wrote as
   * <run>/transfer.img; each attempt of boot B gets a fresh copy of `readFrom`.
   */
  transfer?: { mode: "write" } | { mode: "read"; readFrom: string };
  /** One test and its gate (smoke --test): part of the run's input, so of its key. */
  only?: TestSelection;
  /**
   * The guest's vCPUs for this boot (at most boot.cpus): a matrix picks them from the host's
   * free cores. Not part of the run key: boot.cpus, the most a run may get, is.
   */
  vcpus?: number;
}

/** How many CPUs a sysfs list such as "0-1,3" names (undefined when there is none). */
export function onlineCpus(list: string | undefined): number | undefined {
  if (!list || !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(list.trim())) return undefined;
  return list
    .trim()
    .split(",")
    .reduce((n, r) => {
      const [a, b] = r.split("-").map(Number);
      return n + (b === undefined ? 1 : b - a + 1);
    }, 0);
}

/** The kernel command line: root by PARTUUID for our images, by partition for existing ones. */
export function kernelCommandLine(
  image: ImageResult,
  extra: string[] = [],
  bus: "virtio" | "nvme" = "virtio",
): string[] {
  const m = image.metadata;
  const device =
    bus === "nvme"
      ? m.root.device.replace(/^\/dev\/sda(\d+)$/, "/dev/nvme0n1p$1")
      : m.root.device.replace("/dev/sda", "/dev/vda");
  const root = m.root.partuuid ? `root=PARTUUID=${m.root.partuuid}` : `root=${device}`;
  return [root, "rw", "rootwait", `init=${GUEST_INIT}`, "quiet", "loglevel=4", ...extra];
}

/**
 * plan (inputs and run key) -> the run of record when it is complete -> else boot attempts with
 * retry (each: results disk, QEMU, read back) -> collect the guest's records -> results.json,
 * promoted to the run of record when complete.
 */
export async function runBootTests(config: PipelineConfig, o: RunOptions): Promise<RunRecord> {
  const plan = planRun(config, o);
  // Only complete runs count as cached: an ERROR run is tried again.
  const hit = await plan.cache.lookup<RunResults>("runs", plan.key);
  if (hit && hit.metadata.status === "COMPLETE" && !o.force)
    return { dir: hit.dir, cached: true, results: diagnosed(config, o, asResults(hit.metadata)) };

  // Every run goes into an attempt directory of its own; only a complete one replaces the
  // run of record, so a forced rerun that dies never takes the last good evidence with it.
  const attemptDirs = new ArtifactCache(join(plan.cache.root, "runs"));
  const phases: PhaseTiming[] = [];
  const art = await attemptDirs.getOrBuild<RunResults>(`${plan.key}.attempts`, attemptStamp(), (tmp) =>
    makeRun(plan, tmp, phases),
  );
  const results = diagnosed(config, o, asResults(art.metadata));
  await writeFile(join(art.dir, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  const dir = await promoteRun(join(plan.cache.root, "runs"), plan.key, art.dir, results.status);
  return { dir, cached: false, results, phases };
}

/**
 * The run with the causes of its failures, held against its own kernel's .config: computed on
 * every return, cached or fresh, so the run key and the cache never depend on it.
 */
function diagnosed(config: PipelineConfig, o: RunOptions, results: RunResults): RunResults {
  const fragments = fixFragments(config.fragment_sets[config.kernel.fragment_set] ?? []);
  return diagnoseRun(results, join(o.kernel.dir, "config"), fragments);
}

/** What a run boots, with what input, and its key: decided before anything boots. */
export interface RunPlan {
  config: PipelineConfig;
  o: RunOptions;
  log: PhaseLog;
  cache: ArtifactCache;
  criu: CriuStageResult["metadata"];
  input: ReturnType<typeof runInput>;
  /** The guest's vCPUs: o.vcpus within 1..boot.cpus. */
  vcpus: number;
  append: string[];
  tries: number;
  key: string;
}

/** What a run's key is made of: the kernel, the image, the guest's input and the machine. */
export interface RunIdentity {
  kernelKey: string;
  requested: RunOptions["kernel"]["requested"];
  image: RunOptions["image"];
  criu: RunOptions["criu"]["metadata"];
  bus?: RunOptions["bus"];
  transfer?: RunOptions["transfer"];
  conf?: RunOptions["conf"];
  only?: RunOptions["only"];
}

/** A run's input, command line and key; the dry-run planner computes the same through this. */
export function runIdentity(config: PipelineConfig, r: RunIdentity) {
  const input = runInput({
    criuVersion: r.criu.version,
    patches: r.criu.patches.map((p) => p.name),
    catalog: repoData().criu,
    requirements: repoData().kernelRequirements,
    requested: r.requested,
    scenarios: loadScenarios(config.boot.scenarios),
    testTimeoutSeconds: config.boot.test_timeout_seconds,
    scenarioJobs: config.boot.scenario_jobs,
    conf: r.conf,
    only: r.only,
  });
  const transferRecord = r.transfer?.mode === "read" ? verifyTransferDisk(r.transfer.readFrom) : undefined;
  const append = kernelCommandLine(r.image, config.boot.kernel_args, r.bus);
  const key = cacheKey({
    kernel: r.kernelKey,
    image: basename(r.image.dir),
    input: Object.fromEntries(Object.entries(input.files).map(([k, v]) => [k, sha256(v)])),
    memory: config.boot.memory_mib,
    cpus: config.boot.cpus,
    append,
    // Only a non-default bus is part of the key, so earlier runs keep their keys.
    ...(r.bus === "nvme" ? { bus: r.bus } : {}),
    ...(r.transfer ? { transfer: transferRecord ? { read: transferRecord.sha256 } : "write" } : {}),
    recipe: RUN_RECIPE_VERSION,
  });
  return { input, append, key };
}

export function planRun(config: PipelineConfig, o: RunOptions): RunPlan {
  const criu = o.criu.metadata;
  const { input, append, key } = runIdentity(config, {
    kernelKey: o.kernel.key,
    requested: o.kernel.requested,
    image: o.image,
    criu,
    bus: o.bus,
    transfer: o.transfer,
    conf: o.conf,
    only: o.only,
  });
  return {
    config,
    o,
    log: o.log ?? (() => undefined),
    cache: new ArtifactCache(config.cache_dir),
    criu,
    input,
    vcpus: Math.min(Math.max(1, o.vcpus ?? config.boot.cpus), config.boot.cpus),
    append,
    tries: 1 + Math.max(0, config.boot.retries),
    key,
  };
}

/** A run being made, in its attempt directory. */
interface RunBuild {
  readonly tmp: string;
  attempts: Attempt[];
  /** Where the complete attempt's results disk was unpacked. */
  out?: string;
  tests: TestRecord[];
  guest: Record<string, string>;
}

/** Boots (with retry) and collects in the attempt directory `tmp`; each phase's timing goes to `phases`. */
async function makeRun(plan: RunPlan, tmp: string, phases: PhaseTiming[]): Promise<RunResults> {
  const t0 = Date.now();
  const run: RunBuild = { tmp, attempts: [], tests: [], guest: {} };
  await runPhases(run, [attemptsPhase(plan), collectPhase(plan)], {
    stage: "boot",
    log: plan.log,
    ended: (timing) => phases.push(timing),
  });
  return runResults(plan, run, (Date.now() - t0) / 1000);
}

/** Boots until one attempt brings results back, at most `tries` times. */
function attemptsPhase(plan: RunPlan): Phase<RunBuild> {
  return {
    name: "attempts",
    run: async (run, log) => {
      for (let i = 1; i <= plan.tries && !run.out; i++) {
        const { attempt, out } = await bootAttempt(plan, run.tmp, i, log);
        run.attempts.push(attempt);
        run.out = out;
      }
      await rm(join(run.tmp, "scratch"), { recursive: true, force: true });
      for (let i = 1; i <= plan.tries; i++) await rm(join(run.tmp, `transfer-${i}.img`), { force: true });
    },
  };
}

/**
 * One attempt: a fresh results disk (and transfer disk), one QEMU run, the results read back.
 * `out` is where they are when the attempt is complete.
 */
async function bootAttempt(
  plan: RunPlan,
  tmp: string,
  i: number,
  log: PhaseLog,
): Promise<{ attempt: Attempt; out?: string }> {
  const { config, o } = plan;
  const disk = join(tmp, `results-${i}.img`);
  const tPrepare = Date.now();
  await createResultsDisk(disk, plan.input.files, join(tmp, "scratch"));
  const prepare_seconds = (Date.now() - tPrepare) / 1000;
  const transferDisk = join(tmp, `transfer-${i}.img`);
  if (o.transfer?.mode === "write") await createTransferDisk(transferDisk);
  if (o.transfer?.mode === "read") await copyTransferDisk(o.transfer.readFrom, transferDisk);
  const consoleLog = join(tmp, `console-${i}.log`);
  log(`boot ${i}/${plan.tries} (${o.accel}, deadline ${config.boot.deadline_minutes} min)`);
  const boot = await bootVm({
    kernel: join(o.kernel.dir, "vmlinuz"),
    drives: [
      { path: o.image.image, snapshot: true },
      { path: disk },
      ...(o.transfer ? [{ path: transferDisk }] : []),
    ],
    append: plan.append,
    bus: o.bus,
    memoryMiB: config.boot.memory_mib,
    cpus: plan.vcpus,
    accel: o.accel,
    timeoutMs: config.boot.deadline_minutes * 60_000,
    consoleLog,
    endMarker: GUEST_END_MARKER,
    started: { marker: GUEST_STARTED_MARKER, timeoutMs: config.boot.boot_timeout_seconds * 1000 },
  });
  const marks = existsSync(consoleLog) ? parseGuestClock(readFileSync(consoleLog, "utf8")) : [];
  const record = {
    seconds: boot.seconds,
    boot_seconds: boot.startedAfter ?? null,
    prepare_seconds,
    end_seconds: boot.endedAfter ?? null,
    vcpus: plan.vcpus,
    ...(marks.length ? { guest_clock: marks } : {}),
  };
  const console_log = `console-${i}.log`;
  if (boot.status !== "ok") {
    log(`attempt ${i}: ${boot.status}: ${boot.reason}`);
    await rm(disk, { force: true });
    await rm(transferDisk, { force: true });
    return { attempt: { status: boot.status, reason: boot.reason, ...record, console_log } };
  }
  const out = join(tmp, "out");
  await rm(out, { recursive: true, force: true });
  const tRead = Date.now();
  const read = await readResultsDisk(disk, out);
  await rm(disk, { force: true });
  const read_seconds = (Date.now() - tRead) / 1000;
  if (!read.ok)
    return {
      attempt: { status: "results-unreadable", reason: read.reason, ...record, read_seconds, console_log },
    };
  if (o.transfer?.mode === "write") await rename(transferDisk, join(tmp, "transfer.img"));
  return { attempt: { status: "ok", reason: boot.reason, ...record, read_seconds, console_log }, out };
}

/** The complete attempt's test records and what the guest said about itself. */
function collectPhase(plan: RunPlan): Phase<RunBuild> {
  return {
    name: "collect",
    skip: (run) => (run.out ? false : "no attempt brought results back"),
    run: async (run, log) => {
      const out = fromPhase(run.out, "the unpacked results");
      run.tests = readTestRecords(out, run.tmp);
      const info = (name: string) => {
        const file = join(out, "info", name);
        return existsSync(file) ? parseKeyValues(readFileSync(file, "utf8")) : undefined;
      };
      run.guest = info("guest.txt") ?? {};
      const online = onlineCpus(run.guest.cpus_online);
      if (online !== undefined && online < plan.vcpus)
        log(
          `warning: the guest saw ${online} of its ${plan.vcpus} vCPUs (cpus_online=${run.guest.cpus_online}): its scenarios and checks ran with fewer workers`,
        );
      // A migration boot's transfer disk, as the guest saw it (status=read|unreadable|written|unwritten).
      for (const [k, v] of Object.entries(info("transfer.txt") ?? {})) run.guest[`transfer_${k}`] = v;
    },
  };
}

/** results.json of a run: COMPLETE when its last attempt brought results back. */
function runResults(plan: RunPlan, run: RunBuild, seconds: number): RunResults {
  const { o, criu, input } = plan;
  const last = run.attempts.at(-1)!;
  const complete = last.status === "ok";
  const agent = o.image.metadata.agent;
  return {
    schema: RESULTS_SCHEMA,
    run_key: plan.key,
    status: complete ? "COMPLETE" : "ERROR",
    error: complete ? null : `${last.status}: ${last.reason}`,
    accel: o.accel,
    attempts: run.attempts,
    identities: {
      kernel: {
        key: o.kernel.key,
        version: o.kernel.version,
        release: o.kernel.release ?? null,
        config_sha256: o.kernel.config_sha256,
      },
      criu: {
        version: criu.version,
        sha256: criu.criu.sha256,
        provider: criu.provider,
        link: criu.link,
        patches: criu.patches.map((p) => p.name),
      },
      agent: agent
        ? { sha256: agent.sha256, kata_version: agent.kata_version, setsid: agent.setsid_after }
        : null,
      image: { key: basename(o.image.dir), base: o.image.manifest.base },
    },
    expectations: input.expectations,
    scenarios: input.scenarios.map((s) => ({ name: s.name, about: s.about })),
    guest: run.guest,
    tests: run.tests,
    summary: summarize(run.tests),
    seconds,
    created: new Date().toISOString(),
  };
}

/** results.json is the run as its schema says: without the cache's own metadata (cache_key). */
function asResults(metadata: RunResults & { cache_key?: string }): RunResults {
  const { cache_key: _key, ...results } = metadata;
  return results;
}

/** A sortable, unique name for one attempt directory. */
function attemptStamp(): string {
  return `${new Date().toISOString().replace(/[:.]/g, "-")}-${process.pid}`;
}

/**
 * Makes a finished attempt the run of record (`<runs>/<key>`) when it is COMPLETE; the one it
 * replaces moves into `<key>.attempts/` as superseded. An ERROR attempt stays where it is and
 * the run of record (an earlier complete run, if any) is kept. Returns where the attempt is now.
 */
export async function promoteRun(
  runsRoot: string,
  key: string,
  attemptDir: string,
  status: RunResults["status"],
): Promise<string> {
  if (status !== "COMPLETE") return attemptDir;
  const record = join(runsRoot, key);
  if (existsSync(record))
    await rename(record, join(runsRoot, `${key}.attempts`, `superseded-${attemptStamp()}`));
  await rename(attemptDir, record);
  return record;
}

export interface GuestMark {
  mark: string;
  uptime: number;
}

/** Pure: the guest's clock marks in a console log, in order. */
export function parseGuestClock(console: string): GuestMark[] {
  const out: GuestMark[] = [];
  for (const line of console.split("\n")) {
    const at = line.indexOf(GUEST_CLOCK_PREFIX);
    if (at < 0) continue;
    const m = /^(\S+) (\d+(?:\.\d+)?)\s*$/.exec(line.slice(at + GUEST_CLOCK_PREFIX.length));
    if (m) out.push({ mark: m[1], uptime: Number(m[2]) });
  }
  return out;
}

const SPAN_START = "scenario:";
const SPAN_END = "scenario-done:";

/** What the time from one guest mark to the next was spent on. */
function markPhase(mark: string): string {
  if (mark.startsWith(SPAN_START)) return `guest: scenario ${mark.slice(SPAN_START.length)}`;
  const names: Record<string, string> = {
    init: "guest: set-up (mounts, input disk)",
    checks: "guest: criu --version, criu check, check --all",
    features: "guest: the --feature checks",
    ptrace: "guest: ptrace checks, kernel config",
    scenarios: "guest: the scenarios",
    "tests-done": "guest: end of the tests to packing",
    transfer: "guest: transfer disk written",
    packing: "guest: results packed and written",
    written: "guest: sync to the end marker",
  };
  return names[mark] ?? `guest: ${mark}`;
}

/**
 * The timeline of a complete run (pure): where the time from QEMU start to the results
 * in hand goes. With the guest's marks, the guest's part splits into set-up, checks, each
 * scenario and packing; without them (older runs) into the tests' own clocks and the rest.
 */
export function runTimeline(r: RunResults): { phase: string; seconds: number | null }[] {
  const a = r.attempts.at(-1);
  if (!a) return [];
  const tests = r.tests.reduce((n, t) => n + t.seconds, 0);
  const end = a.end_seconds ?? null;
  const boot = a.boot_seconds;
  const marks = a.guest_clock ?? [];
  const guest: { phase: string; seconds: number | null }[] = [];
  if (marks.length && end !== null && boot !== null) {
    // The init mark is taken as the guest init's first line appears (boot_seconds on the host's clock).
    const hostAt = (m: GuestMark) => boot + (m.uptime - marks[0].uptime);
    // Scenarios that ran side by side mark their start and end (scenario:X, scenario-done:X):
    // spans within the "scenarios" phase, listed under it. A start without an end (a run
    // from before the pool) is a phase of its own, as it was then.
    const ends = new Map(
      marks.filter((m) => m.mark.startsWith(SPAN_END)).map((m) => [m.mark.slice(SPAN_END.length), m]),
    );
    const spanOf = (m: GuestMark) =>
      m.mark.startsWith(SPAN_START) ? ends.get(m.mark.slice(SPAN_START.length)) : undefined;
    const phases = marks.filter((m) => !m.mark.startsWith(SPAN_END) && !spanOf(m));
    phases.forEach((m, i) => {
      guest.push({
        phase: markPhase(m.mark),
        seconds: Math.max(0, (i + 1 < phases.length ? hostAt(phases[i + 1]) : end) - hostAt(m)),
      });
      if (m.mark === "scenarios")
        for (const s of marks.filter((x) => spanOf(x)))
          guest.push({
            phase: `  ${markPhase(s.mark)} (side by side)`,
            seconds: Math.max(0, spanOf(s)!.uptime - s.uptime),
          });
    });
  } else {
    guest.push({ phase: "tests (sum of each test's clock)", seconds: tests });
    guest.push({
      phase: "guest outside tests (set-up, collecting, packing)",
      seconds: end !== null && boot !== null ? Math.max(0, end - boot - tests) : null,
    });
  }
  return [
    { phase: "host: results disk prepared", seconds: a.prepare_seconds ?? null },
    { phase: "QEMU start to guest init", seconds: boot },
    ...guest,
    {
      phase: "end marker to QEMU exit (power-off)",
      seconds: end !== null ? Math.max(0, a.seconds - end) : null,
    },
    { phase: "host: results read", seconds: a.read_seconds ?? null },
    { phase: "whole run (host clock)", seconds: r.seconds },
  ];
}

/** A plain-text table of a run, for the terminal; the judged summary line is the caller's (verdicts.ts). */
export function formatRun(r: RunResults): string {
  if (r.status === "ERROR")
    return `ERROR (infrastructure, not a CRIU result): ${r.error}\nattempts: ${r.attempts.map((a) => `${a.status} after ${a.seconds.toFixed(0)} s`).join("; ")}`;
  const width = Math.max(...r.tests.map((t) => t.name.length), 10);
  const lines = r.tests.map((t) => {
    const main = `${t.status.padEnd(5)} ${t.name.padEnd(width)} ${t.seconds.toFixed(1).padStart(6)}s  ${t.message}`;
    const errs =
      t.status === "FAIL" ? t.error_lines.slice(0, 3).map((e) => `${" ".repeat(width + 16)}${e}`) : [];
    const cause = t.cause ? [`${" ".repeat(width + 16)}diagnosis: ${t.cause.text}`] : [];
    return [main, ...errs, ...cause].join("\n");
  });
  return [...lines, "", `guest kernel ${r.guest.kernel ?? "?"}, ${r.accel}, ${r.seconds.toFixed(0)} s`].join(
    "\n",
  );
}
