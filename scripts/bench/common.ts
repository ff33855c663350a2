/** Benchmarks run the real CLI, as a user would, and print a table of what they measured. */
import { runTimeline, type RunResults } from "../boot/stage.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../lib/exec.js";
import { REPO_ROOT } from "../lib/paths.js";
import { renderBenchTable, thisMachine, writeBenchRegion } from "./doc-table.js";

export const CLI_PATH = join(REPO_ROOT, "bin", "cr-guest");

export type Row = [label: string, seconds: number, note: string];

export class Bench {
  readonly rows: Row[] = [];

  /** Runs the CLI, records its wall time, returns its stdout. CI is unset: no integration gating. */
  async cli(
    label: string,
    args: string[],
    env: Record<string, string> = {},
    note = "",
    timeoutMs = 90 * 60_000,
  ): Promise<string> {
    const t0 = Date.now();
    const r = await run([CLI_PATH, ...args], { timeoutMs, env: { ...env, CI: "" }, allowFailure: true });
    const seconds = (Date.now() - t0) / 1000;
    if (r.exitCode !== 0 && r.exitCode !== 1)
      throw new Error(`${label} failed (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
    this.rows.push([label, seconds, note]);
    console.error(`${label}: ${seconds.toFixed(1)} s`);
    return r.stdout;
  }

  add(label: string, seconds: number | null | undefined, note = ""): void {
    this.rows.push([label, seconds ?? NaN, note]);
  }

  print(title: string): void {
    console.log(`\n${title}`);
    for (const [label, seconds, note] of this.rows)
      console.log(
        `  ${label.padEnd(44)} ${Number.isNaN(seconds) ? "      -" : seconds.toFixed(1).padStart(7)} s  ${note}`,
      );
  }

  /** The table, dated and with the machine, into its region of docs/benchmarks.md. */
  async publish(region: string, command: string, title: string): Promise<void> {
    const body = renderBenchTable({
      command,
      title,
      date: new Date(),
      machine: thisMachine(),
      rows: this.rows,
    });
    await writeBenchRegion(region, body);
    console.error(`table written to docs/benchmarks.md (${region})`);
  }
}

/** The metadata.json named by a "metadata: PATH" line of the CLI's output. */
export function metadataFrom<T>(stdout: string, label = "metadata"): T {
  const m = new RegExp(`${label}: (\\S+)`).exec(stdout);
  if (!m) throw new Error(`no '${label}:' line in:\n${stdout}`);
  return JSON.parse(readFileSync(m[1], "utf8")) as T;
}

export async function cpuCount(): Promise<string> {
  return (await run(["nproc"], { timeoutMs: 5000 })).stdout.trim();
}

/** A guest run's per-phase clock as bench rows, each with its share of the whole run. */
export function addPhases(bench: Bench, results: RunResults, indent: string): void {
  for (const p of runTimeline(results))
    bench.add(
      `${indent}${p.phase}`,
      p.seconds,
      p.seconds !== null ? `${((100 * p.seconds) / results.seconds).toFixed(0)}%` : "not measured",
    );
}
