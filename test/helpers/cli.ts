/** Runs the real CLI as a user would, with a deadline. */
import { run, type RunResult } from "../../scripts/lib/exec.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { findInPath } from "../../scripts/lib/host-tools.js";
import { join } from "node:path";

export const CLI = join(REPO_ROOT, "bin", "cr-guest");

export function crGuest(
  args: string[],
  timeoutMs = 120_000,
  env: Record<string, string> = {},
): Promise<RunResult> {
  return run([CLI, ...args], { timeoutMs, allowFailure: true, cwd: REPO_ROOT, env });
}

/**
 * Integration tests need real tools. In CI a missing tool is a failure; elsewhere the test
 * is skipped with the reason printed.
 */
export function missingTools(tools: string[]): string | undefined {
  const missing = tools.filter((t) => !findInPath(t));
  if (missing.length === 0) return undefined;
  const reason = `missing host tools: ${missing.join(", ")} (run 'make setup')`;
  if (process.env.CI === "true") throw new Error(reason);
  console.warn(`skipping: ${reason}`);
  return reason;
}
