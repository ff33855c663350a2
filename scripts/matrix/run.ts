/**
 * Running a matrix: every runnable cell through kernel -> image -> boot, each shared stage
 * built once (memoized by its group), builds one at a time (a build uses every core) and
 * boots as many at once as the machine's cores allow. One cell failing never stops the
 * others; a stored cell with the same inputs is kept (resume) unless forced.
 */
import { NoCriuSourceError } from "../criu/stage.js";
import { KernelCannotBootError } from "../kernel/bootable.js";
import { hostname } from "node:os";
import { errorMessage } from "../lib/errors.js";
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { TestStatus } from "../boot/results.js";
import type { RunRecord } from "../boot/stage.js";
import {
  cellTests,
  informationalFor,
  storedCell,
  tailLines,
  writeCell,
  type CellResult,
  type CellStatus,
  type StageTiming,
} from "./cell.js";
import { CELL_SCHEMA, cellStatusOf } from "./cell.js";
import type { MatrixPlan, PlannedCell } from "./spec.js";

/** A weighted semaphore: `run(w, fn)` waits until `w` units of the machine are free. */
export class Capacity {
  private used = 0;
  private readonly waiting: { weight: () => number; go: (w: number) => void }[] = [];
  constructor(readonly total: number) {}

  /** weight: a number, or a function read when the units are granted (fn gets what it was granted). */
  async run<T>(weight: number | (() => number), fn: (granted: number) => Promise<T>): Promise<T> {
    const want = () => Math.min(Math.max(1, typeof weight === "number" ? weight : weight()), this.total);
    let w: number;
    if (this.waiting.length === 0 && this.used + want() <= this.total) this.used += w = want();
    else w = await new Promise<number>((go) => this.waiting.push({ weight: want, go })); // wake() grants it
    try {
      return await fn(w);
    } finally {
      this.used -= w;
      this.wake();
    }
  }

  private wake(): void {
    // First come, first served: a waiting build is not starved by a stream of boots.
    while (this.waiting.length && this.used + this.waiting[0].weight() <= this.total) {
      const next = this.waiting.shift()!;
      const w = next.weight();
      this.used += w;
      next.go(w);
    }
  }
}

/**
 * Pure: the vCPUs of the next boot. Boots still to come share the cores: one vCPU each while
 * there are as many boots as cores (measured here: two 1-vCPU guests side by side finish two
 * cells sooner than two 2-vCPU guests one after the other), the most allowed for the last one.
 */
export function guestVcpus(capacity: number, most: number, bootsToCome: number): number {
  return Math.min(Math.max(1, most), Math.max(1, Math.floor(capacity / Math.max(1, bootsToCome))));
}

export interface KernelOutcome<K> {
  handle: K;
  identity: NonNullable<CellResult["identities"]["kernel"]>;
  cached: boolean;
}

export interface ImageOutcome<I> {
  handle: I;
  criu: NonNullable<CellResult["identities"]["criu"]>;
  image: NonNullable<CellResult["identities"]["image"]>;
  cached: boolean;
}

/** The stages a cell goes through. The real ones are in stages.ts. */
export interface CellStages<K, I> {
  kernel(cell: PlannedCell): Promise<KernelOutcome<K>>;
  image(cell: PlannedCell, kernel: K): Promise<ImageOutcome<I>>;
  /**
   * True when the cell's image stage builds no CRIU (it is cached): what is left, guestfish's
   * appliance and a copy, uses one core, so it takes one unit and overlaps the boots.
   */
  imageIsLight?(cell: PlannedCell): boolean;
  /** The doctor's predictions for this cell's own kernel (an image is shared across kernels). */
  predict?(cell: PlannedCell, kernel: K, image: I): CellResult["predicted"];
  /** The guest run: the same record (results.json) a single run gives. */
  /** vcpus: the guest's share of the machine, picked when the boot starts. */
  boot(cell: PlannedCell, kernel: K, image: I, vcpus?: number): Promise<RunRecord>;
}

export interface MatrixRunOptions<K, I> {
  outDir: string;
  stages: CellStages<K, I>;
  /** Units of the machine (its cores); a build takes all, a boot `bootWeight`. */
  capacity: number;
  bootWeight: number;
  /**
   * A boot takes as many cores as it will run vCPUs (a TCG vCPU is a host thread): with
   * `adaptiveVcpus` each boot gets the machine's cores shared among the boots still to come
   * (at most bootWeight, at least 1), else bootWeight.
   */
  adaptiveVcpus?: boolean;
  force?: boolean;
  /** Progress per cell: the step it is in, and the last log line. */
  onProgress?: (cellId: string, step: string) => void;
  onCellDone?: (cell: CellResult, kept: boolean) => void;
}

export interface MatrixRunSummary {
  cells: CellResult[];
  kept: string[];
  ran: string[];
  /** How many times each kind of stage really ran (not shared): the no-redundant-work proof. */
  stageRuns: { kernel: number; image: number; boot: number };
  seconds: number;
}

/** Memoizes a shared stage by its group id; remembers who started it. */
class SharedStages<T> {
  private readonly started = new Map<string, { owner: string; promise: Promise<T> }>();
  runs = 0;
  get(
    group: string,
    owner: string,
    make: () => Promise<T>,
  ): { shared: boolean; owner: string; promise: Promise<T> } {
    const have = this.started.get(group);
    if (have) return { shared: have.owner !== owner, owner: have.owner, promise: have.promise };
    this.runs++;
    const promise = make();
    this.started.set(group, { owner, promise });
    return { shared: false, owner, promise };
  }
}

function emptySummary(): Record<TestStatus, number> {
  return { PASS: 0, FAIL: 0, SKIP: 0, ERROR: 0 };
}

/** A cell before any stage ran: what it is and when it started. */
export function baseCell(
  matrix: string,
  c: Pick<PlannedCell, "id" | "axes" | "criuVersion" | "patches" | "sets" | "inputsKey">,
  started: Date,
): CellResult {
  return {
    schema: CELL_SCHEMA,
    matrix,
    id: c.id,
    axes: c.axes,
    criu_version: c.criuVersion,
    patches: c.patches,
    sets: c.sets,
    inputs_key: c.inputsKey,
    status: "SKIPPED",
    reason: null,
    failed_stage: null,
    predicted: [],
    identities: {},
    stages: {},
    accel: null,
    tests: [],
    summary: emptySummary(),
    informational: [],
    guest: {},
    console_tail: "",
    paths: {},
    host: hostname(),
    started: started.toISOString(),
    finished: started.toISOString(),
    seconds: 0,
  };
}

/**
 * A guest run into its cell: identities, verdicts, evidence (paths relative to the cache
 * dir, so a cell reads the same on every machine), and the console tail when broken.
 */
export function applyRun(
  cell: CellResult,
  run: RunRecord,
  informational: string[],
  cacheDir: string,
): CellResult {
  const r = run.results;
  const consoleFile = join(run.dir, r.attempts.at(-1)?.console_log ?? "");
  const broken = r.status === "ERROR" || r.summary.FAIL > 0;
  const tests = cellTests(r.tests);
  cell.identities.run = { key: r.run_key };
  Object.assign(cell, {
    accel: r.accel,
    tests,
    summary: r.summary,
    informational,
    guest: r.guest,
    console_tail: broken && existsSync(consoleFile) ? tailLines(readFileSync(consoleFile, "utf8"), 60) : "",
    paths: {
      run_dir: relative(cacheDir, run.dir),
      results: relative(cacheDir, join(run.dir, "results.json")),
      console: relative(cacheDir, consoleFile),
    },
  });
  cell.status = cellStatusOf(r.status, tests, informational);
  cell.reason = r.status === "ERROR" ? r.error : null;
  return cell;
}

/** A stored cell is kept when it ran with the same inputs and was not an infrastructure error. */
export function keepStored(stored: CellResult | undefined, c: PlannedCell, force: boolean): boolean {
  if (!stored || force) return false;
  if (stored.inputs_key !== c.inputsKey) return false;
  if (stored.status === "ERROR") return false;
  // A cell skipped for lack of a source runs once one is given (then its inputs differ anyway).
  return stored.status !== "SKIPPED" || Boolean(c.skip);
}

type Timed<T> = { out: T; seconds: number };

async function timed<T>(fn: () => Promise<T>): Promise<Timed<T>> {
  const s = Date.now();
  const out = await fn();
  return { out, seconds: (Date.now() - s) / 1000 };
}

/** What a matrix run shares between its cells: the machine's units, the shared stages, the counts. */
class MatrixRun<K, I> {
  private readonly machine: Capacity;
  readonly kernels = new SharedStages<Timed<KernelOutcome<K>>>();
  readonly images = new SharedStages<Timed<ImageOutcome<I>>>();
  boots = 0;
  /** The cells still to boot (neither kept nor skipped): they share the cores (guestVcpus). */
  private bootsToCome: number;
  readonly kept: string[] = [];
  readonly ran: string[] = [];
  private readonly progress: (cellId: string, step: string) => void;

  constructor(
    private readonly plan: MatrixPlan,
    cells: PlannedCell[],
    private readonly o: MatrixRunOptions<K, I>,
  ) {
    this.machine = new Capacity(o.capacity);
    this.bootsToCome = cells.filter(
      (c) => !c.skip && !keepStored(storedCell(o.outDir, c.id), c, Boolean(o.force)),
    ).length;
    this.progress = o.onProgress ?? (() => undefined);
  }

  /** One cell: kept when stored with the same inputs, else kernel -> image -> boot, then written. */
  async runCell(c: PlannedCell): Promise<CellResult> {
    const stored = storedCell(this.o.outDir, c.id);
    if (keepStored(stored, c, Boolean(this.o.force))) {
      this.kept.push(c.id);
      this.o.onCellDone?.(stored!, true);
      return stored!;
    }
    this.ran.push(c.id);
    const started = new Date();
    const cell = baseCell(this.plan.spec.name, c, started);
    const finish = (status: CellStatus, reason: string | null = null) =>
      this.finish(c, cell, started, status, reason);
    if (c.skip) return finish("SKIPPED", c.skip);

    let stage: "kernel" | "image" | "boot" = "kernel";
    try {
      const kernel = await this.kernel(c, cell);
      stage = "image";
      const image = await this.image(c, cell, kernel);
      stage = "boot";
      await this.boot(c, cell, kernel, image);
      return finish(cell.status, cell.reason);
    } catch (err) {
      // No provider could serve this CRIU after all (e.g. upstream unreachable): not a build.
      if (err instanceof NoCriuSourceError) return finish("SKIPPED", `${errorMessage(err)}; ${err.hint}`);
      // A kernel that cannot boot the image (a distribution kernel's modules): never booted.
      if (err instanceof KernelCannotBootError) return finish("SKIPPED", errorMessage(err));
      cell.failed_stage = stage;
      // A boot stage that throws (QEMU missing, disk full) is infrastructure, not a build.
      return finish(stage === "boot" ? "ERROR" : "BUILD-FAILED", `${stage}: ${errorMessage(err)}`);
    }
  }

  private async finish(
    c: PlannedCell,
    cell: CellResult,
    started: Date,
    status: CellStatus,
    reason: string | null,
  ): Promise<CellResult> {
    if (!c.skip) this.bootsToCome--;
    cell.status = status;
    cell.reason = reason;
    cell.finished = new Date().toISOString();
    cell.seconds = (Date.now() - started.getTime()) / 1000;
    await writeCell(this.o.outDir, cell);
    this.o.onCellDone?.(cell, false);
    return cell;
  }

  /** The cell's kernel, built once per kernel group with the whole machine. */
  private async kernel(c: PlannedCell, cell: CellResult): Promise<KernelOutcome<K>> {
    this.progress(c.id, "kernel");
    const k = this.kernels.get(c.groups.kernel, c.id, () =>
      this.machine.run(this.o.capacity, () => timed(() => this.o.stages.kernel(c))),
    );
    if (k.shared) this.progress(c.id, `kernel ${c.axes.kernel}: shared with ${k.owner}`);
    const kernel = await k.promise;
    cell.identities.kernel = kernel.out.identity;
    cell.stages.kernel = {
      seconds: kernel.seconds,
      cached: kernel.out.cached,
      shared: k.shared,
    } satisfies StageTiming;
    return kernel.out;
  }

  /** The cell's CRIU and image, built once per image group; a cached CRIU takes one unit only. */
  private async image(c: PlannedCell, cell: CellResult, kernel: KernelOutcome<K>): Promise<ImageOutcome<I>> {
    this.progress(c.id, "CRIU and image");
    const imageWeight = this.o.stages.imageIsLight?.(c) ? 1 : this.o.capacity;
    const im = this.images.get(c.groups.image, c.id, () =>
      this.machine.run(imageWeight, () => timed(() => this.o.stages.image(c, kernel.handle))),
    );
    if (im.shared) this.progress(c.id, `CRIU and image: shared with ${im.owner}`);
    const image = await im.promise;
    cell.identities.criu = image.out.criu;
    cell.identities.image = image.out.image;
    cell.predicted = this.o.stages.predict?.(c, kernel.handle, image.out.handle) ?? [];
    cell.stages.image = { seconds: image.seconds, cached: image.out.cached, shared: im.shared };
    return image.out;
  }

  /** The cell's own boot, when the machine has its share of cores free; its results into the cell. */
  private async boot(
    c: PlannedCell,
    cell: CellResult,
    kernel: KernelOutcome<K>,
    image: ImageOutcome<I>,
  ): Promise<void> {
    const o = this.o;
    this.progress(c.id, "waiting for a boot slot");
    // Adaptive: the share is read when the cores are granted, from the boots still to come then.
    let vcpus = o.bootWeight;
    const boot = await this.machine.run(
      o.adaptiveVcpus ? () => guestVcpus(o.capacity, o.bootWeight, this.bootsToCome) : o.bootWeight,
      (granted) => {
        this.boots++;
        vcpus = granted;
        this.progress(c.id, `boot and test (${vcpus} vCPU${vcpus > 1 ? "s" : ""})`);
        return timed(() =>
          o.stages.boot(c, kernel.handle, image.handle, o.adaptiveVcpus ? vcpus : undefined),
        );
      },
    );
    cell.stages.boot = {
      seconds: boot.seconds,
      cached: boot.out.cached,
      shared: false,
      vcpus: boot.out.results.attempts.at(-1)?.vcpus ?? vcpus,
    };
    applyRun(cell, boot.out, informationalFor(c.config), c.config.cache_dir);
  }
}

export async function runMatrix<K, I>(
  plan: MatrixPlan,
  cells: PlannedCell[],
  o: MatrixRunOptions<K, I>,
): Promise<MatrixRunSummary> {
  const t0 = Date.now();
  const run = new MatrixRun(plan, cells, o);
  const results = await Promise.all(cells.map((c) => run.runCell(c)));
  return {
    cells: results,
    kept: run.kept,
    ran: run.ran,
    stageRuns: { kernel: run.kernels.runs, image: run.images.runs, boot: run.boots },
    seconds: (Date.now() - t0) / 1000,
  };
}
