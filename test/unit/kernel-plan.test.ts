import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../scripts/lib/config.js";
import {
  forKernel,
  mergeFragments,
  parseFragment,
  renderConfigFragment,
  parseDotConfig,
} from "../../scripts/data/fragments.js";
import { kernelCacheKey, planKernel, resolveKernelInputs } from "../../scripts/kernel/plan.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { parseYaml } from "../../scripts/lib/yaml-file.js";
import {
  loadKernelCatalog,
  parseKernelCatalog,
  resolveKernelVersion,
} from "../../scripts/data/kernel-catalog.js";
import { FRAGMENTS_DIR } from "../../scripts/lib/paths.js";
import { kernelResult, type KernelMetadata } from "../../scripts/kernel/stage.js";
import { formatVerifyReport, verifyConfig } from "../../scripts/kernel/verify.js";
import { tempDir } from "../helpers/temp.js";

describe("fragments", () => {
  it("parses values, reasons and 'is not set', and rejects garbage with file:line", () => {
    const f = parseFragment(
      'CONFIG_A=y  # why a\n# a comment\n# CONFIG_B is not set\nCONFIG_S="x y" # str\nCONFIG_N=16\n',
      "f.conf",
    );
    expect(f.entries.map((e) => [e.symbol, e.value, e.reason, e.line])).toEqual([
      ["CONFIG_A", "y", "why a", 1],
      ["CONFIG_B", "n", "", 3],
      ["CONFIG_S", '"x y"', "str", 4],
      ["CONFIG_N", "16", "", 5],
    ]);
    expect(() => parseFragment("CONFIG_A=y\nMEMBARRIER=y\n", "g.conf")).toThrow(/g\.conf:2/);
  });

  it("merges in order, later wins, and records the override", () => {
    const a = parseFragment("CONFIG_A=y # a\nCONFIG_B=y # b\n", "a.conf");
    const b = parseFragment("CONFIG_A=n # off\n", "b.conf");
    const merged = mergeFragments([a, b]);
    expect(merged.values.get("CONFIG_A")!.value).toBe("n");
    expect(merged.overrides).toHaveLength(1);
    expect(renderConfigFragment(merged)).toBe("# CONFIG_A is not set\nCONFIG_B=y\n");
    expect(parseDotConfig(renderConfigFragment(merged)).get("CONFIG_A")).toBe("n");
  });

  it("every symbol in the repository's fragments carries a one-line reason", () => {
    for (const name of readdirSync(FRAGMENTS_DIR).filter((n) => n.endsWith(".conf"))) {
      const f = parseFragment(readFileSync(join(FRAGMENTS_DIR, name), "utf8"), name);
      expect(f.entries.length).toBeGreaterThan(0);
      for (const e of f.entries) expect(e.reason, `${name}:${e.line} ${e.symbol}`).not.toBe("");
    }
  });
});

describe("kernel versions", () => {
  const catalog = loadKernelCatalog();
  it("resolves a series to the newest pinned version, and exact versions exactly", () => {
    expect(resolveKernelVersion("6.12", catalog).version).toBe("6.12.107");
    expect(resolveKernelVersion("6.1", catalog).version).toBe("6.1.176");
    expect(resolveKernelVersion("6.12.95", catalog).version).toBe("6.12.95");
    expect(resolveKernelVersion("latest", catalog).version).toBe("7.1.8");
  });
  it("rejects an unknown version, listing the known ones", () => {
    expect(() => resolveKernelVersion("5.4", catalog)).toThrow(/unknown kernel version '5.4'/);
    try {
      resolveKernelVersion("6.12.999", catalog);
    } catch (err) {
      expect((err as { hint: string }).hint).toContain("6.12.107");
    }
  });
  it("every pin carries a Debian orig sha256", () => {
    for (const entry of catalog.values()) expect(entry.debian?.orig_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(() => parseKernelCatalog(parseYaml('versions:\n  "6.12": {}\n', "x.yaml"))).toThrow(
      /x\.yaml:2: '6\.12' is not a full kernel version/,
    );
    expect(() => parseKernelCatalog(parseYaml('versions:\n  "6.12.1": { debain: {} }\n', "x.yaml"))).toThrow(
      /x\.yaml:2: unknown key 'versions\.6\.12\.1\.debain' \(did you mean 'debian'\?\)/,
    );
  });
});

describe("fragment lines for a kernel range", () => {
  it("a `# [kernel RANGE]` line counts only for kernels in that range; a bad range names file and line", () => {
    const f = parseFragment("CONFIG_A=y # always\nCONFIG_B=y # [kernel >=6.17] legacy tables\n", "r.conf");
    expect(f.entries[1]).toMatchObject({ symbol: "CONFIG_B", kernels: ">=6.17", reason: "legacy tables" });
    expect([...mergeFragments(forKernel([f], "6.12.107")).values.keys()]).toEqual(["CONFIG_A"]);
    expect([...mergeFragments(forKernel([f], "7.1.8")).values.keys()]).toEqual(["CONFIG_A", "CONFIG_B"]);
    expect(() => parseFragment("CONFIG_A=y # [kernel soon] x\n", "r.conf")).toThrow(
      /bad kernel range at r\.conf:1: 'soon'/,
    );
  });

  it("the C/R fragment asks for the legacy xtables switches on 6.17+ only, so 6.1, 6.12 and 7.x all verify", () => {
    const config = loadConfig();
    const inputs = { userFragments: [], hostCpus: 2 };
    const symbolsFor = (v: string) => [
      ...planKernel(loadConfig({ set: [`kernel.version=${v}`] }), repoData(), inputs).requested.values.keys(),
    ];
    expect(symbolsFor("6.12")).not.toContain("CONFIG_NETFILTER_XTABLES_LEGACY");
    expect(symbolsFor("7.1")).toEqual(
      expect.arrayContaining([
        "CONFIG_NETFILTER_XTABLES_LEGACY",
        "CONFIG_IP_NF_IPTABLES_LEGACY",
        "CONFIG_IP6_NF_IPTABLES_LEGACY",
      ]),
    );
    expect(config.kernel.version).toBe("6.12");
  });
});

describe("kernel cache key", () => {
  const config = loadConfig();
  const data = repoData();
  const inputs = { userFragments: [], hostCpus: 2 };
  const source = { provider: "debian", sha256: "ab", patches: [] };
  const tools = ["gcc 12", "ld 2.40"];
  it("is stable for the same inputs and changes with each input", () => {
    const plan = planKernel(config, data, inputs);
    const key = kernelCacheKey(plan, "allnoconfig", source, tools);
    expect(kernelCacheKey(planKernel(config, data, inputs), "allnoconfig", source, tools)).toBe(key);
    // The job count is not an input of the artifact.
    expect(
      kernelCacheKey(planKernel(config, data, { ...inputs, hostCpus: 64 }), "allnoconfig", source, tools),
    ).toBe(key);
    expect(kernelCacheKey(plan, "tinyconfig", source, tools)).not.toBe(key);
    expect(kernelCacheKey(plan, "allnoconfig", { ...source, sha256: "cd" }, tools)).not.toBe(key);
    expect(kernelCacheKey(plan, "allnoconfig", source, ["gcc 14", "ld 2.40"])).not.toBe(key);
    const dir = tempDir("crg-frag-");
    const extra = join(dir, "extra.conf");
    writeFileSync(extra, "CONFIG_MAGIC_SYSRQ=y # sysrq\n");
    expect(
      kernelCacheKey(
        planKernel(config, data, resolveKernelInputs(config, [extra])),
        "allnoconfig",
        source,
        tools,
      ),
    ).not.toBe(key);
  });

  it("planning is pure: a fragment set naming a fragment the data lacks is an error naming the set", () => {
    const without = {
      ...data,
      fragments: new Map([...data.fragments].filter(([n]) => n !== "checkpoint-restore")),
    };
    expect(() => planKernel(config, without, inputs)).toThrow(
      /names 'checkpoint-restore', but kernel-fragments\/checkpoint-restore\.conf does not exist/,
    );
  });
});

describe("kernel stage result", () => {
  const config = loadConfig();
  const plan = planKernel(config, repoData(), resolveKernelInputs(config));
  const requested = new Map([...plan.requested.values].map(([k, e]) => [k, e.value]));
  const final = new Map([...requested].map(([k, v]) => [k, v]));
  const report = verifyConfig({ requested: plan.requested, final, kernelVersion: plan.entry.version });
  const metadata = {
    verify: { checked: 10, ok: 9, mismatches: [], unknown: [], passed: true },
  } as unknown as KernelMetadata;
  const seconds = { source: 1 };

  it("a cached kernel has no report of this run: its text is the summary it was built with", () => {
    const r = kernelResult(
      "linux X",
      requested,
      { warnings: [], notes: [], kernel: { dir: "/k", metadata, cached: true } },
      seconds,
    );
    expect(r.report).toBeUndefined();
    expect(r.reportText).toBe(
      "linux X: 9/10 requested symbols landed in the final .config (verified when built)\n\nverification PASSED",
    );
    expect([r.dir, r.cached, r.requested]).toEqual(["/k", true, requested]);
  });

  it("a built kernel carries this run's report; a check-config run its report and .config, no kernel", () => {
    const built = kernelResult(
      "linux X",
      requested,
      { warnings: ["w"], notes: [], kernel: { dir: "/k", metadata, cached: false }, report, final },
      seconds,
    );
    expect([built.report, built.reportText, built.finalConfig, built.warnings]).toEqual([
      report,
      formatVerifyReport(report, "linux X"),
      undefined,
      ["w"],
    ]);
    const check = kernelResult("linux X", requested, { warnings: [], notes: [], report, final }, seconds);
    expect([check.dir, check.metadata, check.cached, check.finalConfig, check.report]).toEqual([
      undefined,
      undefined,
      false,
      final,
      report,
    ]);
    expect(() => kernelResult("linux X", requested, { warnings: [], notes: [] }, seconds)).toThrow(
      /the verification report is not set/,
    );
  });
});
