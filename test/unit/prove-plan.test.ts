/**
 * Planning a proof (explain --prove), on the real map and the default kernel's real final
 * .config (linux 6.12.107, fragment set default: test/fixtures/kconfig/default-6.12.107.config):
 * what each symbol is predicted to break, how symbols batch, the variant's request (EXPERT,
 * selectors, the trap put back), and the verdict of a run.
 */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { loadKernelRequirements } from "../../scripts/data/kernel-requirements.js";
import { loadDotConfig } from "../../scripts/data/fragments.js";
import { parseKconfigTree } from "../../scripts/kernel/kconfig.js";
import { renderVariant } from "../../scripts/variant/kernel-variant.js";
import {
  batch,
  candidates,
  configDiff,
  judgeBatch,
  mapTests,
  predictedFailures,
  refineVariant,
  variantLines,
  without,
} from "../../scripts/explain/prove-plan.js";

const map = loadKernelRequirements();
const config = loadDotConfig(join(__dirname, "../fixtures/kconfig/default-6.12.107.config"));
const base = { config, version: "6.12.107" };
const criu = { version: "4.1.1", build: ["compat" as const], patches: [] };

describe("what a symbol off is predicted to break", () => {
  it("USERFAULTFD: uffd and uffd-noncoop (criu check --all already fails on the default kernel)", () => {
    expect(predictedFailures(map, base, without(base, ["USERFAULTFD"]), criu).sort()).toEqual([
      "feature/uffd",
      "feature/uffd-noncoop",
    ]);
  });

  it("FILE_LOCKING: every CRIU command fails at start, so criu check and every feature", () => {
    const p = predictedFailures(map, base, without(base, ["FILE_LOCKING"]), criu);
    expect(p).toContain("criu-check");
    expect(p).toContain("feature/mnt_id");
    expect(p.filter((t) => t.startsWith("feature/")).length).toBeGreaterThan(30);
  });

  it("MEMBARRIER: fatal for CRIU 4.1.1, nothing for 3.17.1 (its probe came in 3.19)", () => {
    expect(predictedFailures(map, base, without(base, ["MEMBARRIER"]), criu)).toContain("criu-check");
    expect(
      predictedFailures(map, base, without(base, ["MEMBARRIER"]), { ...criu, version: "3.17.1" }),
    ).toEqual([]);
  });

  it("the tests the map covers are criu check, --all and each feature of this CRIU", () => {
    const tests = mapTests(map, criu, base);
    expect(tests.slice(0, 2)).toEqual(["criu-check", "criu-check-all"]);
    expect(tests).toContain("feature/uffd-noncoop");
    expect(tests).not.toContain("feature/timer_cr_ids"); // 4.2 only
  });
});

describe("candidates and batches", () => {
  const { prove, skipped } = candidates(map, base, criu);
  const names = prove.map((c) => c.symbol);

  it("takes the map's symbols that the default kernel has and whose loss shows", () => {
    expect(names).toEqual(expect.arrayContaining(["USERFAULTFD", "FILE_LOCKING", "EXPORTFS", "AIO"]));
    // AUDIT is off in the default kernel: nothing to take away.
    expect(skipped.find((s) => s.symbol === "AUDIT")?.why).toMatch(/off in the default kernel/);
    // nf_tables matters only to a CRIU linked with libnftables; this static build is not.
    expect(skipped.find((s) => s.symbol === "NF_TABLES")?.why).toMatch(/no check or feature/);
  });

  it("batches symbols whose predicted failures are disjoint, and keeps fatal ones alone", () => {
    const batches = batch(prove);
    const of = (s: string) => batches.find((b) => b.some((c) => c.symbol === s))!;
    expect(of("USERFAULTFD").length).toBeGreaterThan(1);
    expect(of("FILE_LOCKING").map((c) => c.symbol)).toEqual(["FILE_LOCKING"]);
    for (const b of batches) {
      const tests = b.flatMap((c) => c.predicted);
      expect(new Set(tests).size, b.map((c) => c.symbol).join("+")).toBe(tests.length);
    }
    expect(batches.length).toBeLessThan(prove.length);
  });
});

// Real Kconfig entries of linux 6.12.107 (init/Kconfig, fs/Kconfig), cut to what matters here.
const KCONFIG: Record<string, string> = {
  "/k/Kconfig": `
config EXPERT
	bool "Configure standard kernel features (expert users)"
config RSEQ
	bool "Enable rseq() system call" if EXPERT
	default y
	select MEMBARRIER
config MEMBARRIER
	bool "Enable membarrier() system call" if EXPERT
	default y
config FHANDLE
	bool "open by fhandle syscalls" if EXPERT
	select EXPORTFS
	default y
config EXPORTFS
	tristate
config USERFAULTFD
	bool "Enable userfaultfd() system call"
config ALWAYS_ON
	def_bool y
`,
};
const tree = parseKconfigTree({ srctree: "/k", vars: {}, readFile: (p) => KCONFIG[p] });

describe("the variant's request", () => {
  it("a plain prompt: the symbol off, nothing else", () => {
    expect(variantLines(["USERFAULTFD"], tree, config).lines).toEqual([
      { symbol: "USERFAULTFD", value: "n", why: "proved: off" },
    ]);
  });

  it("a prompt behind EXPERT, selected by an option that is on: both off, EXPERT on", () => {
    const { lines } = variantLines(["MEMBARRIER"], tree, config);
    expect(lines.map((l) => `${l.symbol}=${l.value}`)).toEqual(["MEMBARRIER=n", "RSEQ=n", "EXPERT=y"]);
    expect(lines[1].why).toBe("selects MEMBARRIER");
  });

  it("a symbol without a prompt is turned off through what selects it", () => {
    const { lines } = variantLines(["EXPORTFS"], tree, config);
    expect(lines.map((l) => `${l.symbol}=${l.value}`)).toEqual(["EXPORTFS=n", "FHANDLE=n", "EXPERT=y"]);
  });

  it("a symbol only its default sets cannot be turned off alone", () => {
    const r = variantLines(["ALWAYS_ON", "NO_SUCH"], tree, config);
    expect(r.lines).toEqual([]);
    expect(r.cannot.map((c) => c.symbol)).toEqual(["ALWAYS_ON", "NO_SUCH"]);
  });

  it("configuring refines it: the EXPERT trap put back, what Kconfig forced off requested off", () => {
    const first = variantLines(["MEMBARRIER"], tree, config).lines;
    const next = refineVariant(first, { trap: ["FILE_LOCKING", "POSIX_TIMERS"], forcedOff: [] });
    expect(next.slice(3).map((l) => `${l.symbol}=${l.value}`)).toEqual(["FILE_LOCKING=y", "POSIX_TIMERS=y"]);
    const settled = refineVariant(next, { trap: ["FILE_LOCKING"], forcedOff: ["POSIX_TIMERS"] });
    expect(settled.find((l) => l.symbol === "POSIX_TIMERS")?.value).toBe("n");
    expect(refineVariant(settled, { trap: [], forcedOff: [] })).toEqual(settled);
    const text = renderVariant(settled, "test");
    expect(text).toContain("# CONFIG_MEMBARRIER is not set  # proved: off");
    expect(text).toContain("CONFIG_FILE_LOCKING=y  # EXPERT trap");
  });

  it("the config diff lists every symbol whose value changed", () => {
    const v = new Map(config);
    v.delete("CONFIG_USERFAULTFD");
    v.set("CONFIG_EXPERT", "y");
    expect(configDiff(config, v)).toEqual([
      { symbol: "EXPERT", base: "n", variant: "y" },
      { symbol: "USERFAULTFD", base: "y", variant: "n" },
    ]);
  });
});

describe("the verdict of a variant run", () => {
  const universe = [
    "criu-check",
    "criu-check-all",
    "feature/uffd",
    "feature/uffd-noncoop",
    "feature/aio_remap",
  ];
  const baseRun = new Map([
    ["criu-check", "PASS"],
    ["criu-check-all", "FAIL"],
    ["feature/uffd", "PASS"],
    ["feature/uffd-noncoop", "PASS"],
    ["feature/aio_remap", "PASS"],
    ["simple-process/dump-restore", "PASS"],
  ]);
  const cands = [
    { symbol: "USERFAULTFD", predicted: ["feature/uffd", "feature/uffd-noncoop"] },
    { symbol: "AIO", predicted: ["feature/aio_remap"] },
  ];

  it("proven when exactly the predicted tests fail", () => {
    const run = new Map([
      ...baseRun,
      ["feature/uffd", "FAIL"],
      ["feature/uffd-noncoop", "FAIL"],
      ["feature/aio_remap", "FAIL"],
    ]);
    const v = judgeBatch(cands, universe, baseRun, run);
    expect(v.symbols.map((s) => s.status)).toEqual(["proven", "proven"]);
  });

  it("a predicted test that still passes is a mismatch of that symbol", () => {
    const run = new Map([...baseRun, ["feature/uffd", "FAIL"], ["feature/uffd-noncoop", "FAIL"]]);
    const v = judgeBatch(cands, universe, baseRun, run);
    expect(v.symbols[0].status).toBe("proven");
    expect(v.symbols[1]).toMatchObject({ status: "mismatch", stillPassed: ["feature/aio_remap"] });
  });

  it("a map test that fails unpredicted fails the batch; other changes are evidence only", () => {
    const run = new Map([
      ...baseRun,
      ["feature/uffd", "FAIL"],
      ["feature/uffd-noncoop", "FAIL"],
      ["feature/aio_remap", "FAIL"],
      ["criu-check", "FAIL"],
      ["simple-process/dump-restore", "FAIL"],
    ]);
    const v = judgeBatch(cands, universe, baseRun, run);
    expect(v.symbols.map((s) => s.status)).toEqual(["mismatch", "mismatch"]);
    expect(v.unpredicted.map((u) => u.test)).toEqual(["criu-check"]);
    expect(v.otherChanges.map((u) => u.test)).toEqual(["simple-process/dump-restore"]);
    // Predicted from the variant's final .config (Kconfig turned off more): not unpredicted.
    expect(judgeBatch(cands, universe, baseRun, run, ["criu-check"]).unpredicted).toEqual([]);
  });

  it("unobservable when every predicted test already fails on the default kernel", () => {
    const v = judgeBatch([{ symbol: "X", predicted: ["criu-check-all"] }], universe, baseRun, baseRun);
    expect(v.symbols[0].status).toBe("unobservable");
  });
});
