/** Runs the real CLI as a user would, with a deadline, on the run's cache (never images/). */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { COMMANDS } from "../../scripts/cli.js";
import { run, type RunResult } from "../../scripts/lib/exec.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { findInPath } from "../../scripts/lib/host-tools.js";
import { testCacheDir } from "./test-cache.js";

export const CLI = join(REPO_ROOT, "bin", "cr-guest");

/**
 * The arguments with `--cache-dir <the run's cache>` added to a command that takes it, unless
 * the test names a cache itself. A command without it (report, compare) writes only where told.
 */
export function withTestCache(args: string[]): string[] {
  const own = args.some(
    (a) => a === "--cache-dir" || a.startsWith("--cache-dir=") || a.startsWith("cache_dir="),
  );
  if (own || !COMMANDS[args[0]]?.flags.includes("cache-dir")) return args;
  return [...args, "--cache-dir", testCacheDir()];
}

/**
 * cr-guest with `args` on the run's cache. It runs in the run's temporary directory: a relative
 * default (report merge's --out) lands there, never in the checkout.
 */
export function crGuest(
  args: string[],
  timeoutMs = 120_000,
  env: Record<string, string> = {},
): Promise<RunResult> {
  return run([CLI, ...withTestCache(args)], { timeoutMs, allowFailure: true, cwd: tmpdir(), env });
}

/**
 * Why a test cannot run here, printed; with CI=true a thrown error instead: in CI nothing is
 * skipped for want of an input.
 */
export function unavailable(reason: string): string {
  if (process.env.CI === "true") throw new Error(`${reason} (CI=true: a missing input fails the run)`);
  console.warn(`skipping: ${reason}`);
  return reason;
}

/**
 * Integration tests need real tools. In CI a missing tool is a failure; elsewhere the test
 * is skipped with the reason printed.
 */
export function missingTools(tools: string[]): string | undefined {
  const missing = tools.filter((t) => !findInPath(t));
  if (missing.length === 0) return undefined;
  return unavailable(`missing host tools: ${missing.join(", ")} (run 'make setup')`);
}
