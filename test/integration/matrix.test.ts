/**
 * A two-cell matrix end to end, as CI runs one CRIU version: CRIU 4.1.1 with and without the
 * membarrier patch on our 6.12 kernel built without CONFIG_MEMBARRIER. One kernel build for
 * both cells, two CRIU builds and images, two boots; the report says, from the evidence,
 * that CRIU >= 3.19 needs CONFIG_MEMBARRIER or the patch. A second run keeps both cells.
 */
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crGuest, missingTools } from "../helpers/cli.js";
import type { MatrixReport } from "../../scripts/matrix/report.js";
import { expectValid } from "../helpers/schemas.js";

const skip = missingTools(["qemu-system-x86_64", "guestfish", "debootstrap", "sgdisk", "mkfs.ext4", "gcc", "make"]);
const CELLS = ["--criu", "4.1", "--kernel", "6.12-no-membarrier"];

describe.skipIf(skip)("version matrix (integration)", () => {
  const out = mkdtempSync(join(tmpdir(), "crg-matrix-it-"));

  it("runs two cells sharing one kernel, and reports the membarrier finding from the evidence", { timeout: 80 * 60_000 }, async () => {
    const plan = await crGuest(["matrix", ...CELLS, "--out", out, "--dry-run"], 5 * 60_000);
    expect(plan.exitCode, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/2 of \d+ cells; at most 1 kernel builds, 2 CRIU builds, 2 images, 2 boots/);

    const r = await crGuest(["matrix", ...CELLS, "--out", out], 80 * 60_000);
    const log = r.stdout + r.stderr;
    expect(r.exitCode, log).toBe(0);
    expect(log).toMatch(/2 cells run, 0 kept from earlier runs; 1 kernel, 2 CRIU\+image and 2 boot stages/);
    const report = JSON.parse(readFileSync(join(out, "matrix.json"), "utf8")) as MatrixReport;
    expectValid("matrix", report);
    for (const c of report.cells) expectValid("cell", JSON.parse(readFileSync(join(out, "cells", c.id, "cell.json"), "utf8")));
    const cell = (patches: string) => report.cells.find((c) => c.axes.patches === patches)!;
    const unpatched = cell("unpatched");
    const patched = cell("membarrier-patch");
    const test = (c: typeof unpatched, name: string) => c.tests.find((t) => t.name === name);

    // Same kernel for both, and the guest really has no membarrier().
    expect(unpatched.identities.kernel!.key).toBe(patched.identities.kernel!.key);
    expect(unpatched.identities.criu!.sha256).not.toBe(patched.identities.criu!.sha256);
    expect(patched.identities.criu!.patches).toEqual(["membarrier-probe-nonfatal"]);

    // Unpatched: predicted by the doctor, and observed: every CRIU command fails at start.
    expect(unpatched.predicted.some((p) => p.severity === "fail" && /membarrier/i.test(p.what))).toBe(true);
    expect(unpatched.status).toBe("FAIL");
    const check = test(unpatched, "criu-check")!;
    expect(check.status).toBe("FAIL");
    expect([check.message, ...check.error_lines].join("\n")).toMatch(/kerndat_has_membarrier_get_registrations failed/);
    // Gated on criu check: the scenarios are skipped as a whole.
    expect(test(unpatched, "simple-process")!.status).toBe("SKIP");
    expect(test(unpatched, "simple-process")!.message).toMatch(/criu check failed/);

    // Patched: CRIU starts, checks and really dumps and restores.
    expect(test(patched, "criu-check")!.status).toBe("PASS");
    expect(test(patched, "simple-process/dump-restore")!.status).toBe("PASS");
    expect(test(patched, "pidns-init/setsid")!.status).toBe("PASS");

    const md = readFileSync(join(out, "matrix.md"), "utf8");
    expect(md).toContain("CRIU >= 3.19 needs CONFIG_MEMBARRIER in the guest kernel or the membarrier-probe-nonfatal patch");
    expect(md).toMatch(/Passes in: 4\.1\.1_6\.12-no-membarrier_membarrier-patch_native/);
    expect(readFileSync(join(out, "junit.xml"), "utf8").match(/<testsuite /g)).toHaveLength(2);
    expect(readFileSync(join(out, "matrix.html"), "utf8")).toContain("kerndat_has_membarrier_get_registrations");
  });

  it("resumes: a second run keeps both cells and builds nothing; the report compares equal to itself", { timeout: 10 * 60_000 }, async () => {
    const r = await crGuest(["matrix", ...CELLS, "--out", out], 10 * 60_000);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/0 cells run, 2 kept from earlier runs; 0 kernel, 0 CRIU\+image and 0 boot stages/);
    const same = await crGuest(["compare", join(out, "matrix.json"), join(out, "matrix.json")]);
    expect(same.exitCode).toBe(0);
    expect(same.stdout).toContain("0 regressions, 0 fixes");
  });
});
