/**
 * Reading what the guest wrote (OUT/tests/<name>/{status,rc,seconds,message,outcome,...})
 * into the versioned results.json records. Pure apart from reading files.
 */
import type { z } from "zod";
import { RESULTS_SCHEMA_VERSION, TEST_STATUSES, type TestRecordSchema } from "../lib/output-schemas.js";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

export const RESULTS_SCHEMA = RESULTS_SCHEMA_VERSION;
export type TestStatus = (typeof TEST_STATUSES)[number];
/** One guest test's record (the schema is in lib/output-schemas.ts). */
export type TestRecord = z.infer<typeof TestRecordSchema>;

const read = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim() : "");

function testDirs(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    if (existsSync(join(d, "status"))) out.push(d);
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  if (existsSync(root)) walk(root);
  return out;
}

/** CRIU log lines that say Error, as CRIU prints them ("(00.012) Error (criu/...)"). */
export function errorLines(text: string, max = 8): string[] {
  return text
    .split("\n")
    .filter((l) => /\bError\b/.test(l))
    .map((l) => l.replace(/^\(\s*[\d.]+\)\s*/, "").trim())
    .slice(0, max);
}

export function readTestRecords(outDir: string, relTo: string): TestRecord[] {
  const root = join(outDir, "tests");
  return testDirs(root).map((d) => {
    const status = read(join(d, "status")) as TestStatus;
    const logs = readdirSync(d).filter((f) => f.endsWith(".log") || f === "diag.txt");
    const errors = logs.filter((f) => f.endsWith(".log")).flatMap((f) => errorLines(read(join(d, f))));
    const diag = read(join(d, "diag.txt"));
    const rc = read(join(d, "rc"));
    return {
      name: relative(root, d),
      status: ["PASS", "FAIL", "SKIP"].includes(status) ? status : "ERROR",
      seconds: Number(read(join(d, "seconds"))) || 0,
      exit_code: rc === "" ? null : Number(rc),
      message: read(join(d, "message")),
      ...(read(join(d, "outcome")) ? { outcome: read(join(d, "outcome")) } : {}),
      error_lines: [...new Set(errors)].slice(0, 8),
      ...(diag
        ? {
            diagnostics:
              diag.length > 8000
                ? `${diag.slice(0, 8000)}\n[... ${diag.length - 8000} more bytes in diag.txt]`
                : diag,
          }
        : {}),
      logs: logs.map((f) => relative(relTo, join(d, f))),
    };
  });
}

/** key=value lines (the guest's info/guest.txt). */
export function parseKeyValues(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export function summarize(tests: TestRecord[]): Record<TestStatus, number> {
  const s: Record<TestStatus, number> = { PASS: 0, FAIL: 0, SKIP: 0, ERROR: 0 };
  for (const t of tests) s[t.status]++;
  return s;
}
