/**
 * The exact EXPERT trap: the options on without EXPERT and off with it, never one the
 * fragments set, ranked by what CRIU loses (from the catalog's kernel options and the doctor).
 */
import { describe, expect, it } from "vitest";
import { explainTrap, formatTrap, trapSymbols, withoutExpert } from "../../scripts/kernel/expert-trap.js";
import { mergeFragments, parseFragment } from "../../scripts/data/fragments.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { resolveCriuVersion } from "../../scripts/data/criu-catalog.js";

const requested = mergeFragments([
  parseFragment("CONFIG_EXPERT=y\nCONFIG_CHECKPOINT_RESTORE=y\nCONFIG_EVENTFD=y\n", "trap.conf"),
]);
// Measured shapes: without EXPERT these are on by default; with it, allnoconfig turned them off.
const noExpert = new Map(
  Object.entries({
    CONFIG_CHECKPOINT_RESTORE: "y",
    CONFIG_EVENTFD: "y",
    CONFIG_MEMBARRIER: "y",
    CONFIG_FHANDLE: "y",
    CONFIG_AIO: "y",
    CONFIG_RSEQ: "y",
    CONFIG_FUTEX: "y",
    CONFIG_BUG: "y",
  }),
);
const withExpert = new Map(
  Object.entries({
    CONFIG_EXPERT: "y",
    CONFIG_CHECKPOINT_RESTORE: "y",
    CONFIG_EVENTFD: "y",
    CONFIG_FUTEX: "y",
  }),
);

describe("EXPERT trap", () => {
  it("is the diff of the two configs minus what the fragments set: no false positives", () => {
    expect(withoutExpert(requested).values.has("CONFIG_EXPERT")).toBe(false);
    const trap = trapSymbols(withExpert, noExpert, requested);
    expect(trap).toEqual(["CONFIG_AIO", "CONFIG_BUG", "CONFIG_FHANDLE", "CONFIG_MEMBARRIER", "CONFIG_RSEQ"]);
    // EVENTFD is set by a fragment, FUTEX stayed on: neither is the trap's doing.
    expect(trap).not.toContain("CONFIG_EVENTFD");
    expect(trap).not.toContain("CONFIG_FUTEX");
  });

  it("ranks what makes CRIU fail first, with the doctor's words; then the catalog's kernel options; then the rest", () => {
    const { criu: catalog } = repoData();
    const trap = explainTrap(trapSymbols(withExpert, noExpert, requested), {
      catalog,
      requirements: repoData().kernelRequirements,
      criu: resolveCriuVersion("4.1", catalog),
      kernelVersion: "6.12.107",
      withExpert,
      noExpert,
    });
    expect(trap[0]).toMatchObject({ symbol: "CONFIG_MEMBARRIER", criu: true });
    expect(trap[0].consequence).toMatch(/CRIU 4\.1\.1: every CRIU command will fail at start/);
    expect(trap.slice(-2).map((t) => [t.symbol, t.criu])).toEqual([
      ["CONFIG_BUG", false],
      ["CONFIG_FHANDLE", false],
    ]);
    // CRIU 3.17.1 has no membarrier probe: MEMBARRIER is then not a failure at the top.
    const old = explainTrap(trapSymbols(withExpert, noExpert, requested), {
      catalog,
      requirements: repoData().kernelRequirements,
      criu: resolveCriuVersion("3.17.1", catalog),
      kernelVersion: "6.12.107",
      withExpert,
      noExpert,
    });
    expect(old[0].symbol).not.toBe("CONFIG_MEMBARRIER");
    const text = formatTrap(trap, "allnoconfig");
    expect(text).toMatch(/^CONFIG_EXPERT=y over allnoconfig turns off 5 options/);
    expect(text.split("\n")[1]).toMatch(/^ {2}CONFIG_MEMBARRIER off: CRIU 4\.1\.1/);
    expect(text).toMatch(/also: CONFIG_BUG, CONFIG_FHANDLE$/);
  });
});
