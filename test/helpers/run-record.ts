/** A guest run as the boot stage records it (results.json), for scheduling and schema tests. */
import { join } from "node:path";
import type { RunRecord, RunResults } from "../../scripts/boot/stage.js";
import type { PlannedCell } from "../../scripts/matrix/spec.js";

/** One cell's run: criu-check passes where a patch is applied, fails elsewhere. */
export function runRecord(c: PlannedCell, status: RunResults["status"]): RunRecord {
  const pass = c.patches.length > 0;
  const tests = [
    {
      name: "criu-check",
      status: pass ? "PASS" : "FAIL",
      seconds: 1,
      exit_code: 0,
      message: "",
      error_lines: [],
      logs: [],
    },
  ] as RunResults["tests"];
  const results: RunResults = {
    schema: 1,
    run_key: `r-${c.id}`,
    status,
    error: status === "ERROR" ? "timeout: boot timeout after 180 s" : null,
    accel: "tcg",
    attempts: [
      {
        status: status === "ERROR" ? "timeout" : "ok",
        reason: "",
        seconds: 1,
        boot_seconds: null,
        console_log: "console-1.log",
      },
    ],
    identities: {
      kernel: { key: "k", version: "6.12.107", release: null, config_sha256: "x" },
      criu: {
        version: c.criuVersion,
        sha256: "s",
        provider: "debian-source",
        link: "static",
        patches: c.patches,
      },
      agent: null,
      image: { key: "i", base: "fresh" },
    },
    expectations: {},
    scenarios: [],
    guest: {},
    tests: status === "ERROR" ? [] : tests,
    summary: {
      PASS: status !== "ERROR" && pass ? 1 : 0,
      FAIL: status !== "ERROR" && !pass ? 1 : 0,
      SKIP: 0,
      ERROR: 0,
    },
    seconds: 1,
    created: new Date().toISOString(),
  };
  return { dir: join(c.config.cache_dir, "runs", results.run_key), cached: false, results };
}
