/**
 * Every external command goes through here: argv arrays (zx quotes them), a deadline that
 * kills the whole process tree, optional streaming into a log file, and errors that say
 * what ran, how it ended and the tail of its output.
 */
import { $ } from "zx";
import { AsyncLocalStorage } from "node:async_hooks";
import { createWriteStream, type WriteStream } from "node:fs";
import { CommandError } from "./errors.js";
import { interruptHandler } from "./interrupt.js";

/**
 * A branch of work that runs beside another (the cold pipeline's side work beside the kernel
 * compile): its commands can run at the idle CPU priority, and `cancel` stops the ones running and
 * refuses new ones, so a failure in one branch stops the other cleanly.
 */
export class Branch {
  private readonly running = new Set<() => void>();
  private readonly aborter = new AbortController();
  cancelled: string | undefined;
  constructor(
    readonly name: string,
    /** "idle": every command of the branch runs under SCHED_IDLE (see branchArgv). */
    readonly priority: BranchPriority = "normal",
  ) {}

  /** Runs fn with every command it starts (however deep) belonging to this branch. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    return branches.run(this, fn);
  }

  cancel(reason: string): void {
    if (this.cancelled) return;
    this.cancelled = reason;
    for (const kill of this.running) kill();
    this.aborter.abort(new BranchCancelledError(this, ["work"]));
  }

  /** Aborted on cancel: for work that is not a command (a download). */
  get signal(): AbortSignal {
    return this.aborter.signal;
  }

  /** Internal: a command of the branch started. Returns its unregister function. */
  track(kill: () => void): () => void {
    this.running.add(kill);
    return () => this.running.delete(kill);
  }
}

const branches = new AsyncLocalStorage<Branch>();

/** The branch the caller runs in, if any. */
export function currentBranch(): Branch | undefined {
  return branches.getStore();
}

export class BranchCancelledError extends Error {
  constructor(branch: Branch, argv: string[]) {
    super(`${branch.name} stopped before ${argv[0]} ended: ${branch.cancelled}`);
  }
}

export type BranchPriority = "normal" | "idle";

/**
 * The argv a branch runs. "idle": under SCHED_IDLE (`chrt --idle 0`, util-linux), inherited by
 * every child, so it gets a CPU only when nothing else wants it. `nice 10` was not enough: on
 * 2 cores a niced debootstrap still took its weight's share, and the compile beside it ran
 * ~90 s slower.
 */
export function branchArgv(argv: string[], priority: BranchPriority): string[] {
  return priority === "idle" ? ["chrt", "--idle", "0", ...argv] : argv;
}

export interface RunOptions {
  /** Deadline in milliseconds: every command has one. */
  timeoutMs: number;
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string;
  /**
   * Standard input written as it comes, then closed (a guestfish session whose appliance boots
   * while the rest of its script is still being made). Not with `input`.
   */
  stdin?: AsyncIterable<string>;
  /** Append stdout and stderr to this file (the command's full log). */
  logFile?: string;
  /** Called with each complete output line (progress displays). */
  onLine?: (line: string) => void;
  /** Return the result instead of throwing when the exit code is not 0. */
  allowFailure?: boolean;
  /** A hint added to the error on failure. */
  hint?: string;
  /** Checked every `everyMs` while the command runs: a returned reason kills it (e.g. a boot that never started). */
  watch?: { everyMs: number; check: () => string | undefined };
}

export interface RunResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  seconds: number;
  /** Why `watch` stopped the command, if it did. */
  stoppedBy?: string;
}

const TAIL_LINES = 40;

export function tail(text: string, lines = TAIL_LINES): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

export async function run(requested: string[], opts: RunOptions): Promise<RunResult> {
  const branch = branches.getStore();
  if (branch?.cancelled) throw new BranchCancelledError(branch, requested);
  const argv = branchArgv(requested, branch?.priority ?? "normal");
  const [cmd, ...args] = argv;
  const started = Date.now();
  const log: WriteStream | undefined = opts.logFile
    ? createWriteStream(opts.logFile, { flags: "a" })
    : undefined;
  log?.write(`\n$ ${argv.join(" ")}\n`);
  const proc = $({
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    input: opts.input,
    nothrow: true,
    quiet: true,
    verbose: false,
  })`${cmd} ${args}`;
  const onData = outputTo(log, opts.onLine);
  proc.stdout.on("data", onData);
  proc.stderr.on("data", onData);
  if (opts.stdin) void feedStdin(proc.stdin, opts.stdin).catch(() => undefined);
  // Ctrl-C stops this command and what it started (QEMU, make, guestfish).
  const unregister = interruptHandler.child(() => proc.kill("SIGKILL").catch(() => undefined));
  let cancelledBy: string | undefined;
  const untrack = branch?.track(() => {
    cancelledBy = branch.cancelled;
    void proc.kill("SIGKILL").catch(() => undefined);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void proc.kill("SIGKILL").catch(() => undefined);
  }, opts.timeoutMs);
  let stoppedBy: string | undefined;
  const watcher = opts.watch
    ? setInterval(() => {
        if (stoppedBy) return;
        stoppedBy = opts.watch!.check();
        if (stoppedBy) void proc.kill("SIGKILL").catch(() => undefined);
      }, opts.watch.everyMs)
    : undefined;
  const out = await proc;
  unregister();
  untrack?.();
  if (cancelledBy) throw new BranchCancelledError(branch!, requested);
  clearTimeout(timer);
  if (watcher) clearInterval(watcher);
  await new Promise<void>((resolve) => (log ? log.end(resolve) : resolve()));
  const result: RunResult = {
    exitCode: out.exitCode,
    stdout: out.stdout,
    stderr: out.stderr,
    timedOut,
    seconds: (Date.now() - started) / 1000,
    stoppedBy,
  };
  if ((timedOut || stoppedBy || out.exitCode !== 0) && !opts.allowFailure)
    throw commandFailure(argv, out, { timedOut, stoppedBy }, opts);
  return result;
}

/** A command's output goes to its log as it comes, and to `onLine` line by line. */
function outputTo(log: WriteStream | undefined, onLine?: (line: string) => void): (chunk: Buffer) => void {
  let partial = "";
  return (chunk) => {
    log?.write(chunk);
    if (!onLine) return;
    partial += chunk.toString();
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) if (line.trim()) onLine(line);
  };
}

/** The error of a command that failed, ran past its deadline or was stopped: how, and its output's tail. */
function commandFailure(
  argv: string[],
  out: { exitCode: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string },
  how: { timedOut: boolean; stoppedBy?: string },
  opts: RunOptions,
): CommandError {
  const what = how.stoppedBy
    ? `was stopped: ${how.stoppedBy}`
    : how.timedOut
      ? `did not finish within ${Math.round(opts.timeoutMs / 1000)} s and was killed`
      : `exited with code ${out.exitCode}${out.signal ? ` (signal ${out.signal})` : ""}`;
  const output = tail(`${out.stdout}\n${out.stderr}`);
  return new CommandError(
    `command ${what}: ${argv.join(" ")}${opts.logFile ? `\n  full log: ${opts.logFile}` : ""}\n${indent(output)}`,
    argv,
    out.exitCode,
    how.timedOut,
    output,
    opts.hint,
  );
}

/** Writes each chunk as it comes; a command that stopped reading (killed, exited) ends it. */
async function feedStdin(stdin: NodeJS.WritableStream, chunks: AsyncIterable<string>): Promise<void> {
  let closed = false;
  stdin.on("error", () => (closed = true));
  stdin.on("close", () => (closed = true));
  try {
    for await (const chunk of chunks) {
      if (closed) return;
      stdin.write(chunk);
    }
  } finally {
    if (!closed) stdin.end();
  }
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}
