/**
 * One matrix cell's result (cell.json): its inputs, the identities of what it built and
 * booted, stage timings, and each test's status with its evidence. A cell is the unit that
 * is stored, resumed, merged across machines and compared between reports.
 */
import { writeAtomic } from "../lib/fs-atomic.js";
import type { z } from "zod";
import {
  CELL_SCHEMA_VERSION,
  CELL_STATUSES,
  parseOutput,
  type CellResultSchema,
  type CellTestSchema,
} from "../lib/output-schemas.js";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { TestRecord } from "../boot/results.js";
import { kernelConfigOf, withCauses, type TestCause } from "../boot/causes.js";
import type { Fragment } from "../data/fragments.js";
import { repoData } from "../data/repo-data.js";
import { loadScenarios, observedTests } from "../data/scenarios.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";

export const CELL_SCHEMA = CELL_SCHEMA_VERSION;

/**
 * PASS/FAIL: the guest run completed (FAIL: some test failed: a CRIU result).
 * ERROR: infrastructure (boot timeout, panic, QEMU), never a CRIU result.
 * BUILD-FAILED: a stage before the boot failed (kernel, CRIU, image).
 * SKIPPED: the cell cannot run here (e.g. no source for that CRIU version).
 */
export type CellStatus = (typeof CELL_STATUSES)[number];

export interface StageTiming {
  seconds: number;
  /** Found in the artifact cache (nothing built). */
  cached: boolean;
  /** Another cell of this run built it first (this cell waited for it). */
  shared: boolean;
  /** A boot: the guest's vCPUs. */
  vcpus?: number;
}

/** A guest test as a cell keeps it: the run's record without its log paths (the page embeds the evidence). */
export type CellTest = z.infer<typeof CellTestSchema>;

/** cell.json: one matrix cell (the schema is in lib/output-schemas.ts). */
export type CellResult = z.infer<typeof CellResultSchema>;

const DIAG_MAX = 4000;

export function cellTests(tests: TestRecord[]): CellTest[] {
  return tests.map((t) => ({
    name: t.name,
    status: t.status,
    seconds: t.seconds,
    exit_code: t.exit_code,
    message: t.message,
    ...(t.outcome ? { outcome: t.outcome } : {}),
    error_lines: t.error_lines,
    ...(t.diagnostics
      ? {
          diagnostics:
            t.diagnostics.length > DIAG_MAX ? `${t.diagnostics.slice(0, DIAG_MAX)}\n[...]` : t.diagnostics,
        }
      : {}),
    ...(t.cause ? { cause: t.cause } : {}),
  }));
}

/**
 * Tests that are reported but never decide a cell: `criu check --all` and each `--feature`
 * fail on every setup for reasons unrelated to the cell (apparmor, nftables, loginuid).
 */
export const INFORMATIONAL_TESTS = ["criu-check-all", "feature/"];

/** What does not decide a cell: criu check --all and --feature, and the scenarios' observing cases. */
export function informationalFor(config: PipelineConfig): string[] {
  // A distribution kernel is not built from our fragments: its config check only informs.
  const distribution = config.kernel.kind === "debian-cloud" ? ["kernel-config"] : [];
  return [...INFORMATIONAL_TESTS, ...distribution, ...observedTests(loadScenarios(config.boot.scenarios))];
}

/** Patterns: "prefix/" for every test under it, else an exact name (the scenarios' observing cases). */
export function isInformational(name: string, patterns: string[] = INFORMATIONAL_TESTS): boolean {
  return patterns.some((p) => (p.endsWith("/") ? name.startsWith(p) : name === p));
}

/** A guest run's verdict for the matrix: ERROR for infrastructure, FAIL when a deciding test failed. */
export function cellStatusOf(
  runStatus: "COMPLETE" | "ERROR",
  tests: CellTest[],
  informational: string[] = INFORMATIONAL_TESTS,
): CellStatus {
  if (runStatus === "ERROR") return "ERROR";
  return tests.some(
    (t) => !isInformational(t.name, informational) && (t.status === "FAIL" || t.status === "ERROR"),
  )
    ? "FAIL"
    : "PASS";
}

export function tailLines(text: string, n = 60): string {
  return text.split("\n").slice(-n).join("\n");
}

/**
 * A stored cell with the causes of its failures held against its kernel's .config in the
 * cache, so a cell written before causes existed gets them; unchanged when the cache lacks it.
 */
export function diagnoseCell(cell: CellResult, cacheDir: string, fragments: Fragment[]): CellResult {
  const kernel = cell.identities.kernel;
  const criu = cell.identities.criu;
  if (!kernel || !criu || cell.migration) return cell;
  if (!cell.tests.some((t) => t.status === "FAIL" || t.status === "ERROR")) return cell;
  const config = kernelConfigOf(join(cacheDir, "kernel", kernel.key, "config"));
  if (!config) return cell;
  const map = repoData().kernelRequirements;
  const tests = withCauses(cell.tests, { config, kernelVersion: kernel.version, criu, map, fragments });
  return { ...cell, tests };
}

/** The diagnosed failures of a cell, as `--json` lists them. */
export function cellDiagnoses(cell: CellResult): { test: string; status: string; cause: TestCause }[] {
  return cell.tests.flatMap((t) => (t.cause ? [{ test: t.name, status: t.status, cause: t.cause }] : []));
}

const CELL_FILE = "cell.json";

export function cellDir(outDir: string, id: string): string {
  return join(outDir, "cells", id);
}

/** Written to a temporary name and renamed: a reader never sees half a cell. */
export async function writeCell(outDir: string, cell: CellResult): Promise<string> {
  const file = join(cellDir(outDir, cell.id), CELL_FILE);
  await writeAtomic(file, `${JSON.stringify(cell, null, 2)}\n`);
  return file;
}

export function readCell(file: string): CellResult {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UserError(
      `cannot read cell result ${file}: ${(err as Error).message}`,
      "pass cell.json files, directories holding them, or a matrix.json",
    );
  }
  return parseOutput("cell", value, file);
}

export function storedCell(outDir: string, id: string): CellResult | undefined {
  const file = join(cellDir(outDir, id), CELL_FILE);
  return existsSync(file) ? readCell(file) : undefined;
}

/** Every cell.json under a directory (any depth), or the cells of a matrix.json. */
export function collectCells(input: string): CellResult[] {
  if (!existsSync(input))
    throw new UserError(
      `${input} does not exist`,
      "pass cell.json files, directories holding them, or a matrix.json",
    );
  if (statSync(input).isFile()) {
    if (input.endsWith(CELL_FILE)) return [readCell(input)];
    let doc: { cells?: unknown };
    try {
      doc = JSON.parse(readFileSync(input, "utf8")) as { cells?: unknown };
    } catch (err) {
      throw new UserError(
        `${input} is not JSON (${(err as Error).message})`,
        "pass cell.json files, directories holding them, or a matrix.json",
      );
    }
    if (!Array.isArray(doc?.cells))
      throw new UserError(
        `${input} is neither a cell.json nor a matrix.json`,
        "pass files written by `cr-guest matrix`",
      );
    return parseOutput("matrix", doc, input).cells;
  }
  const out: CellResult[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name === CELL_FILE) out.push(readCell(p));
    }
  };
  walk(input);
  return out;
}
