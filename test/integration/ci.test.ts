/**
 * The CI steps end to end on a two-cell matrix, as the workflow runs them, against a local
 * store: `ci kernels` packs the 6.12 kernel once, `ci cell` runs each CRIU version's cells on
 * it (one "job" each), `ci report` merges, judges and exits. 3.17.1 loses the membarrier
 * registration: predicted by the catalog, so an expected failure and green; with a planted
 * baseline in which that test passed, the same report is red and names the regression.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { XMLParser } from "fast-xml-parser";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import type { MatrixReport } from "../../scripts/matrix/report.js";
import { crGuest, missingTools } from "../helpers/cli.js";
import { expectValid } from "../helpers/schemas.js";
import type { RunResult } from "../../scripts/lib/exec.js";
import { tempDir } from "../helpers/temp.js";

const skip = missingTools([
  "qemu-system-x86_64",
  "guestfish",
  "debootstrap",
  "sgdisk",
  "mkfs.ext4",
  "gcc",
  "make",
]);
const MATRIX = ["--matrix", join(REPO_ROOT, "test/fixtures/matrix/ci.yaml")];

describe.skipIf(skip)("CI steps on a two-cell matrix (integration)", () => {
  const store = tempDir("crg-ci-store-");
  // The first step of the workflow, which the cells then boot from: its own test checks it.
  let kernelsStep: RunResult;
  beforeAll(async () => {
    kernelsStep = await crGuest(["ci", "kernels", ...MATRIX, "--store", store, "--json"], 60 * 60_000);
  }, 65 * 60_000);

  it(
    "ci keys, ci kernels: the one kernel, packed under its cache key",
    { timeout: 10 * 60_000 },
    async () => {
      const keys = await crGuest(["ci", "keys", ...MATRIX, "--criu", "3.17.1", "--json"], 5 * 60_000);
      expect(keys.exitCode, keys.stderr).toBe(0);
      expect(JSON.parse(keys.stdout)).toMatchObject({
        kernels: expect.stringMatching(/^[0-9a-f]{16}$/),
        criu: expect.stringMatching(/^[0-9a-f]{16}$/),
      });
      const r = kernelsStep;
      expect(r.exitCode, r.stderr).toBe(0);
      const { kernels } = JSON.parse(r.stdout) as {
        kernels: { axis: string; key: string; version: string }[];
      };
      expect(kernels.map((k) => k.axis)).toEqual(["6.12"]);
      expect(kernels[0].version).toMatch(/^6\.12\./);
      expect(readdirSync(join(store, "kernels")).sort()).toEqual([kernels[0].key, "index.json"].sort());
      for (const f of ["vmlinuz", "config", "metadata.json"])
        expect(existsSync(join(store, "kernels", kernels[0].key, f)), f).toBe(true);
    },
  );

  it(
    "ci cell per CRIU version boots the packed kernel; ci report is green with the expected failure listed",
    { timeout: 60 * 60_000 },
    async () => {
      expect(kernelsStep.exitCode, kernelsStep.stderr).toBe(0);
      for (const v of ["4.1.1", "3.17.1"]) {
        const r = await crGuest(
          ["ci", "cell", ...MATRIX, "--criu", v, "--store", store, "--json"],
          50 * 60_000,
        );
        expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
        const out = JSON.parse(r.stdout) as { cells: { id: string; status: string }[] };
        expect(out.cells.map((c) => c.id)).toEqual([`${v}_6.12_unpatched_native`]);
        // No kernel stage ran: the cells boot the packed kernel.
        expect(r.stderr).not.toMatch(/Resolve linux/);
      }
      const report = await crGuest(["ci", "report", "--store", store], 5 * 60_000);
      expect(report.exitCode, report.stdout + report.stderr).toBe(0);
      expect(report.stdout).toContain("**green**: 0 unexpected failures");
      expect(report.stdout).toMatch(
        /Expected failures[\s\S]*\| 3\.17\.1_6\.12_unpatched_native \| membarrier\/registration \| CRIU 3\.17\.1 will not carry a membarrier registration/,
      );
      const m = JSON.parse(readFileSync(join(store, "report", "matrix.json"), "utf8")) as MatrixReport;
      expectValid("matrix", m);
      const kernelKeys = new Set(m.cells.map((c) => c.identities.kernel!.key));
      expect(kernelKeys.size).toBe(1);
      expect(readdirSync(join(store, "kernels"))).toContain([...kernelKeys][0]);
      expect(m.cells.find((c) => c.criu_version === "4.1.1")!.status).toBe("PASS");
      // JUnit: the expected failure is skipped with its prediction; nothing fails.
      const junit = new XMLParser({
        ignoreAttributes: false,
        attributeNamePrefix: "",
        isArray: (n) => ["testsuite", "testcase"].includes(n),
      }).parse(readFileSync(join(store, "report", "junit.xml"), "utf8"));
      const cases = junit.testsuites.testsuite.flatMap(
        (s: { testcase: { name: string; failure?: unknown; skipped?: { message: string } }[] }) => s.testcase,
      );
      expect(cases.filter((c: { failure?: unknown }) => c.failure)).toEqual([]);
      const lost = junit.testsuites.testsuite
        .find((s: { name: string }) => s.name === "3.17.1_6.12_unpatched_native")
        .testcase.find((c: { name: string }) => c.name === "membarrier/registration");
      expect(lost.skipped.message).toMatch(/^expected failure: CRIU 3\.17\.1 will not carry/);

      // A planted baseline in which 3.17.1 kept the registration: now red, naming the regression.
      const planted = JSON.parse(JSON.stringify(m)) as MatrixReport;
      const was = planted.cells.find((c) => c.criu_version === "3.17.1")!;
      was.tests = was.tests.map((t) =>
        t.name === "membarrier/registration"
          ? { ...t, status: "PASS", message: "still registered after restore", error_lines: [] }
          : t,
      );
      was.status = "PASS";
      const baseline = join(store, "planted.json");
      writeFileSync(baseline, JSON.stringify(planted));
      const red = await crGuest(["ci", "report", "--store", store, "--baseline", baseline], 5 * 60_000);
      expect(red.exitCode).toBe(1);
      expect(red.stdout).toContain("1 regressions against the baseline");
      expect(red.stdout).toMatch(/3\.17\.1_6\.12_unpatched_native.*membarrier\/registration.*PASS.*FAIL/);
    },
  );
});
