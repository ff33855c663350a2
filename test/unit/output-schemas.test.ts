/**
 * The published JSON Schemas: the committed files are what the zod schemas generate, and the
 * documents cr-guest really writes (cells and reports from the matrix runner, results.json
 * shapes) validate against them with a JSON Schema validator (ajv, draft 2020-12). Readers
 * refuse other schema numbers and malformed files with the file's name.
 */
import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { SCHEMAS_DIR, schemaFiles } from "../../scripts/schemas.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { loadMatrixSpec, planMatrix, type PlannedCell } from "../../scripts/matrix/spec.js";
import { runRecord } from "../helpers/run-record.js";
import { runMatrix } from "../../scripts/matrix/run.js";
import { collectCells, readCell } from "../../scripts/matrix/cell.js";
import { buildReport } from "../../scripts/matrix/report.js";
import { parseOutput } from "../../scripts/lib/output-schemas.js";
import { UserError } from "../../scripts/lib/errors.js";
import { tempDir } from "../helpers/temp.js";

const ajv = new Ajv2020({ allErrors: true, strict: false });
const validator = (name: string) =>
  ajv.compile(JSON.parse(readFileSync(join(SCHEMAS_DIR, `${name}.schema.json`), "utf8")));

describe("published JSON Schemas", () => {
  it("are what the code's schemas generate (make schemas)", () => {
    for (const [name, text] of Object.entries(schemaFiles()))
      expect(readFileSync(join(SCHEMAS_DIR, name), "utf8"), name).toBe(text);
  });

  it("cell.json and matrix.json written by the matrix runner validate; a broken one does not", async () => {
    const plan = planMatrix(loadMatrixSpec(join(REPO_ROOT, "test/fixtures/matrix/small.yaml")));
    const out = tempDir("crg-schema-");
    const stub = {
      kernel: async () => ({
        handle: "k",
        cached: false,
        identity: { key: "k", version: "6.12.107", release: null, config_sha256: "x" },
      }),
      image: async (c: { criuVersion: string; patches: string[] }) => ({
        handle: "i",
        cached: false,
        criu: {
          key: "c",
          version: c.criuVersion,
          provider: "local-mirror",
          link: "static",
          sha256: "s",
          patches: c.patches,
        },
        image: { key: "i", base: "fresh", suite: "trixie" },
        predicted: [],
      }),
      boot: async (c: PlannedCell) => runRecord(c, "COMPLETE"),
    };
    await runMatrix(plan, plan.cells, { outDir: out, stages: stub as never, capacity: 2, bootWeight: 1 });
    const cellFiles = readdirSync(join(out, "cells")).map((id) => join(out, "cells", id, "cell.json"));
    expect(cellFiles.length).toBeGreaterThan(1);
    const validCell = validator("cell");
    for (const f of cellFiles)
      expect(validCell(JSON.parse(readFileSync(f, "utf8"))), JSON.stringify(validCell.errors)).toBe(true);
    const report = buildReport("small", collectCells(out));
    const validReport = validator("matrix");
    expect(validReport(JSON.parse(JSON.stringify(report))), JSON.stringify(validReport.errors)).toBe(true);
    // The validator really checks: a wrong status and a missing field are refused.
    const cell = JSON.parse(readFileSync(cellFiles[0], "utf8"));
    expect(validCell({ ...cell, status: "GREEN" })).toBe(false);
    const { tests: _t, ...noTests } = cell;
    expect(validCell(noTests)).toBe(false);
    // Evidence paths are relative to the cache dir; a cell of the previous schema is still read.
    expect(cell.paths.results).toMatch(/^runs\/r-[^/]+\/results\.json$/);
    expect(readCell(cellFiles[0]).schema).toBe(2);
    writeFileSync(
      cellFiles[0],
      JSON.stringify({ ...cell, schema: 1, paths: { results: "/abs/runs/r/results.json" } }),
    );
    expect(readCell(cellFiles[0]).paths.results).toBe("/abs/runs/r/results.json");
    writeFileSync(cellFiles[0], JSON.stringify({ ...cell, schema: 3 }));
    expect(() => readCell(cellFiles[0])).toThrow(/schema 3; this cr-guest reads 1 and 2/);
  });

  it("results.json: a real run's shape validates, and readers take the current schema number only", () => {
    const results = {
      schema: 1,
      run_key: "k",
      status: "COMPLETE",
      error: null,
      accel: "tcg",
      attempts: [
        { status: "ok", reason: "end marker", seconds: 60, boot_seconds: 2.5, console_log: "console-1.log" },
      ],
      identities: {
        kernel: { key: "k", version: "6.12.107", release: "6.12.107", config_sha256: "c" },
        criu: { version: "3.19", sha256: "s", provider: "local-mirror", link: "static", patches: [] },
        agent: null,
        image: { key: "i", base: "fresh bookworm" },
      },
      expectations: { MEMBARRIER_PROBE: "fatal" },
      scenarios: [{ name: "simple-process", about: "dump, kill, restore" }],
      guest: { kernel: "6.12.107" },
      tests: [
        {
          name: "criu-check",
          status: "PASS",
          seconds: 0.9,
          exit_code: 0,
          message: "Looks good.",
          error_lines: [],
          logs: ["tests/criu-check/out"],
        },
      ],
      summary: { PASS: 1, FAIL: 0, SKIP: 0, ERROR: 0 },
      seconds: 61,
      created: "2026-11-29T23:00:00Z",
    };
    const valid = validator("results");
    expect(valid(results), JSON.stringify(valid.errors)).toBe(true);
    expect(parseOutput("results", results, "r.json").status).toBe("COMPLETE");
    expect(() => parseOutput("results", { ...results, schema: 7 }, "r.json")).toThrow(
      /r\.json has results\.json schema 7; this cr-guest reads 1/,
    );
    expect(() => parseOutput("results", { ...results, tests: "none" }, "r.json")).toThrow(UserError);
    expect(valid({ ...results, schema: 7 })).toBe(false);
  });

  it("a failing test's cause (the kernel requirements map's diagnosis) validates; one of another kind does not", () => {
    const file = join(REPO_ROOT, "test/fixtures/runs/6.12.107-criu-4.1.1-results.json");
    const run = JSON.parse(readFileSync(file, "utf8"));
    const cause = {
      kind: "build",
      entries: ["feature/nftables"],
      symbols: [],
      text: "needs a CRIU linked with libnftables, which this build is not",
    };
    const withCause = (c: object) => ({
      ...run,
      tests: run.tests.map((t: { name: string }) => (t.name === "feature/nftables" ? { ...t, cause: c } : t)),
    });
    // A fresh validator: this file's `validator` compiles each schema once.
    const valid = new Ajv2020({ strict: false }).compile(
      JSON.parse(readFileSync(join(SCHEMAS_DIR, "results.schema.json"), "utf8")),
    );
    expect(valid(withCause(cause)), JSON.stringify(valid.errors)).toBe(true);
    expect(valid(withCause({ ...cause, kind: "guess" }))).toBe(false);
    expect(parseOutput("results", withCause(cause), file).tests.find((t) => t.cause)?.cause).toEqual(cause);
    expect(() => parseOutput("results", withCause({ ...cause, symbols: "NF_TABLES" }), file)).toThrow(
      /tests\.\d+\.cause\.symbols/,
    );
  });

  it("a reader names a cell.json that is not one", () => {
    const dir = tempDir("crg-badcell-");
    const f = join(dir, "cell.json");
    writeFileSync(f, JSON.stringify({ schema: 1, id: "x" }));
    expect(() => readCell(f)).toThrow(new RegExp(`${f} is not a valid cell\\.json`));
  });
});
