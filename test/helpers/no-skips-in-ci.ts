/**
 * With CI=true a skipped test fails the run, naming it: CI proves every test, and a test that
 * skips for want of a tool or an input (../shared, a mirror) would otherwise pass unseen. The
 * helpers that decide a skip (missingTools, missingTarballs) already throw in CI; this catches
 * any skip they do not decide. (Running a subset under CI=true, `-t` or a file, marks the rest
 * skipped too: run subsets without CI=true.)
 */
import { relative } from "node:path";
import type { Reporter, TestModule } from "vitest/node";

export class NoSkipsInCi implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const skipped = modules.flatMap((m) =>
      [...m.children.allTests()]
        .filter((t) => t.result().state === "skipped")
        .map((t) => `${relative(process.cwd(), m.moduleId)}: ${t.fullName}`),
    );
    if (skipped.length === 0) return;
    console.error(`\nCI=true: a skipped test fails the run; skipped (${skipped.length}):`);
    for (const s of skipped) console.error(`  ${s}`);
    process.exitCode = 1;
  }
}
