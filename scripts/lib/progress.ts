/**
 * Progress display: listr2 tasks, each showing the last line of its log while it runs.
 * On a terminal the default renderer redraws in place; in CI (no TTY) it prints lines.
 *
 * Inside a matrix cell, stages must not draw a display of their own (several cells run at
 * once): `withProgressSink` routes their step titles and log lines to the cell's line
 * instead. AsyncLocalStorage keeps concurrent cells apart.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { Listr, ListrLogger, ProcessOutput, type ListrTask } from "listr2";
import { BranchCancelledError, type Branch } from "./exec.js";
import { runPhase, runPhases, type Phase, type PhaseTiming } from "./phases.js";

/**
 * A phase (lib/phases.ts) with the line it shows: `name` is its timing's name, the title when
 * it has none.
 */
export interface Step<C> extends Omit<Phase<C>, "name"> {
  title: string;
  name?: string;
}

export interface ProgressSink {
  title(title: string): void;
  line(line: string): void;
}

const sinks = new AsyncLocalStorage<ProgressSink>();

export function withProgressSink<T>(sink: ProgressSink, fn: () => Promise<T>): Promise<T> {
  return sinks.run(sink, fn);
}

/** The sink the caller reports to, if it runs inside one (a cell, a concurrent branch). */
export function currentSink(): ProgressSink | undefined {
  return sinks.getStore();
}

const NON_TTY_INTERVAL_MS = 15_000;

/** A log callback that, without a terminal, lets one line through per interval. */
export function throttledOutput(set: (line: string) => void): (line: string) => void {
  let last = 0;
  return (line) => {
    const now = Date.now();
    if (!process.stderr.isTTY && now - last < NON_TTY_INTERVAL_MS) return;
    last = now;
    set(line.length > 160 ? `${line.slice(0, 157)}...` : line);
  };
}

/**
 * Listr options every progress display uses. Progress is never data: it goes to stderr, so
 * stdout stays clean for --json and pipes. Ctrl-C is ours (lib/interrupt.ts): listr2's own
 * handler would exit 127 without a word.
 */
export function listrOnStderr() {
  const logger = () => new ListrLogger({ processOutput: new ProcessOutput(process.stderr, process.stderr) });
  return {
    registerSignalListeners: false,
    renderer: "default",
    fallbackRenderer: "simple",
    rendererOptions: { logger: logger() },
    fallbackRendererOptions: { logger: logger() },
    fallbackRendererCondition: () => !process.stderr.isTTY,
  } as const;
}

/**
 * Runs the steps in order as phases (lib/phases.ts), each a listr2 line, or inside a sink (a
 * matrix cell, a concurrent branch) on the sink's line. A step that took a second or more shows
 * its time in its title. A failing step's error names `opts.stage` and the step. Returns every
 * step's timing.
 */
export async function runSteps<C extends object>(
  ctx: C,
  steps: Step<C>[],
  opts: { stage?: string } = {},
): Promise<PhaseTiming[]> {
  const phases = steps.map((step) => ({ ...step, name: step.name ?? step.title }));
  const sink = sinks.getStore();
  if (sink) {
    const titles = new Map(steps.map((s, i) => [phases[i].name, s.title]));
    return runPhases(ctx, phases, {
      stage: opts.stage,
      log: sink.line,
      setTitle: sink.title,
      started: (name) => sink.title(titles.get(name) ?? name),
    });
  }
  const timings: PhaseTiming[] = [];
  const tasks: ListrTask<C>[] = phases.map((phase) => ({
    title: phase.title,
    task: async (c, task) => {
      const timing = await runPhase(c, phase, timings, {
        stage: opts.stage,
        log: throttledOutput((line) => (task.output = line)),
        setTitle: (title) => (task.title = title),
        ended: (_t, skipped) => skipped && task.skip(skipped),
      });
      if (timing.status === "done" && timing.seconds >= 1)
        task.title = `${task.title} (${timing.seconds.toFixed(1)} s)`;
    },
  }));
  await new Listr<C>(tasks, { concurrent: false, exitOnError: true, ...listrOnStderr() }).run(ctx);
  return timings;
}

export interface ConcurrentBranch {
  title: string;
  branch: Branch;
  run: () => Promise<void>;
}

/**
 * Runs branches at the same time, each with its own line (listr2, concurrent) or, inside a
 * cell, on the cell's line. The first failure cancels the others (their commands are killed,
 * nothing of theirs is cached half-built) and is thrown once every branch has stopped.
 */
export async function runConcurrently(branches: ConcurrentBranch[]): Promise<void> {
  let first: unknown;
  const guarded = (b: ConcurrentBranch) => async () => {
    try {
      await b.branch.run(b.run);
    } catch (err) {
      if (first === undefined && !(err instanceof BranchCancelledError)) {
        first = err;
        for (const other of branches) if (other !== b) other.branch.cancel(`${b.title} failed`);
      }
      throw err;
    }
  };
  const sink = sinks.getStore();
  if (sink) {
    await Promise.allSettled(branches.map((b) => guarded(b)()));
  } else {
    const tasks: ListrTask<object>[] = branches.map((b) => ({
      title: b.title,
      task: async (_c, task) => {
        const own: ProgressSink = {
          title: (t) => (task.title = `${b.title}: ${t}`),
          line: throttledOutput((l) => (task.output = l)),
        };
        await withProgressSink(own, guarded(b));
        task.title = b.title;
      },
    }));
    // exitOnError false: listr waits for every branch; the error is ours to throw.
    await new Listr<object>(tasks, { concurrent: true, exitOnError: false, ...listrOnStderr() }).run({});
  }
  if (first !== undefined) throw first;
}
