import { describe, expect, it } from "vitest";
import { join } from "node:path";
import {
  conjuncts,
  evalExpr,
  exprToString,
  parseExpr,
  parseKernelKconfig,
} from "../../scripts/kernel/kconfig.js";
import {
  mergeFragments,
  parseDotConfig,
  parseFragment,
  readDotConfig,
} from "../../scripts/data/fragments.js";
import { writeFileSync } from "node:fs";
import { formatVerifyReport, verifyConfig } from "../../scripts/kernel/verify.js";
import { tempDir } from "../helpers/temp.js";

const tree = parseKernelKconfig(join(__dirname, "../fixtures/kconfig"));
const cfg = (text: string) => parseDotConfig(text);
const request = (text: string) => mergeFragments([parseFragment(text, "test.conf")]);

describe("Kconfig expressions", () => {
  it("parses precedence and prints it back", () => {
    const e = parseExpr("A && (B || !C) && D=y");
    expect(exprToString(e)).toBe("A && (B || !C) && D=y");
    expect(conjuncts(e).map((t) => exprToString(t))).toEqual(["A", "B || !C", "D=y"]);
  });
  it("evaluates tristate logic, with m only under MODULES", () => {
    const c = new Map([
      ["CONFIG_A", "y"],
      ["CONFIG_B", "m"],
    ]);
    expect(evalExpr(parseExpr("A && B"), c)).toBe(0); // m without MODULES counts as n
    c.set("CONFIG_MODULES", "y");
    expect(evalExpr(parseExpr("A && B"), c)).toBe(1);
    expect(evalExpr(parseExpr("A || B"), c)).toBe(2);
    expect(evalExpr(parseExpr("!A"), c)).toBe(0);
    expect(evalExpr(parseExpr("C"), c)).toBe(0);
    expect(evalExpr(parseExpr("A != n"), c)).toBe(2);
    expect(evalExpr(parseExpr("$(cc-option,-mx) && A"), c)).toBeNull();
  });
});

describe("Kconfig tree", () => {
  it("follows source with $(SRCARCH), skips help text and macro assignments", () => {
    expect(tree.files).toBe(3);
    expect(tree.symbols.has("X86_64")).toBe(true);
    expect(tree.symbols.has("NOT_A_SYMBOL")).toBe(false);
    expect(tree.symbols.has("if-success")).toBe(false);
  });
  it("records enclosing if-blocks as dependencies, prompts and selects", () => {
    const ipc = tree.symbols.get("IPC_NS")!;
    expect(ipc.defs[0].depends.map((d) => exprToString(d))).toEqual([
      "NAMESPACES",
      "SYSVIPC || POSIX_MQUEUE",
    ]);
    expect(tree.symbols.get("MEMBARRIER")!.defs[0].prompt?.cond).toEqual({ kind: "sym", name: "EXPERT" });
    expect(tree.symbols.get("KCMP")!.selectedBy.map((s) => s.by)).toEqual(["CHECKPOINT_RESTORE"]);
    expect(tree.symbols.get("KERNEL_XZ")!.defs[0].choice).toBeDefined();
  });
});

describe("verification", () => {
  it("passes when every requested symbol landed", () => {
    const r = verifyConfig({
      requested: request("CONFIG_PROC_FS=y # a\n# CONFIG_EXPERT is not set\n"),
      final: cfg("CONFIG_PROC_FS=y\n"),
      kconfig: tree,
      kernelVersion: "6.12.107",
    });
    expect(r.passed).toBe(true);
    expect(r.ok).toEqual(["CONFIG_PROC_FS", "CONFIG_EXPERT"]);
  });

  it("explains an unmet dependency with the value of each symbol in it", () => {
    const r = verifyConfig({
      requested: request("CONFIG_CHECKPOINT_RESTORE=y # c/r\nCONFIG_IPC_NS=y # ipc\n"),
      final: cfg("# CONFIG_PROC_FS is not set\nCONFIG_MULTIUSER=y\nCONFIG_NAMESPACES=y\n"),
      kconfig: tree,
      kernelVersion: "6.12.107",
    });
    expect(r.passed).toBe(false);
    const cr = r.mismatches.find((m) => m.symbol === "CONFIG_CHECKPOINT_RESTORE")!;
    expect(cr.why[0]).toContain("depends on PROC_FS [PROC_FS=n]");
    expect(cr.why[0]).toContain("init/Kconfig:");
    const ipc = r.mismatches.find((m) => m.symbol === "CONFIG_IPC_NS")!;
    expect(ipc.why[0]).toContain("SYSVIPC || POSIX_MQUEUE [SYSVIPC=n, POSIX_MQUEUE=n]");
    expect(formatVerifyReport(r, "test")).toMatch(/CONFIG_IPC_NS\s+y\s+n\s+unmet dependency/);
  });

  it("reports symbols that do not exist apart, with a suggestion", () => {
    const r = verifyConfig({
      requested: request("CONFIG_MEMBARIER=y # typo\nCONFIG_PTRACE=y # not mainline\n"),
      final: cfg(""),
      kconfig: tree,
      kernelVersion: "6.12.107",
    });
    expect(r.unknown.map((u) => u.symbol)).toEqual(["CONFIG_MEMBARIER", "CONFIG_PTRACE"]);
    expect(r.unknown[0].suggestion).toBe("CONFIG_MEMBARRIER");
    expect(r.mismatches).toEqual([]);
    expect(r.passed).toBe(false);
  });

  it("explains a hidden prompt, a missing prompt and a select", () => {
    const final = cfg(
      "CONFIG_EXPERT=y\nCONFIG_RSEQ=y\nCONFIG_CHECKPOINT_RESTORE=y\nCONFIG_PROC_FS=y\nCONFIG_KCMP=y\n",
    );
    const r = verifyConfig({
      requested: request(
        "CONFIG_NAMESPACES=y # ns\nCONFIG_MEMBARRIER_HELPER=y # x\n# CONFIG_KCMP is not set\n",
      ),
      final,
      kconfig: tree,
      kernelVersion: "6.12.107",
    });
    const why = Object.fromEntries(r.mismatches.map((m) => [m.symbol, m.why.join(" | ")]));
    expect(why.CONFIG_NAMESPACES).toContain("depends on MULTIUSER [MULTIUSER=n]");
    expect(why.CONFIG_MEMBARRIER_HELPER).toMatch(/no prompt.*selected by RSEQ=y/);
    expect(why.CONFIG_KCMP).toContain("selected by CHECKPOINT_RESTORE=y");
  });

  it("accepts an allowlisted drop only for the kernel versions it names", () => {
    const args = {
      requested: request("CONFIG_TUN=y # tun\n"),
      final: cfg(""),
      kconfig: tree,
      allowlist: [{ symbol: "CONFIG_TUN", kernels: ">=6.1 <6.3", reason: "known" }],
    };
    expect(verifyConfig({ ...args, kernelVersion: "6.1.176" }).passed).toBe(true);
    expect(verifyConfig({ ...args, kernelVersion: "6.12.107" }).passed).toBe(false);
  });
});

describe("Kconfig help text as real trees write it", () => {
  it("help text at the help keyword's own indent is help (6.1's aic7xxx), not a source directive", async () => {
    const dir = tempDir("crg-kconfig-help-");
    // The shape of drivers/scsi/aic7xxx/Kconfig.aic7xxx in 6.1: help and its text, one tab each.
    writeFileSync(
      join(dir, "Kconfig"),
      [
        "config AIC7XXX_BUILD_FIRMWARE",
        '\tbool "Build Adapter Firmware with Kernel Build"',
        "\tdepends on AIC7XXX",
        "\thelp",
        "\tThis option should only be enabled if you are modifying the firmware",
        "\tsource to the aic7xxx driver and wish to have the generated firmware",
        "\tinclude files updated during a normal kernel build.",
        "",
        "config AFTER_HELP",
        '\tbool "next"',
        "\thelp",
        "config NO_HELP_TEXT",
        '\tbool "a help keyword with nothing after it"',
        "",
      ].join("\n"),
    );
    const t = parseKernelKconfig(dir);
    expect([...t.symbols.keys()].sort()).toEqual(["AFTER_HELP", "AIC7XXX_BUILD_FIRMWARE", "NO_HELP_TEXT"]);
  });
});

describe("a user's .config file", () => {
  it("gives its values and the kernel version of its header from one read; unreadable is refused by name", () => {
    const f = join(tempDir("crg-dot-"), ".config");
    writeFileSync(
      f,
      "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 6.1.176 Kernel Configuration\n#\nCONFIG_MEMBARRIER=y\n# CONFIG_RSEQ is not set\n",
    );
    const d = readDotConfig(f);
    expect(d.version).toBe("6.1.176");
    expect(d.values.get("CONFIG_MEMBARRIER")).toBe("y");
    expect(d.values.get("CONFIG_RSEQ")).toBe("n");
    writeFileSync(f, "CONFIG_MEMBARRIER=y\n");
    expect(readDotConfig(f).version).toBeUndefined();
    expect(() => readDotConfig(`${f}.nope`)).toThrow(/cannot read kernel config .*\.nope/);
  });
});
