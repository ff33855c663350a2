/**
 * Migration pairs in a matrix: each pair's result (migrate/run.ts) as a cell like any other
 * (cell.json with from/to axes, so merge, compare and JUnit take it as it is), and the
 * compatibility grid of the report: per migrating case, rows dump with, columns restore with.
 */
import { hostname } from "node:os";
import type { PairResult } from "../migrate/run.js";
import { cacheKey } from "../lib/hash.js";
import type { AxisValues } from "./spec.js";
import { CELL_SCHEMA, type CellResult, type CellStatus, type CellTest } from "./cell.js";
import { judgeCell } from "./verdicts.js";

/** crit's readings in a pair cell: informational tests, never deciding. */
export const CRIT_TEST_PREFIX = "crit/";

/** A side of a pair as a reader names it: "4.1.1 on 6.12" (patches and suite when not the default). */
export function sideLabel(a: AxisValues): string {
  const patches = a.patches !== "unpatched" ? ` +${a.patches}` : "";
  const suite = a.suite !== "native" ? ` (${a.suite})` : "";
  return `${a.criu} on ${a.kernel}${patches}${suite}`;
}

/** The pair's result as a cell: id, from/to axes, one test per migrating case. */
export function pairCell(
  matrix: string,
  from: AxisValues,
  to: AxisValues,
  inputsKey: string,
  r: PairResult,
): CellResult {
  const tests: CellTest[] = r.cases.map((c) => ({
    name: c.name,
    status: c.status,
    seconds: (c.dump?.seconds ?? 0) + (c.restore?.seconds ?? 0),
    exit_code: 0,
    message: c.message,
    error_lines: [
      ...(c.dump?.status === "FAIL" ? c.dump.error_lines : []),
      ...(c.restore?.status === "FAIL" ? c.restore.error_lines : []),
    ],
  }));
  // crit's readings of the dump: informational, one test per CRIU version.
  for (const c of r.crit ?? [])
    tests.push({
      name: `${CRIT_TEST_PREFIX}${c.version}`,
      status: c.status === "ok" ? "PASS" : "FAIL",
      seconds: 0,
      exit_code: 0,
      message: `${c.role === "both" ? "dump and restore" : c.role} side's crit: ${c.message}`,
      error_lines: c.cases.filter((x) => x.status === "FAIL").map((x) => `${x.name}: ${x.message}`),
    });
  const count = (s: string) => tests.filter((t) => t.status === s).length;
  const status: CellStatus = r.status === "SKIPPED" ? "SKIPPED" : r.status;
  return {
    schema: CELL_SCHEMA,
    matrix,
    id: r.id,
    axes: from,
    criu_version: r.axes.from.criu,
    patches: r.axes.from.patches,
    sets: r.axes.from.sets,
    inputs_key: inputsKey,
    status,
    reason: r.reason,
    failed_stage: null,
    predicted: r.predicted,
    identities: {
      ...(r.identities.from.kernel
        ? {
            kernel: {
              key: r.identities.from.kernel.key,
              version: r.identities.from.kernel.version,
              release: null,
              config_sha256: "",
            },
          }
        : {}),
    },
    stages: {},
    accel: null,
    tests,
    summary: { PASS: count("PASS"), FAIL: count("FAIL"), SKIP: count("SKIP"), ERROR: 0 },
    informational: [CRIT_TEST_PREFIX],
    guest: {},
    console_tail: "",
    paths: { ...(r.runs.dump ? { run_dir: r.runs.dump } : {}) },
    host: hostname(),
    started: r.created,
    finished: new Date(Date.parse(r.created) + r.seconds * 1000).toISOString(),
    seconds: r.seconds,
    migration: {
      from,
      to,
      in_place: r.axes.in_place,
      changes: r.axes.changes,
      runs: r.runs,
      transfer: r.transfer,
    },
  };
}

/** What a pair's result depends on: both sides' config and the repo data (as a cell's key). */
export function pairInputsKey(fromKey: string, toKey: string): string {
  return cacheKey({ from: fromKey, to: toKey, kind: "migration" });
}

/** The compatibility grids, in markdown: one per migrating case, then the failures' evidence. */
export function renderPairGrids(cells: CellResult[]): string[] {
  const pairs = cells.filter((c) => c.migration);
  if (!pairs.length) return [];
  const rows = [...new Set(pairs.map((p) => sideLabel(p.migration!.from)))];
  const cols = [...new Set(pairs.map((p) => sideLabel(p.migration!.to)))];
  const cases = [
    ...new Set(
      pairs.flatMap((p) => p.tests.map((t) => t.name).filter((n) => !n.startsWith(CRIT_TEST_PREFIX))),
    ),
  ];
  const out = ["## Migration: dump with (rows), restore with (columns)", ""];
  out.push(`${pairs.length} pairs: ${pairs.map((p) => `${p.id} **${p.status}**`).join(", ")}`, "");
  // As judged: a failure the catalog predicted is XFAIL, a predicted failure that passed XPASS.
  const judged = new Map(pairs.map((p) => [p.id, new Map(judgeCell(p).map((j) => [j.test.name, j]))]));
  const shown = { xfail: "XFAIL", xpass: "XPASS" } as Record<string, string>;
  const statusOf = (p: CellResult | undefined, test: string) => {
    if (!p) return "";
    if (p.status === "ERROR" || p.status === "SKIPPED") return p.status;
    const j = judged.get(p.id)!.get(test);
    return j ? (shown[j.verdict] ?? j.test.status) : "-";
  };
  for (const test of cases) {
    out.push(
      `### ${test}`,
      "",
      `| dump with \\ restore with | ${cols.join(" | ")} |`,
      `|---|${cols.map(() => "---").join("|")}|`,
    );
    for (const row of rows)
      out.push(
        `| ${row} | ${cols
          .map((col) =>
            statusOf(
              pairs.find((p) => sideLabel(p.migration!.from) === row && sideLabel(p.migration!.to) === col),
              test,
            ),
          )
          .join(" | ")} |`,
      );
    out.push("");
  }
  const failures = pairs.flatMap((p) =>
    p.status === "ERROR" || (p.status === "FAIL" && !p.tests.length)
      ? [`- ${p.id}: ${p.status}: ${p.reason ?? ""}`]
      : [...judged.get(p.id)!.values()]
          .filter((j) => j.verdict === "fail" || j.verdict === "xfail")
          .map(({ test: t, verdict, because }) => {
            const line = t.error_lines.find((l) => !t.message.includes(l));
            const expected = verdict === "xfail" ? `expected (${because}): ` : "";
            return `- ${p.id}, ${t.name}: ${expected}${t.message}${line ? `\n  \`${line}\`` : ""}`;
          }),
  );
  if (failures.length) out.push("Failures, with CRIU's first Error line:", "", ...failures, "");
  const crit = pairs.flatMap((p) =>
    p.tests
      .filter((t) => t.name.startsWith(CRIT_TEST_PREFIX))
      .map(
        (t) =>
          `| ${p.id} | ${t.name.slice(CRIT_TEST_PREFIX.length)} | ${t.status} | ${t.message.replace(/\|/g, "\\|")} |`,
      ),
  );
  if (crit.length)
    out.push(
      "crit on each dump (informational: decoding inventory.img and the process tree):",
      "",
      "| pair | crit of CRIU | status | reading |",
      "|---|---|---|---|",
      ...crit,
      "",
    );
  return out;
}
