/**
 * The benches write their latest table into docs/benchmarks.md, between the markers
 * `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`, with the date and the machine
 * (cores, CPU model): a measurement in the docs is always the one the command last wrote,
 * never pasted. Rendering and region replacement are pure; only writeBenchRegion touches files.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeAtomic } from "../lib/fs-atomic.js";
import { UserError } from "../lib/errors.js";
import { REPO_ROOT } from "../lib/paths.js";

export const BENCH_DOC = join(REPO_ROOT, "docs", "benchmarks.md");

export type BenchRow = [label: string, seconds: number, note: string];

export interface Machine {
  cores: number;
  cpuModel: string;
}

/** Cores and CPU model from the text of /proc/cpuinfo. */
export function machineOf(cpuinfo: string): Machine {
  const cores = cpuinfo.split("\n").filter((l) => /^processor\s*:/.test(l)).length;
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim();
  return { cores, cpuModel: model || "unknown CPU model" };
}

export function thisMachine(): Machine {
  return machineOf(readFileSync("/proc/cpuinfo", "utf8"));
}

const cell = (s: string) => s.replace(/\|/g, "\\|");

/** A bench's rows as a Markdown table; a label's leading spaces (its nesting) become "› ". */
export function renderBenchTable(opts: {
  command: string;
  title: string;
  date: Date;
  machine: Machine;
  rows: BenchRow[];
}): string {
  const { command, title, date, machine, rows } = opts;
  const lines = [
    `${title}. Written by \`${command}\` on ${date.toISOString().slice(0, 10)}` +
      ` (${machine.cores} cores, ${machine.cpuModel}).`,
    "",
    "| step | seconds | note |",
    "|---|---:|---|",
  ];
  for (const [label, seconds, note] of rows) {
    const depth = Math.floor((label.length - label.trimStart().length) / 2);
    const name = `${"› ".repeat(depth)}${label.trim()}`;
    lines.push(`| ${cell(name)} | ${Number.isNaN(seconds) ? "-" : seconds.toFixed(1)} | ${cell(note)} |`);
  }
  return lines.join("\n");
}

export function regionMarkers(name: string): [begin: string, end: string] {
  return [`<!-- bench:${name}:begin -->`, `<!-- bench:${name}:end -->`];
}

/** The document with the region NAME's content replaced by `body`; the markers must exist once. */
export function replaceRegion(doc: string, name: string, body: string): string {
  const [begin, end] = regionMarkers(name);
  const b = doc.indexOf(begin);
  const e = doc.indexOf(end);
  if (b < 0 || e < b || doc.indexOf(begin, b + 1) >= 0)
    throw new UserError(
      `no single region '${name}' (${begin} ... ${end}) in the benchmarks document`,
      `add the two marker lines to ${BENCH_DOC}`,
    );
  return `${doc.slice(0, b + begin.length)}\n${body.trimEnd()}\n${doc.slice(e)}`;
}

/** Writes `body` into the region NAME of the document (docs/benchmarks.md by default). */
export async function writeBenchRegion(name: string, body: string, file = BENCH_DOC): Promise<void> {
  await writeAtomic(file, replaceRegion(readFileSync(file, "utf8"), name, body));
}
