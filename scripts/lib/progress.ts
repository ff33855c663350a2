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

export async function runSteps<C extends object>(ctx: C, steps: Step<C>[]): Promise<C> {
  const tasks: ListrTask<C>[] = steps.map((step) => ({
    title: step.title,
    skip: step.skip ? (c: C) => step.skip!(c) : undefined,
    task: async (c, task) => {
      await step.run(
        c,
        (line) => {
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
