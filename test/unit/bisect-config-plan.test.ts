/**
 * The config bisect's data (scripts/bisect/config-plan.ts) on the real case of the issue: the
 * default kernel's .config against the one configured from the fragment set `minimal` plus a
 * fragment with EXPERT=y and checkpoint-restore.conf's lines but MEMBARRIER, both real
 * configures of linux 6.12.107 kept as fixtures; and end specs parsed against the real config.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  candidateLines,
  differences,
  dropForced,
  forcedNote,
  orderChanges,
  setBy,
} from "../../scripts/bisect/config-plan.js";
import { parseEnd } from "../../scripts/bisect/config.js";
import { loadDotConfig, parseFragment, mergeFragments } from "../../scripts/data/fragments.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { UserError } from "../../scripts/lib/errors.js";

const FIX = join(REPO_ROOT, "test/fixtures/kernel");
const good = loadDotConfig(join(FIX, "6.12.107-default.config"));
const bad = loadDotConfig(join(FIX, "6.12.107-minimal-expert-no-membarrier.config"));

describe("config bisect plan", () => {
  const changes = orderChanges(differences(good, bad));

  it("takes every symbol that differs, what the bad end turns on first (EXPERT before what it hides)", () => {
    expect(changes.length).toBeGreaterThan(40);
    const names = changes.map((c) => c.symbol);
    expect(names.indexOf("EXPERT")).toBeLessThan(names.indexOf("FILE_LOCKING"));
    expect(changes.find((c) => c.symbol === "FILE_LOCKING")).toEqual({
      symbol: "FILE_LOCKING",
      good: "y",
      bad: "n",
    });
    // RSEQ selects MEMBARRIER: left out of the fragment, it stays on; the two do not differ.
    expect(names).not.toContain("MEMBARRIER");
    expect(names.every((n) => !n.startsWith("CONFIG_"))).toBe(true);
  });

  it("requests candidate i as the good values with the first i+1 changes at the bad end's, found ones held", () => {
    const i = changes.findIndex((c) => c.symbol === "FILE_LOCKING");
    const lines = candidateLines(changes, i, []);
    expect(lines).toHaveLength(changes.length);
    expect(lines.find((l) => l.symbol === "EXPERT")!.value).toBe("y");
    expect(lines.find((l) => l.symbol === "FILE_LOCKING")!.value).toBe("n");
    expect(lines.at(-1)!.value).toBe(changes.at(-1)!.good);
    const none = candidateLines(changes, -1);
    expect(none.every((l, k) => l.value === changes[k]!.good)).toBe(true);
    const held = candidateLines(changes.slice(1), 5, [changes[0]!]);
    expect(held.at(-1)).toEqual({
      symbol: changes[0]!.symbol,
      value: changes[0]!.good,
      why: expect.stringMatching(/held/),
    });
  });

  it("drops what Kconfig forced and says so", () => {
    const lines = candidateLines(changes, 0);
    const forced = [{ symbol: "FILE_LOCKING", requested: "y", final: "n" }];
    const settled = dropForced(lines, forced);
    expect(settled).toHaveLength(lines.length - 1);
    expect(forcedNote(lines, settled, new Map([["CONFIG_FILE_LOCKING", "n"]]))).toBe(
      "Kconfig forced 1: FILE_LOCKING asked y, kept n",
    );
    expect(forcedNote(lines, lines, new Map())).toBe("");
  });

  it("names where the bad end's value comes from: its fragment line, the EXPERT trap, or Kconfig", () => {
    const frag = parseFragment("CONFIG_EXPERT=y\n# CONFIG_TUN is not set\n", "/tmp/x.conf");
    const requested = mergeFragments([frag]).values;
    expect(setBy("TUN", requested, [])).toBe("/tmp/x.conf:2 (# CONFIG_TUN is not set)");
    expect(setBy("FILE_LOCKING", requested, ["FILE_LOCKING"])).toMatch(
      /EXPERT trap: CONFIG_EXPERT=y at \/tmp\/x.conf:1/,
    );
    expect(setBy("DEBUG_KERNEL", requested, [])).toMatch(/Kconfig's resolution/);
  });

  it("parses an end: a fragment set, files and a Kata tree joined with '+'; anything else is exit 2", () => {
    const config = loadConfig({});
    const end = parseEnd("bad", `minimal+${join(REPO_ROOT, "kernel-fragments/no-membarrier.conf")}`, config);
    expect(end.config.kernel.fragment_set).toBe("minimal");
    expect(end.fragments).toEqual([join(REPO_ROOT, "kernel-fragments/no-membarrier.conf")]);
    const dot = parseEnd("good", join(FIX, "6.12.107-default.config"), config);
    expect(dot.dotLines.find((l) => l.symbol === "FILE_LOCKING")?.value).toBe("y");
    expect(dot.fragments).toEqual([]);
    let err: unknown;
    try {
      parseEnd("bad", "minimall", config);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toMatch(/did you mean 'minimal'/);
    expect(() => parseEnd("bad", "default+minimal", config)).toThrow(/two bases/);
    expect(readFileSync(join(FIX, "6.12.107-minimal-expert-no-membarrier.config"), "utf8")).toMatch(
      /CONFIG_EXPERT=y/,
    );
  });
});
