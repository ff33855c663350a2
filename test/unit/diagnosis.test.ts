/**
 * The diagnosis of failing guest tests: a recorded run (a real results.json, trimmed) held
 * against the real .config of its kernel, with options taken out as a kernel lacking them
 * would have them; the cause in results.json, the smoke text, matrix.md, matrix.html, JUnit
 * and --json, for a fresh run, a cached one and a cell stored before causes existed.
 */
import { describe, expect, it } from "vitest";
import { XMLParser } from "fast-xml-parser";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { parseOutput } from "../../scripts/lib/output-schemas.js";
import { loadDotConfig } from "../../scripts/data/fragments.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { diagnoseRun, fixFragments, withCauses } from "../../scripts/boot/causes.js";
import { criuBuildConditions } from "../../scripts/data/requirement-check.js";
import { formatRun, type RunResults } from "../../scripts/boot/stage.js";
import { applyRun, baseCell } from "../../scripts/matrix/run.js";
import {
  cellDiagnoses,
  diagnoseCell,
  INFORMATIONAL_TESTS,
  type CellResult,
} from "../../scripts/matrix/cell.js";
import { buildReport, renderHtml, renderJunit, renderMarkdown } from "../../scripts/matrix/report.js";
import { expectValid } from "../helpers/schemas.js";
import { tempDir } from "../helpers/temp.js";

const CONFIG = join(REPO_ROOT, "test/fixtures/kernel/6.12.107-default.config");
const RUN_FILE = join(REPO_ROOT, "test/fixtures/runs/6.12.107-criu-4.1.1-results.json");
const recorded = (): RunResults =>
  parseOutput("results", JSON.parse(readFileSync(RUN_FILE, "utf8")), RUN_FILE);
const FRAGMENTS = fixFragments(["guest-base", "checkpoint-restore"]);

/** The kernel's .config with these options off, as `make olddefconfig` writes an unset one. */
function without(...symbols: string[]): Map<string, string> {
  const config = loadDotConfig(CONFIG);
  for (const s of symbols) config.set(`CONFIG_${s}`, "n");
  return config;
}

/** The run as the guest reports it on a kernel that breaks these tests (CRIU exits 1). */
function failing(r: RunResults, ...names: string[]): RunResults {
  const tests = r.tests.map((t) => {
    if (!names.includes(t.name)) return t;
    const { outcome: _o, diagnostics: _d, ...rest } = t;
    return { ...rest, status: "FAIL" as const, exit_code: 1, message: "exit 1", error_lines: [] };
  });
  return { ...r, tests };
}

/** The .config file's text with one option unset. */
const configWithout = (symbol: string) =>
  readFileSync(CONFIG, "utf8").replace(`CONFIG_${symbol}=y`, `# CONFIG_${symbol} is not set`);

function diagnosed(r: RunResults, config: Map<string, string>): RunResults {
  const tests = withCauses(r.tests, {
    config,
    kernelVersion: r.identities.kernel.version,
    criu: r.identities.criu,
    map: repoData().kernelRequirements,
    fragments: FRAGMENTS,
  });
  return { ...r, tests };
}

const test = (r: RunResults | CellResult, name: string) => r.tests.find((t) => t.name === name)!;

/** The run as a matrix (or smoke's one-cell report) keeps it. */
function cellOf(r: RunResults): CellResult {
  const c = baseCell(
    "diagnosis",
    {
      id: "4.1.1_6.12_none_trixie",
      axes: { criu: "4.1.1", kernel: "6.12", patches: "none", suite: "trixie" },
      criuVersion: "4.1.1",
      patches: [],
      sets: [],
      inputsKey: r.run_key,
    },
    new Date(r.created),
  );
  c.identities = {
    kernel: r.identities.kernel,
    criu: { key: "39f96118471c2b13", ...r.identities.criu },
  };
  const informational = [...INFORMATIONAL_TESTS, "frozen-cgroup/without-freeze-cgroup"];
  return applyRun(c, { dir: "/nonexistent/run", cached: true, results: r }, informational, "/nonexistent");
}

/** JUnit's <testcase> of one test, parsed. */
function junitCase(xml: string, name: string): Record<string, Record<string, string>> {
  const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "" }).parse(xml);
  const cases = [doc.testsuites.testsuite.testcase].flat() as Record<string, unknown>[];
  return cases.find((c) => c.name === name) as Record<string, Record<string, string>>;
}

describe("diagnosis of a recorded run against its kernel's .config", () => {
  it("as recorded: each failure the map covers has its cause; passes and other failures have none", () => {
    const r = diagnosed(recorded(), loadDotConfig(CONFIG));
    expect(test(r, "feature/loginuid").cause).toEqual({
      kind: "config",
      entries: ["feature/loginuid"],
      symbols: ["AUDIT"],
      text: "needs CONFIG_AUDIT, off in this kernel; set it in a fragment (e.g. kernel-fragments/checkpoint-restore.conf)",
    });
    // A static CRIU lacks libnftables: its build, not the kernel, is the cause.
    expect(test(r, "feature/nftables").cause).toMatchObject({
      kind: "build",
      symbols: [],
      text: "needs a CRIU linked with libnftables, which this build is not",
    });
    // criu check --all names each check it lacks; compat is in every build (compat_cr passed).
    const all = test(r, "criu-check-all").cause!;
    expect(all.entries).toContain("check/check_loginuid");
    expect(all.entries).not.toContain("check/check_compat_cr");
    expect(all.text).toMatch(/^check_loginuid needs CONFIG_AUDIT, off in this kernel; /);
    // The frozen-cgroup hang and the Kata mounts are not about the kernel's options.
    expect(test(r, "frozen-cgroup/without-freeze-cgroup").cause).toBeUndefined();
    expect(test(r, "kata-container/sandbox-mounts").cause).toBeUndefined();
    for (const t of r.tests.filter((x) => x.status === "PASS")) expect(t.cause, t.name).toBeUndefined();
    expectValid("results", r);
  });

  it("without USERFAULTFD: feature/uffd's cause names it in results, the smoke text, matrix.md, matrix.html and JUnit", () => {
    const r = diagnosed(failing(recorded(), "feature/uffd"), without("USERFAULTFD"));
    const cause = test(r, "feature/uffd").cause!;
    expect(cause).toMatchObject({ kind: "config", entries: ["feature/uffd"], symbols: ["USERFAULTFD"] });
    expect(cause.text).toMatch(
      /^needs CONFIG_USERFAULTFD, off in this kernel; set it in a fragment \(kernel-fragments\/checkpoint-restore\.conf:\d+ sets it\)$/,
    );
    const line = `diagnosis: ${cause.text}`;
    // The smoke text: under the FAIL line.
    const text = formatRun(r).split("\n");
    const at = text.findIndex((l) => l.startsWith("FAIL  feature/uffd "));
    expect(text[at + 1].trim()).toBe(line);
    const report = buildReport("diagnosis", [cellOf(r)]);
    expect(renderMarkdown(report)).toContain(
      `- \`feature/uffd\` FAIL (informational): exit 1\n  - ${line}\n`,
    );
    expect(renderHtml(report)).toContain(`exit 1<br>${line}`);
    // JUnit: an informational test is skipped, the cause in its message.
    const uffd = junitCase(renderJunit(report), "feature/uffd");
    expect(uffd.skipped.message).toBe(`informational (FAIL): exit 1; ${line}`);
    // matrix --json lists it with the cell.
    expect(cellDiagnoses(report.cells[0])).toContainEqual({ test: "feature/uffd", status: "FAIL", cause });
    expectValid("matrix", JSON.parse(JSON.stringify(report)));
  });

  it("without FILE_LOCKING: criu-check's cause says every CRIU command fails at start, and every test running CRIU shares it", () => {
    // CRIU does not start: every test that runs it fails alike; ptrace and the config check pass.
    const runsNoCriu = ["criu-version", "kernel-config", "ptrace-attach"];
    const broken = recorded()
      .tests.map((t) => t.name)
      .filter((n) => !runsNoCriu.includes(n));
    const r = diagnosed(failing(recorded(), ...broken, "ptrace-attach"), without("FILE_LOCKING"));
    const check = test(r, "criu-check").cause!;
    expect(check).toMatchObject({
      kind: "config",
      entries: ["probe/kerndat_fdinfo_has_lock"],
      symbols: ["FILE_LOCKING"],
    });
    expect(check.text).toMatch(
      /^every CRIU command fails at start: start-up probe kerndat_fdinfo_has_lock needs CONFIG_FILE_LOCKING, off in this kernel; set it in a fragment \(kernel-fragments\/[\w-]+\.conf:\d+ sets it\)$/,
    );
    expect(test(r, "simple-process/dump-restore").cause).toEqual(check);
    expect(test(r, "feature/uffd").cause).toEqual(check);
    // ptrace runs no CRIU: the map says nothing of it.
    expect(test(r, "ptrace-attach").cause).toBeUndefined();
    const report = buildReport("diagnosis", [cellOf(r)]);
    const md = renderMarkdown(report);
    // The tests failing alike are one entry, the diagnosis said once.
    expect(md.split(`diagnosis: ${check.text}`).length - 1).toBe(1);
    expect(md).toContain(
      `- \`criu-check\`, \`criu-check-all\`, \`feature/compat_cr\` and ${broken.length - 3} more FAIL: exit 1\n  - diagnosis: every CRIU command`,
    );
    // A deciding failure: JUnit's <failure> message carries the cause.
    expect(junitCase(renderJunit(report), "criu-check").failure.message).toBe(
      `exit 1; diagnosis: ${check.text}`,
    );
  });

  it("a failure the .config does not explain is 'unexplained', never a guess", () => {
    const r = diagnosed(failing(recorded(), "criu-check", "feature/uffd"), loadDotConfig(CONFIG));
    expect(test(r, "criu-check").cause).toEqual({
      kind: "unexplained",
      entries: [],
      symbols: [],
      text: "unexplained: the kernel has every option this needs",
    });
    expect(test(r, "feature/uffd").cause).toMatchObject({ kind: "unexplained", entries: ["feature/uffd"] });
    expect(renderMarkdown(buildReport("diagnosis", [cellOf(r)]))).toContain(
      "  - diagnosis: unexplained: the kernel has every option this needs",
    );
  });

  it("a test with nothing to diagnose is left as it was (the outputs byte for byte); a stale cause goes", () => {
    const plain = recorded();
    const again = diagnosed(plain, loadDotConfig(CONFIG));
    const untouched = plain.tests.filter((t) => !test(again, t.name).cause);
    expect(untouched.length).toBeGreaterThan(5);
    for (const t of untouched) expect(test(again, t.name), t.name).toBe(t);
    // Without causes, every output is what it was.
    const bare = { ...again, tests: again.tests.map(({ cause: _c, ...t }) => t) };
    expect(formatRun(bare)).toBe(formatRun(plain));
    const before = buildReport("d", [cellOf(plain)], { created: "x" });
    const after = buildReport("d", [cellOf(bare)], { created: "x" });
    expect(renderMarkdown(after)).toBe(renderMarkdown(before));
    expect(renderJunit(after)).toBe(renderJunit(before));
    // A cause the map no longer finds (the test passes now) is dropped.
    const stale = {
      ...plain,
      tests: plain.tests.map((t) => ({ ...t, cause: test(again, "feature/loginuid").cause })),
    };
    expect(test(diagnosed(stale, loadDotConfig(CONFIG)), "criu-check").cause).toBeUndefined();
  });

  it("a run read from the cache gets causes from <kernel dir>/config; none when the file is gone", () => {
    const kernelDir = tempDir("crg-diag-kernel-");
    writeFileSync(join(kernelDir, "config"), configWithout("USERFAULTFD"));
    const r = failing(recorded(), "feature/uffd");
    expect(test(diagnoseRun(r, join(kernelDir, "config"), FRAGMENTS), "feature/uffd").cause?.symbols).toEqual(
      ["USERFAULTFD"],
    );
    expect(diagnoseRun(r, join(kernelDir, "missing"), FRAGMENTS)).toBe(r);
  });

  it("the boot stage returns a cached run with causes from its kernel's .config, its key and files untouched", async () => {
    const { planRun, runBootTests } = await import("../../scripts/boot/stage.js");
    const { loadConfig } = await import("../../scripts/lib/config.js");
    const cacheDir = tempDir("crg-diag-runs-");
    const kernelDir = tempDir("crg-diag-kernel-");
    writeFileSync(join(kernelDir, "config"), configWithout("USERFAULTFD"));
    const config = loadConfig({ set: [`cache_dir=${cacheDir}`] });
    const run = failing(recorded(), "feature/uffd");
    const options = {
      kernel: {
        dir: kernelDir,
        key: run.identities.kernel.key,
        version: "6.12.107",
        config_sha256: "c",
        requested: new Map(),
      },
      image: {
        dir: "/i/img1",
        metadata: { root: { device: "/dev/sda1", partuuid: "c7a5" }, agent: null },
        manifest: { base: "fresh trixie minbase" },
      } as never,
      criu: { metadata: { ...run.identities.criu, patches: [] } } as never,
      accel: "tcg" as const,
    };
    const key = planRun(config, options).key;
    const stored = join(cacheDir, "runs", key, "metadata.json");
    mkdirSync(join(cacheDir, "runs", key), { recursive: true });
    writeFileSync(stored, JSON.stringify({ ...run, run_key: key }));
    const before = readFileSync(stored, "utf8");
    const r = await runBootTests(config, options);
    expect(r.cached).toBe(true);
    expect(r.results.run_key).toBe(key);
    expect(test(r.results, "feature/uffd").cause?.symbols).toEqual(["USERFAULTFD"]);
    expect(readFileSync(stored, "utf8")).toBe(before);
  });

  it("a cell stored before causes existed gets them from its kernel's .config in the cache", () => {
    const cacheDir = tempDir("crg-diag-cache-");
    const r = failing(recorded(), "feature/uffd");
    const stored = cellOf(r);
    expect(cellDiagnoses(stored)).toEqual([]);
    // No .config in this cache: the cell as it was.
    expect(diagnoseCell(stored, cacheDir, FRAGMENTS)).toBe(stored);
    const dir = join(cacheDir, "kernel", r.identities.kernel.key);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "config"), configWithout("USERFAULTFD"));
    const fresh = diagnoseCell(stored, cacheDir, FRAGMENTS);
    expect(test(fresh, "feature/uffd").cause?.symbols).toEqual(["USERFAULTFD"]);
    expect(test(fresh, "feature/nftables").cause?.kind).toBe("build");
    expectValid("cell", fresh);
  });

  it("the matrix report takes its stored cells with the causes their kernels' .config give now", async () => {
    const { loadMatrixSpec, planMatrix } = await import("../../scripts/matrix/spec.js");
    const { storedCellsOf } = await import("../../scripts/matrix/command.js");
    const { writeCell } = await import("../../scripts/matrix/cell.js");
    const cacheDir = tempDir("crg-diag-matrix-");
    const plan = planMatrix(loadMatrixSpec(join(REPO_ROOT, "test/fixtures/matrix/small.yaml")), {
      set: [`cache_dir=${cacheDir}`],
    });
    const r = failing(recorded(), "feature/uffd");
    const outDir = join(cacheDir, "matrix", "small");
    await writeCell(outDir, { ...cellOf(r), id: plan.cells[0].id });
    mkdirSync(join(cacheDir, "kernel", r.identities.kernel.key), { recursive: true });
    writeFileSync(join(cacheDir, "kernel", r.identities.kernel.key, "config"), configWithout("USERFAULTFD"));
    const [cell] = storedCellsOf(plan, outDir);
    expect(test(cell, "feature/uffd").cause?.symbols).toEqual(["USERFAULTFD"]);
  });

  it("a CRIU's build conditions come from how it was obtained", () => {
    expect(criuBuildConditions({ provider: "debian-source", link: "static" })).toEqual(["compat"]);
    expect(criuBuildConditions({ provider: "debian-source", link: "dynamic" })).toEqual([
      "libnftables",
      "compat",
    ]);
    expect(criuBuildConditions({ provider: "debian-binary", link: "debian-binary" })).toEqual([
      "libnftables",
      "compat",
    ]);
    // A dynamic CRIU has libnftables: feature/nftables is then unexplained by the map.
    const r = recorded();
    const dynamic = {
      ...r,
      identities: { ...r.identities, criu: { ...r.identities.criu, link: "dynamic" } },
    };
    expect(test(diagnosed(dynamic, loadDotConfig(CONFIG)), "feature/nftables").cause?.kind).toBe(
      "unexplained",
    );
  });
});
