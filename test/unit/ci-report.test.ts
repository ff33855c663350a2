/**
 * `cr-guest ci report` on a store laid out as the CI jobs leave it (cells-<V>/cells/<id>/
 * cell.json): expected failures never make it red, an unexpected failure does, and so does a
 * regression against a planted baseline; the summary names each. Also ciVerdict itself.
 */
import { describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ciVerdict } from "../../scripts/matrix/ci.js";
import { buildReport } from "../../scripts/matrix/report.js";
import type { CellResult } from "../../scripts/matrix/cell.js";
import { crGuest } from "../helpers/cli.js";
import { good, noMembarrier } from "../helpers/cells.js";
import { tempDir } from "../helpers/temp.js";

const PREDICTED = {
  severity: "fail",
  id: "membarrier-probe",
  what: "CRIU 4.1.1 on a kernel with CONFIG_MEMBARRIER=n will fail every command",
  test: "criu-check",
  expect: "FAIL" as const,
};
const expectedFail = { ...noMembarrier, predicted: [PREDICTED] };

function store(cells: Record<string, CellResult[]>): string {
  const dir = tempDir("crg-ci-");
  for (const [v, cs] of Object.entries(cells))
    for (const c of cs) {
      mkdirSync(join(dir, `cells-${v}`, "cells", c.id), { recursive: true });
      writeFileSync(join(dir, `cells-${v}`, "cells", c.id, "cell.json"), JSON.stringify(c));
    }
  return dir;
}

describe("ci report", () => {
  it("ciVerdict: red on unexpected failures and regressions only; infrastructure apart", () => {
    expect(ciVerdict([good("4.1.1"), expectedFail]).exitCode).toBe(0);
    expect(ciVerdict([good("4.1.1"), expectedFail]).expected.map((e) => e.test)).toEqual(["criu-check"]);
    expect(ciVerdict([noMembarrier]).unexpected.map((u) => u.test)).toEqual(["criu-check"]);
    expect(ciVerdict([noMembarrier]).exitCode).toBe(1);
    expect(
      ciVerdict([{ ...good("4.2.1"), status: "ERROR", reason: "boot timeout", tests: [] }]).exitCode,
    ).toBe(4);
  });

  it(
    "green with only expected failures; red naming the regression against a planted baseline",
    { timeout: 60_000 },
    async () => {
      const dir = store({
        "4.1.1": [good("4.1.1"), expectedFail],
        "3.17.1": [good("3.17.1", "6.12", "none", "FAIL")],
      });
      // 3.17.1 loses the registration, predicted by the catalog: an expected failure.
      const lost = JSON.parse(
        readFileSync(join(dir, "cells-3.17.1", "cells", "3.17.1_6.12_none_native", "cell.json"), "utf8"),
      ) as CellResult;
      lost.predicted = [
        {
          severity: "warn",
          id: "membarrier-registration",
          what: "CRIU 3.17.1 will not carry a membarrier registration across a restore",
          test: "membarrier/registration",
          expect: "FAIL",
        },
      ];
      writeFileSync(join(dir, "cells-3.17.1", "cells", lost.id, "cell.json"), JSON.stringify(lost));

      const green = await crGuest(["ci", "report", "--store", dir]);
      expect(green.exitCode, green.stdout + green.stderr).toBe(0);
      expect(green.stdout).toContain("**green**: 0 unexpected failures, 0 regressions against no baseline");
      expect(green.stdout).toMatch(
        /Expected failures \(predicted by the doctor; never red\)[\s\S]*\| 4\.1\.1_nomb_none_native \| criu-check \| CRIU 4\.1\.1 on a kernel with CONFIG_MEMBARRIER=n/,
      );
      expect(green.stdout).toMatch(
        /\| 3\.17\.1_6\.12_none_native \| membarrier\/registration \| CRIU 3\.17\.1 will not carry/,
      );
      for (const f of ["matrix.json", "matrix.md", "matrix.html", "junit.xml", "summary.md"])
        expect(existsSync(join(dir, "report", f)), f).toBe(true);
      expect(readFileSync(join(dir, "report", "junit.xml"), "utf8")).not.toMatch(/<failure/);

      // The baseline had 3.17.1's registration kept: now lost is a regression, expected or not.
      const base = join(dir, "baseline.json");
      writeFileSync(
        base,
        JSON.stringify(buildReport("fixture", [good("4.1.1"), expectedFail, good("3.17.1")])),
      );
      const red = await crGuest(["ci", "report", "--store", dir, "--baseline", base]);
      expect(red.exitCode).toBe(1);
      expect(red.stdout).toContain("**red**: 0 unexpected failures, 1 regressions against the baseline");
      expect(red.stdout).toMatch(/3\.17\.1_6\.12_none_native.*membarrier\/registration.*PASS.*FAIL/);
    },
  );

  it(
    "red on an unexpected failure; no cells is bad input naming the store",
    { timeout: 60_000 },
    async () => {
      const dir = store({ "4.1.1": [noMembarrier] });
      const r = await crGuest(["ci", "report", "--store", dir]);
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toMatch(
        /Unexpected failures \(these make CI red\)[\s\S]*\| 4\.1\.1_nomb_none_native \| criu-check \| Error \(criu\/kerndat\.c/,
      );
      const empty = await crGuest(["ci", "report", "--store", tempDir("crg-ci-empty-")]);
      expect(empty.exitCode).toBe(2);
      expect(empty.stderr).toMatch(/no cell results in .*crg-ci-empty-.* \(cells-\*\/\)/);
      const step = await crGuest(["ci", "deploy"]);
      expect(step.exitCode).toBe(2);
      expect(step.stderr).toContain("unknown ci step 'deploy'");
    },
  );
});
