/**
 * Progress display: listr2 tasks, each showing the last line of its log while it runs.
 * On a terminal the default renderer redraws in place; in CI (no TTY) it prints lines.
 */
import { Listr, type ListrTask } from "listr2";

export interface Step<C> {
  title: string;
  /** Skip the step (shown as skipped) when this returns a reason. */
  skip?: (ctx: C) => string | false;
  run: (ctx: C, log: (line: string) => void, setTitle: (title: string) => void) => Promise<void>;
}

const NON_TTY_INTERVAL_MS = 15_000;

export async function runSteps<C extends object>(ctx: C, steps: Step<C>[]): Promise<C> {
  const tasks: ListrTask<C>[] = steps.map((step) => ({
    title: step.title,
    skip: step.skip ? (c: C) => step.skip!(c) : undefined,
    task: async (c, task) => {
      let last = 0;
      await step.run(
        c,
        (line) => {
          // Without a terminal every output line is printed: keep logs readable.
          const now = Date.now();
          if (!process.stdout.isTTY && now - last < NON_TTY_INTERVAL_MS) return;
          last = now;
          task.output = line.length > 160 ? `${line.slice(0, 157)}...` : line;
        },
        (title) => {
          task.title = title;
        },
      );
    },
  }));
  const list = new Listr<C>(tasks, { concurrent: false, exitOnError: true, renderer: "default", fallbackRenderer: "simple" });
  return list.run(ctx);
}
