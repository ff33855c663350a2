/**
 * Reports from fixed cell results: the Markdown table and findings, the HTML page, JUnit,
 * what each result depends on, merging cells from several machines, comparing two reports
 * (and the CLI's exit codes for it). The CI workflow's tests are in matrix-workflow.test.ts.
 */
import { describe, expect, it } from "vitest";
import { XMLParser } from "fast-xml-parser";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { cellStatusOf, type CellResult, type CellTest } from "../../scripts/matrix/cell.js";
import { loadScenarios, observedTests } from "../../scripts/data/scenarios.js";
import { repoData } from "../../scripts/data/repo-data.js";
import {
  bootParallelism,
  buildReport,
  cellSummary,
  columnStatus,
  compareReports,
  deriveFindings,
  mergeCells,
  predictionChecks,
  reportColumns,
  reportSummary,
  renderComparison,
  renderHtml,
  renderJunit,
  renderMarkdown,
  statusDependencies,
} from "../../scripts/matrix/report.js";
import { judgeCell, tally } from "../../scripts/matrix/verdicts.js";
import { crGuest } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";

import { KERNDAT, cell, good, noMembarrier, t } from "../helpers/cells.js";
const CELLS = [
  good("3.17.1", "6.12", "none", "FAIL"),
  good("4.1.1"),
  noMembarrier,
  good("4.1.1", "nomb", "mb"),
];

describe("matrix report", () => {
  it("Markdown: the version table with a column per scenario, key messages, findings in plain words", () => {
    const md = renderMarkdown(buildReport("fixture", CELLS));
    expect(md).toContain(
      "| cell | CRIU | patches | kernel | suite | build | criu check | features | ptrace | dump/restore | pidns-init | membarrier | key message |",
    );
    // Scenarios skipped as a whole (SCENARIO, not SCENARIO/CASE) show as SKIP; features as a count.
    expect(md).toMatch(
      /\| 4\.1\.1_nomb_none_native \| 4\.1\.1 \| none \| nomb \(6\.12\.107\) \| native \| debian-source, static \| FAIL \| 0\/5 \| PASS \| SKIP \| - \| SKIP \| criu-check: Error \(criu\/kerndat\.c:1972\): kerndat_has_membarrier_get_registrations failed/,
    );
    expect(md).toMatch(
      /\| 3\.17\.1_6\.12_none_native \| 3\.17\.1 \| none \| .* \| debian-binary \| PASS \| 1\/2 \| PASS \| PASS \| PASS \| FAIL \| membarrier\/registration: after restore: EPERM \|/,
    );
    // Six tests failing with the same startup error are one entry with the error once.
    expect(md).toContain(
      "- `criu-check`, `feature/timens`, `feature/apparmor_stacking` and 3 more FAIL: criu check: exit 1",
    );
    expect(
      md.match(/kerndat_has_membarrier_get_registrations failed when initializing kerndat/g)!.length,
    ).toBeLessThan(6);
    expect(md).toContain(
      "**CRIU >= 3.19 needs CONFIG_MEMBARRIER in the guest kernel or the membarrier-probe-nonfatal patch",
    );
    expect(md).toMatch(/Seen in: 4\.1\.1_nomb_none_native \(criu-check: `Error \(criu\/kerndat\.c:1972\)/);
    expect(md).toMatch(/Passes in: .*4\.1\.1_nomb_mb_native/);
    expect(md).toContain("loses that registration across a restore");
    expect(md).toContain("4 cells: 2 PASS, 2 FAIL, 0 ERROR (infrastructure), 0 BUILD-FAILED, 0 SKIPPED");
    expect(md).toContain("### 4.1.1_nomb_none_native: FAIL");
  });

  it("informational tests (criu check --all, --feature) are reported but never decide a cell", () => {
    expect(cellStatusOf("COMPLETE", good("4.1.1").tests)).toBe("PASS");
    expect(cellStatusOf("COMPLETE", good("3.17.1", "6.12", "none", "FAIL").tests)).toBe("FAIL");
    expect(cellStatusOf("ERROR", [])).toBe("ERROR");
    // A scenario's observing case (the frozen-cgroup hang is the evidence) is listed in
    // scenarios.yaml and does not decide the cell either; it still shows in its column.
    expect(observedTests(loadScenarios(join(REPO_ROOT, "scenarios.yaml"))).sort()).toEqual([
      "frozen-cgroup/without-freeze-cgroup",
      "kata-container/sandbox-mounts",
    ]);
    const hung = good("4.1.1");
    hung.tests.push(t("frozen-cgroup/without-freeze-cgroup", "FAIL", "hang: dump did not finish in 10s"));
    expect(cellStatusOf("COMPLETE", hung.tests)).toBe("FAIL");
    expect(cellStatusOf("COMPLETE", hung.tests, hung.informational)).toBe("PASS");
    expect(renderMarkdown(buildReport("x", [{ ...hung, status: "PASS" }]))).toMatch(
      /\| PASS \| 1\/2 \| PASS \| PASS \| PASS \| PASS \| FAIL \|/,
    );
  });

  it("the first finding that explains a failure claims it: the catch-all criu-check rule stays silent", () => {
    const f = deriveFindings(CELLS, repoData().findings);
    expect(f.map((x) => x.id)).toEqual(["membarrier-probe-fatal", "membarrier-registration-lost"]);
    const other = cell("4.2.1", "6.12", "none", [
      t("criu-check", "FAIL", "x", ["Error (criu/net.c:3300): nft: failed"]),
    ]);
    expect(deriveFindings([other], repoData().findings).map((x) => x.id)).toEqual(["criu-check-other"]);
  });

  it("says what each result depends on, when one axis decides it", () => {
    const deps = statusDependencies([good("3.17.1", "6.12", "none", "FAIL"), good("4.1.1"), good("4.2.1")]);
    expect(deps).toEqual(["membarrier/registration: FAIL with criu 3.17.1; PASS with criu 4.1.1, 4.2.1"]);
    // No single axis decides criu-check here (4.1.1 fails only without MEMBARRIER and without the patch).
    const mixed = statusDependencies(CELLS);
    // criu-check and feature/timens fail in the same cell only: one line for both.
    expect(mixed).toContain(
      "criu-check, feature/timens: not PASS in 4.1.1_nomb_none_native (FAIL); PASS elsewhere",
    );
  });

  it("HTML: one self-contained page, coloured statuses, each cell's evidence one click away", () => {
    const html = renderHtml(
      buildReport("fixture", [
        ...CELLS,
        cell("4.2.1", "6.12", "none", [], {
          status: "ERROR",
          reason: "timeout: boot timeout after 180 s",
          console_tail: "Kernel panic - not syncing <x>",
        }),
      ]),
    );
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/<(link|script) [^>]*src=|href="http/); // nothing loaded from elsewhere
    expect(html).toContain('<td class="s-fail">FAIL</td>');
    expect(html).toContain('<td class="s-error">ERROR</td>');
    expect(html).toContain("kerndat_has_membarrier_get_registrations failed");
    expect(html).toContain("Kernel panic - not syncing &lt;x&gt;");
    expect(html).toMatch(/tr class="detail" id="d2" hidden/);
    expect(html).toContain('addEventListener("click"');
  });

  it("JUnit, read with an XML parser: only unexpected failures fail; informational and expected failures are skipped with the reason", () => {
    const predicted = {
      ...noMembarrier,
      predicted: [
        {
          severity: "fail",
          id: "membarrier-probe",
          what: "CRIU 4.1.1 on a kernel with CONFIG_MEMBARRIER=n will fail every command",
          test: "criu-check",
          expect: "FAIL" as const,
        },
      ],
    };
    const xml = renderJunit(
      buildReport("fixture", [
        noMembarrier,
        predicted,
        good("4.1.1"),
        cell("4.2.1", "6.12", "none", [], { status: "ERROR", reason: "panic: Kernel panic" }),
        cell("3.19", "6.12", "none", [], { status: "SKIPPED", reason: "no source" }),
      ]),
    );
    const doc = new XMLParser({
      ignoreAttributes: false,
      attributeNamePrefix: "",
      isArray: (n) => ["testsuite", "testcase"].includes(n),
    }).parse(xml);
    type Case = {
      classname: string;
      name: string;
      time?: string;
      failure?: { type: string; message: string; "#text"?: string };
      error?: { type: string; message: string };
      skipped?: { message: string };
    };
    type Suite = {
      name: string;
      tests: string;
      failures: string;
      errors: string;
      skipped: string;
      timestamp: string;
      testcase: Case[];
    };
    const suites: Suite[] = doc.testsuites.testsuite;
    expect(Number(doc.testsuites.tests)).toBe(suites.reduce((n, x) => n + Number(x.tests), 0));
    const byName = (n: string) => suites.find((x) => x.name === n)!;
    for (const x of suites) {
      expect(x.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
      expect(Number(x.tests)).toBe(x.testcase.length);
      expect(Number(x.failures)).toBe(x.testcase.filter((c) => c.failure).length);
      for (const c of x.testcase) expect(c.classname).toMatch(/^cr-guest\.[^.]+$/);
    }
    // Unpredicted: CRIU does not start, so criu check and the deciding tests behind it fail, with a type and CRIU's Error lines.
    const plain = byName("4.1.1_nomb_none_native");
    const check = plain.testcase.find((c) => c.name === "criu-check")!;
    expect(check.classname).toBe("cr-guest.4_1_1_nomb_none_native");
    expect(check.failure).toMatchObject({ type: "failure", message: "criu check: exit 1" });
    expect(check.failure!["#text"]).toContain(KERNDAT);
    // Features never fail a build: informational, skipped with the reason.
    const feature = plain.testcase.find((c) => c.name === "feature/timens")!;
    expect(feature.failure).toBeUndefined();
    expect(feature.skipped!.message).toMatch(/^informational \(FAIL\): /);
    expect(Number(plain.failures)).toBe(1);
    // Predicted: the same failures are expected failures, skipped, naming the prediction.
    const xf = suites.filter((x) => x.name === "4.1.1_nomb_none_native")[1];
    expect(Number(xf.failures)).toBe(0);
    expect(xf.testcase.find((c) => c.name === "criu-check")!.skipped!.message).toBe(
      "expected failure: CRIU 4.1.1 on a kernel with CONFIG_MEMBARRIER=n will fail every command",
    );
    // A PASS cell with a failing informational test is green in a viewer.
    const green = byName("4.1.1_6.12_none_native");
    expect(Number(green.failures) + Number(green.errors)).toBe(0);
    expect(green.testcase.find((c) => c.name === "criu-check-all")!.skipped!.message).toMatch(
      /^informational/,
    );
    expect(byName("4.2.1_6.12_none_native").testcase[0]).toMatchObject({
      name: "boot",
      error: { type: "infrastructure", message: "panic: Kernel panic" },
    });
    expect(byName("3.19_6.12_none_native").testcase[0]).toMatchObject({
      name: "cell",
      skipped: { message: "no source" },
    });
  });

  it("merge keeps one cell per id, the newest", () => {
    const older = good("4.1.1");
    const newer = { ...good("4.1.1", "6.12", "none", "FAIL"), finished: "2026-11-24T00:00:00.000Z" };
    const m = mergeCells([[older, good("3.17.1")], [newer]]);
    expect(m.cells.map((c) => c.id)).toEqual(["3.17.1_6.12_none_native", "4.1.1_6.12_none_native"]);
    expect(m.cells[1].status).toBe("FAIL");
    expect(m.duplicates).toEqual(["4.1.1_6.12_none_native"]);
  });

  it("compare: regressions, fixes, new and removed cells; infrastructure errors apart, never regressions", () => {
    const old = [good("3.17.1"), good("4.1.1"), noMembarrier, good("4.2.1")];
    const now = [
      good("3.17.1", "6.12", "none", "FAIL"), // regression
      good("4.1.1", "nomb", "none"), // fix (same id as noMembarrier)
      cell("4.2.1", "6.12", "none", [], { status: "ERROR", reason: "timeout" }), // infra: not a regression
      good("4.2.1", "6.12", "mb"), // new
    ];
    const c = compareReports(old, now);
    expect(c.regressions.map((x) => `${x.cell} ${x.test}`)).toEqual([
      "3.17.1_6.12_none_native membarrier/registration",
    ]);
    expect(c.fixes.map((x) => `${x.cell} ${x.test}`)).toEqual([
      "4.1.1_nomb_none_native criu-check",
      "4.1.1_nomb_none_native feature/timens",
    ]);
    expect(c.newCells).toEqual(["4.2.1_6.12_mb_native"]);
    expect(c.removedCells).toEqual(["4.1.1_6.12_none_native"]);
    expect(c.errors).toEqual([{ cell: "4.2.1_6.12_none_native", side: "new", reason: "timeout" }]);
    const md = renderComparison(c, true);
    expect(md).toContain("### Regressions (1)");
    expect(md).toContain(
      "- `3.17.1_6.12_none_native` membarrier/registration: PASS -> FAIL (`after restore: EPERM`)",
    );
    expect(renderComparison(c, false)).toContain(
      "1 regressions, 2 fixes, 1 new cells, 1 removed cells, 1 infrastructure errors",
    );
    // A cell that stops building is a regression too.
    const broken = compareReports(
      [good("4.1.1")],
      [cell("4.1.1", "6.12", "none", [], { status: "BUILD-FAILED", reason: "criu: patch does not apply" })],
    );
    expect(broken.regressions).toMatchObject([{ test: "build", to: "BUILD-FAILED" }]);
  });

  it(
    "the CLI: compare exits 1 on a regression and 0 otherwise; report merge writes all four reports",
    { timeout: 60_000 },
    async () => {
      const dir = tempDir("crg-compare-");
      const write = (name: string, cells: CellResult[]) => {
        const f = join(dir, name);
        writeFileSync(f, JSON.stringify(buildReport("fixture", cells)));
        return f;
      };
      const a = write("old.json", [good("3.17.1"), good("4.1.1")]);
      const b = write("new.json", [good("3.17.1", "6.12", "none", "FAIL"), good("4.1.1")]);
      const regressed = await crGuest(["compare", a, b]);
      expect(regressed.exitCode).toBe(1);
      expect(regressed.stdout).toContain("Regressions (1)");
      const same = await crGuest(["compare", a, a, "--markdown"]);
      expect(same.exitCode, same.stderr).toBe(0);
      expect(same.stdout).toContain("0 regressions");
      // Only an infrastructure error in the new report: reported apart, exit 0.
      const infra = write("infra.json", [
        good("3.17.1"),
        cell("4.1.1", "6.12", "none", [], { status: "ERROR", reason: "panic" }),
      ]);
      const e = await crGuest(["compare", a, infra]);
      expect(e.exitCode).toBe(0);
      expect(e.stdout).toContain("Infrastructure errors (not compared) (1)");
      const bad = await crGuest(["compare", a]);
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr).toContain("compare takes two reports");

      // Cells from two "machines" (per-version CI jobs), merged.
      for (const [m, c] of [
        ["m1", good("3.17.1")],
        ["m2", noMembarrier],
      ] as const) {
        mkdirSync(join(dir, m, "cells", c.id), { recursive: true });
        writeFileSync(join(dir, m, "cells", c.id, "cell.json"), JSON.stringify(c));
      }
      const merged = await crGuest([
        "report",
        "merge",
        join(dir, "m1"),
        join(dir, "m2"),
        "--out",
        join(dir, "report"),
      ]);
      expect(merged.exitCode, merged.stderr).toBe(0);
      expect(merged.stdout).toContain("merged 2 cells from 2 inputs");
      expect(JSON.parse(readFileSync(join(dir, "report", "matrix.json"), "utf8")).cells).toHaveLength(2);
      expect(readFileSync(join(dir, "report", "matrix.md"), "utf8")).toContain(
        "kerndat_has_membarrier_get_registrations",
      );
      expect(readFileSync(join(dir, "report", "junit.xml"), "utf8")).toContain("<testsuites");
      expect(readFileSync(join(dir, "report", "matrix.html"), "utf8")).toContain("<table>");
      const none = await crGuest(["report", "merge", join(dir, "report", "matrix.md")]);
      expect(none.exitCode).toBe(2);
      expect(none.stderr).toMatch(/matrix\.md is not JSON/);
    },
  );
});

describe("findings follow the catalog's facts", () => {
  it("state a CRIU range only through the fact they rest on", async () => {
    const { FINDINGS_FILE } = await import("../../scripts/data/findings.js");
    const { loadCriuCatalog, readableRange } = await import("../../scripts/data/criu-catalog.js");
    const { loadYamlFile } = await import("../../scripts/lib/yaml-file.js");
    const catalog = loadCriuCatalog();
    const raw = (
      loadYamlFile(FINDINGS_FILE).value as { findings: { id: string; say: string; fact?: string }[] }
    ).findings;
    // No hand-written version claim: a version number in a sentence must come from {criu}.
    for (const f of raw) expect(f.say, f.id).not.toMatch(/\d+\.\d+|\d\.x/);
    const rules = repoData().findings;
    const lost = rules.find((r) => r.id === "membarrier-registration-lost")!;
    expect(lost.say).toContain(
      `CRIU ${readableRange(catalog.facts.restores_membarrier_registration.criu)} keeps it`,
    );
    expect(lost.say).toContain("CRIU >= 3.19 keeps it");
    expect(rules.find((r) => r.id === "membarrier-probe-fatal")!.say).toMatch(
      /^CRIU >= 3\.19 needs CONFIG_MEMBARRIER/,
    );
    expect(readableRange("<3.18.0")).toBe("< 3.18");
    expect(readableRange(">=4.1.1")).toBe(">= 4.1.1");
  });
});

describe("kernel-aware findings and predictions", () => {
  const on61 = (criu: string, membarrier: CellTest["status"]) => {
    const c = good(criu, "6.1", "none", membarrier);
    return {
      ...c,
      identities: {
        ...c.identities,
        kernel: { key: "k61", version: "6.1.176", release: "6.1.176", config_sha256: "c" },
      },
    };
  };
  it("a finding scoped to its fact counts only cells whose CRIU and kernel are in the fact's ranges", () => {
    const rule = repoData().findings.find((r) => r.id === "membarrier-without-get-registrations")!;
    expect(rule.holds).toEqual({ criu: ">=3.19.0", kernel: "<6.3.0" });
    expect(rule.say).toContain("on guest kernels < 6.3");
    // 3.17.1 on 6.1 loses the registration (outside the CRIU range); 4.1.1 on 6.12 is outside the kernel range.
    const cells = [on61("4.1.1", "PASS"), on61("3.17.1", "FAIL"), good("4.1.1")];
    const [f] = deriveFindings(cells, [rule]);
    expect(f.seen_in.map((x) => x.cell)).toEqual(["4.1.1_6.1_none_native"]);
    // Without the scope every passing cell would be taken as evidence.
    const [unscoped] = deriveFindings(cells, [{ ...rule, holds: undefined }]);
    expect(unscoped.seen_in.map((x) => x.cell)).toEqual(["4.1.1_6.1_none_native", "4.1.1_6.12_none_native"]);
    // An unknown kernel version is never evidence.
    const noKernel = { ...on61("4.1.1", "PASS"), identities: {} };
    expect(deriveFindings([noKernel], [rule])).toEqual([]);
  });
  it("each prediction naming a test is checked against that test's status", () => {
    const c = {
      ...on61("3.17.1", "FAIL"),
      predicted: [
        {
          severity: "fail",
          id: "membarrier-registration",
          what: "loses it",
          test: "membarrier/registration",
          expect: "FAIL" as const,
        },
        { severity: "info", id: "x", what: "starts", test: "criu-check", expect: "FAIL" as const },
        { severity: "warn", id: "kernel-TUN", what: "kernel lacks CONFIG_TUN" },
      ],
    };
    const checks = predictionChecks(c);
    expect(checks.map((k) => [k.test, k.observed, k.held])).toEqual([
      ["membarrier/registration", "FAIL", true],
      ["criu-check", "PASS", false],
    ]);
    expect(renderMarkdown(buildReport("m", [c], { rules: [] }))).toContain(
      'predicted FAIL for criu-check ("starts"); observed: PASS (NOT as predicted)',
    );
    // A cell that never booted has nothing to check a prediction against.
    expect(predictionChecks({ ...c, status: "ERROR" })[0].held).toBeUndefined();
  });
});

describe("verdicts: deciding, informational, expected failures", () => {
  const hang = t("frozen-cgroup/without-freeze-cgroup", "FAIL", "hang: dump did not finish in 10s");
  const withHang = (c: CellResult) => ({
    ...c,
    tests: [...c.tests, { ...hang, outcome: "hang" }, t("frozen-cgroup/with-freeze-cgroup", "PASS")],
  });
  it("one summary line that separates what decides from what informs", () => {
    const c = withHang(good("4.1.1"));
    expect(c.status).toBe("PASS");
    expect(cellSummary(c)).toBe(
      "deciding: 8 passed, 0 failed; informational: 1/2 features, observed: criu-check-all (FAIL), frozen-cgroup/without-freeze-cgroup (hang)",
    );
    // The observing case does not colour its column; a deciding failure does.
    const cols = reportColumns([c]);
    expect(
      columnStatus(
        c,
        cols.find((x) => x.key === "frozen-cgroup")!,
      ),
    ).toBe("PASS");
    const broken = {
      ...c,
      tests: c.tests.map((x) =>
        x.name === "frozen-cgroup/with-freeze-cgroup" ? { ...x, status: "FAIL" as const } : x,
      ),
    };
    expect(
      columnStatus(
        broken,
        cols.find((x) => x.key === "frozen-cgroup")!,
      ),
    ).toBe("FAIL");
    // Over several cells an observation is counted, not repeated.
    expect(reportSummary([c, withHang(good("4.2.1"))])).toBe(
      "deciding: 16 passed, 0 failed; informational: 2/4 features, observed: criu-check-all (FAIL) in 2 cells, frozen-cgroup/without-freeze-cgroup (hang) in 2 cells",
    );
  });
  it("a plain check the kernel fails (check/NAME) explains criu check's failure alone; a start-up probe explains every one", () => {
    const cell = {
      ...noMembarrier,
      tests: [
        ...noMembarrier.tests,
        { ...noMembarrier.tests.find((t) => t.name === "criu-check")!, name: "simple-process/dump-restore" },
      ],
    };
    const plain = {
      severity: "fail",
      id: "check/check_fdinfo_ext",
      what: "plain criu check fails",
      test: "criu-check",
      expect: "FAIL" as const,
    };
    const judged = (id: string) => judgeCell({ ...cell, predicted: [{ ...plain, id }] });
    const byCheck = judged("check/check_fdinfo_ext");
    expect(byCheck.find((x) => x.test.name === "criu-check")!.verdict).toBe("xfail");
    expect(byCheck.find((x) => x.test.name === "simple-process/dump-restore")!.verdict).toBe("fail");
    const byProbe = judged("probe/kerndat_fdinfo_has_lock");
    expect(byProbe.find((x) => x.test.name === "simple-process/dump-restore")!.verdict).toBe("xfail");
  });
  it("a predicted failure is expected (XFAIL) and explains the failures of a CRIU that cannot start; a predicted failure that passes is XPASS", () => {
    const p = {
      severity: "fail",
      id: "membarrier-probe",
      what: "will fail every command",
      test: "criu-check",
      expect: "FAIL" as const,
    };
    const xf = { ...noMembarrier, predicted: [p] };
    const j = judgeCell(xf);
    expect(j.filter((x) => x.verdict === "fail")).toEqual([]);
    expect(j.find((x) => x.test.name === "criu-check")).toMatchObject({ verdict: "xfail", because: p.what });
    expect(tally(j)).toMatchObject({ failed: 0, expectedFailures: 1, passed: 2 });
    expect(columnStatus(xf, reportColumns([xf])[0])).toBe("XFAIL");
    expect(reportSummary([xf])).toMatch(/^deciding: 2 passed, 0 failed, 1 expected failure, 2 skipped/);
    // Without the prediction the same cell has an unexpected failure.
    expect(tally(judgeCell(noMembarrier)).failed).toBe(1);
    // The prediction did not come true: an unexpected pass, never hidden.
    const xp = {
      ...good("3.17.1"),
      predicted: [
        {
          severity: "warn",
          id: "membarrier-registration",
          what: "loses it",
          test: "membarrier/registration",
          expect: "FAIL" as const,
        },
      ],
    };
    expect(judgeCell(xp).find((x) => x.test.name === "membarrier/registration")!.verdict).toBe("xpass");
    expect(cellSummary(xp)).toContain("1 unexpected pass");
    // A lost registration it predicted is expected, and only that test.
    const lost = { ...good("3.17.1", "6.12", "none", "FAIL"), predicted: xp.predicted };
    expect(tally(judgeCell(lost))).toMatchObject({ failed: 0, expectedFailures: 1 });
  });
});

describe("how well a run packed the machine", () => {
  it("boot-seconds over wall-clock, counting only cells that booted", () => {
    const at = (c: CellResult, start: string, end: string, boot: number, cached = false) => ({
      ...c,
      started: start,
      finished: end,
      stages: { boot: { seconds: boot, cached, shared: false, vcpus: 1 } },
    });
    const cells = [
      at(good("4.1.1"), "2026-11-30T10:00:00.000Z", "2026-11-30T10:02:00.000Z", 100),
      at(good("4.2.1"), "2026-11-30T10:00:30.000Z", "2026-11-30T10:03:20.000Z", 120),
      at(good("3.17.1"), "2026-11-30T09:00:00.000Z", "2026-11-30T09:00:01.000Z", 90, true),
    ];
    expect(bootParallelism(cells)).toEqual({
      bootSeconds: 220,
      wallSeconds: 200,
      parallelism: 1.1,
      vcpus: { 1: 2 },
    });
    expect(renderMarkdown(buildReport("m", cells, { rules: [] }))).toContain(
      "Boots: 220 boot-seconds in 200 s of wall-clock, a parallelism of 1.10 (guests: 2 with 1 vCPU).",
    );
    expect(bootParallelism([cells[2]])).toBeNull();
  });
});
