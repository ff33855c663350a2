/**
 * A Kata fragments tree read as build-kernel.sh reads it: the selection, the whitelists and
 * their grep -v -f (substring) semantics, and verification that reports whitelisted misses
 * apart without failing.
 */
import { describe, expect, it } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { acceptedMisses } from "../../scripts/data/allowlist.js";
import { readKataTree, whitelistFor, whitelisted } from "../../scripts/data/kata-fragments.js";
import { mergeFragments } from "../../scripts/data/fragments.js";
import { formatVerifyReport, verifyConfig } from "../../scripts/kernel/verify.js";
import { planKernel } from "../../scripts/kernel/plan.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { writeKataTree } from "../helpers/kata-tree.js";
import { tempDir } from "../helpers/temp.js";

const tree = () => writeKataTree(tempDir("crg-kata-"));

describe("Kata fragment trees", () => {
  it("selects common/ minus !arch and !confidential files, then <arch>/, then the build type", () => {
    const dir = tree();
    const t = readKataTree(dir, { arch: "x86_64" });
    expect(t.fragments.map((f) => basename(f.file))).toEqual([
      "base.conf",
      "cgroup.conf",
      "netfilter.conf",
      "arch.conf",
    ]);
    expect(t.excluded.map((e) => [basename(e.file), e.reason.split(" ")[1]])).toEqual([
      ["debugfs.conf", "!confidential"],
      ["s390.conf", "!x86_64"],
    ]);
    const conf = readKataTree(dir, { arch: "x86_64", confidential: true, buildType: "debug" });
    expect(conf.fragments.map((f) => basename(f.file))).toEqual([
      "base.conf",
      "cgroup.conf",
      "debugfs.conf",
      "netfilter.conf",
      "arch.conf",
      "debug.conf",
    ]);
  });

  it("whitelist.conf plus whitelist-<full version>.conf, matched as grep -v -f matches: substrings", () => {
    const t = readKataTree(tree(), { arch: "x86_64" });
    const wl612 = whitelistFor(t, "6.12.107");
    expect(wl612.map((w) => w.pattern)).toEqual([
      "CONFIG_MEMCG_SWAP",
      "CONFIG_NF_NAT_IPV4",
      "CONFIG_MEMCG_SWAP",
      "CONFIG_RETPOLINE",
    ]);
    expect(whitelistFor(t, "6.12.101").map((w) => w.pattern)).not.toContain("CONFIG_RETPOLINE");
    expect(whitelisted("CONFIG_MEMCG_SWAP_ENABLED", wl612)?.pattern).toBe("CONFIG_MEMCG_SWAP");
    expect(whitelisted("CONFIG_MEMCG", wl612)).toBeUndefined();
    expect(whitelisted("CONFIG_NF_NAT_IPV4", wl612)).toMatchObject({ line: 2 });
  });

  it("replaces the fragment set in the plan; the user's fragments stack on top", () => {
    const t = readKataTree(tree(), { arch: "x86_64" });
    const plan = planKernel(loadConfig({ set: ["kernel.version=6.12.107"] }), repoData(), {
      userFragments: [repoData().fragments.get("checkpoint-restore")!],
      hostCpus: 2,
      kata: t,
    });
    expect(plan.fragments.map((f) => f.name)).toEqual([
      "base",
      "cgroup",
      "netfilter",
      "arch",
      "checkpoint-restore",
    ]);
    expect(plan.requested.values.has("CONFIG_CHECKPOINT_RESTORE")).toBe(true);
    expect(plan.whitelist.map((w) => w.pattern)).toContain("CONFIG_RETPOLINE");
  });

  it("verification: whitelisted misses are their own group and do not fail; others still do", () => {
    const t = readKataTree(tree(), { arch: "x86_64" });
    const requested = mergeFragments(t.fragments);
    const final = new Map([...requested.values].map(([s, e]) => [s, e.value]));
    for (const gone of ["CONFIG_MEMCG_SWAP", "CONFIG_NF_NAT_IPV4", "CONFIG_RETPOLINE"]) final.delete(gone);
    const r = verifyConfig({
      requested,
      final,
      kernelVersion: "6.12.107",
      whitelist: whitelistFor(t, "6.12.107"),
    });
    expect(r.passed).toBe(true);
    const text = formatVerifyReport(r, "linux 6.12.107");
    expect(text).toMatch(/Whitelisted by Kata \(3, accepted misses, not failures\):/);
    expect(text).toMatch(/CONFIG_NF_NAT_IPV4 .*pattern 'CONFIG_NF_NAT_IPV4', .*whitelist\.conf:2/);
    final.delete("CONFIG_TTY");
    const bad = verifyConfig({
      requested,
      final,
      kernelVersion: "6.12.107",
      whitelist: whitelistFor(t, "6.12.107"),
    });
    expect(bad.passed).toBe(false);
    expect(formatVerifyReport(bad, "k")).toMatch(/did not land:[\s\S]*CONFIG_TTY/);
  });

  it("allowlist.yaml imports a Kata whitelist: its misses are whitelisted, with our fragments alone", () => {
    const dir = tree();
    const allow = join(dir, "allowlist.yaml");
    writeFileSync(allow, "accepted: []\nkata_whitelists:\n  - whitelist.conf\n");
    const requested = mergeFragments(readKataTree(dir, { arch: "x86_64" }).fragments);
    const final = new Map([...requested.values].map(([s, e]) => [s, e.value]));
    final.delete("CONFIG_NF_NAT_IPV4");
    // No Kata tree in the plan: the whitelist comes from the allowlist alone.
    const r = verifyConfig({ requested, final, kernelVersion: "6.12.107", ...acceptedMisses(allow, []) });
    expect(r.passed).toBe(true);
    expect(formatVerifyReport(r, "k")).toMatch(
      new RegExp(`CONFIG_NF_NAT_IPV4 .*${join(dir, "whitelist.conf").replace(/[.]/g, "\\.")}:2`),
    );
    expect(
      verifyConfig({ requested, final, kernelVersion: "6.12.107", ...acceptedMisses("", []) }).passed,
    ).toBe(false);
    writeFileSync(allow, "accepted: []\nkata_whitelists:\n  - whitelist.conf\n  - nope.conf\n");
    expect(() => acceptedMisses(allow, [])).toThrow(/allowlist\.yaml:4: Kata whitelist nope\.conf not found/);
  });

  it("a directory without common/ is refused, naming it", () => {
    const dir = tempDir("crg-notkata-");
    mkdirSync(join(dir, "x86_64"));
    expect(() => readKataTree(dir, { arch: "x86_64" })).toThrow(
      new RegExp(`${dir} is not a Kata fragments tree: it has no common/ directory`),
    );
    expect(() => readKataTree(tree(), { arch: "x86_64", buildType: "nope" })).toThrow(
      /has no build-type\/nope\//,
    );
  });
});
