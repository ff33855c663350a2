/**
 * The exact EXPERT trap: the options on without EXPERT and off with it, never one the
 * fragments set, ranked by what the kernel requirements map says CRIU loses: what makes every
 * command fail at start, then what plain `criu check` needs, then features, then the rest.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { explainTrap, formatTrap, trapSymbols, withoutExpert } from "../../scripts/kernel/expert-trap.js";
import type { KconfigTree } from "../../scripts/kernel/kconfig.js";
import { mergeFragments, parseFragment, readDotConfig } from "../../scripts/data/fragments.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";

const FIXTURES = join(REPO_ROOT, "test/fixtures");

/** Linux 6.12.107's Kconfig facts of the map's symbols (prompt condition, who selects them). */
const facts = JSON.parse(readFileSync(join(FIXTURES, "kconfig/kernel-requirements-symbols.json"), "utf8"))
  .symbols as Record<string, { prompt_if: string | null; selected_by: string[] }>;
const kconfig: Pick<KconfigTree, "symbols"> = {
  symbols: new Map(
    Object.entries(facts).map(([name, f]) => [
      name,
      { name, defs: [], impliedBy: [], selectedBy: f.selected_by.map((s) => ({ by: s.split(" ")[0] })) },
    ]),
  ),
};

/**
 * The case: `--fragment-set minimal --fragment <EXPERT=y, CHECKPOINT_RESTORE=y>` leaves
 * MEMBARRIER unset. Without EXPERT the options whose prompt is `if EXPERT` keep their default y
 * (the real .config of the default fragments shows them on); with it, allnoconfig turns them
 * off, unless a fragment sets them or an option still on selects them (CHECKPOINT_RESTORE
 * selects KCMP). FHANDLE (an EXPERT prompt the map does not name) goes too, and EXPORTFS with
 * it, which has no prompt; BUG and ADVISE_SYSCALLS stand for the trap's options CRIU does not need.
 */
const real = readDotConfig(join(FIXTURES, "kernel-config/linux-6.12.107-cr-guest.config"));
const requested = mergeFragments([
  repoData().fragments.get("guest-base")!,
  parseFragment("CONFIG_EXPERT=y\nCONFIG_CHECKPOINT_RESTORE=y\n", "kata-cr.conf"),
]);
// The minimal set does not ask for MEM_SOFT_DIRTY (a visible prompt: off in allnoconfig).
const noExpert = new Map([...real.values].filter(([s]) => s !== "CONFIG_MEM_SOFT_DIRTY"));
const expertOnly = Object.keys(facts).filter(
  (s) => facts[s].prompt_if === "EXPERT" && !facts[s].selected_by.includes("CHECKPOINT_RESTORE if PROC_FS"),
);
const turnedOff = [...expertOnly, "FHANDLE", "EXPORTFS", "BUG", "ADVISE_SYSCALLS"].map((s) => `CONFIG_${s}`);
const withExpert = new Map([
  ...[...noExpert].filter(([s]) => !turnedOff.includes(s) || requested.values.has(s)),
  ["CONFIG_EXPERT", "y"],
]);

const trapFor = (criu: string, patches: string[] = []) =>
  explainTrap(trapSymbols(withExpert, noExpert, requested), {
    requirements: repoData().kernelRequirements,
    criu: { version: criu, build: ["compat"], patches },
    kernelVersion: "6.12.107",
    withExpert,
    kconfig,
  });

describe("EXPERT trap", () => {
  it("is the diff of the two configs minus what the fragments set: no false positives", () => {
    expect(withoutExpert(requested).values.has("CONFIG_EXPERT")).toBe(false);
    const trap = trapSymbols(withExpert, noExpert, requested);
    expect(trap).toContain("CONFIG_MEMBARRIER");
    expect(trap).toContain("CONFIG_EXPORTFS");
    // Set by a fragment (guest-base: FUTEX, PROC_SYSCTL, UNIX98_PTYS), or selected (KCMP): not the trap's doing.
    for (const kept of [
      "CONFIG_FUTEX",
      "CONFIG_PROC_SYSCTL",
      "CONFIG_UNIX98_PTYS",
      "CONFIG_KCMP",
      "CONFIG_CHECKPOINT_RESTORE",
    ])
      expect(trap).not.toContain(kept);
  });

  it("ranks by the map: what fails every command at start, then plain criu check, then features, then the rest", () => {
    const trap = trapFor("4.1.1");
    const line = (symbol: string) => trap.find((t) => t.symbol === `CONFIG_${symbol}`)?.consequence;
    expect(trap.map((t) => t.symbol.replace("CONFIG_", ""))).toEqual([
      // every CRIU command fails at start
      "EPOLL",
      "FILE_LOCKING",
      "MEMBARRIER",
      "PROC_PAGE_MONITOR",
      // plain criu check fails
      "EVENTFD",
      "EXPORTFS",
      "FHANDLE",
      "SIGNALFD",
      // a feature, or what criu check --all reports
      "AIO",
      "POSIX_TIMERS",
      "RSEQ",
      "TIMERFD",
      // nothing CRIU needs
      "ADVISE_SYSCALLS",
      "BUG",
    ]);
    expect(line("FILE_LOCKING")).toBe(
      "every CRIU command fails at start (start-up probe kerndat_fdinfo_has_lock)",
    );
    expect(line("PROC_PAGE_MONITOR")).toBe(
      "every CRIU command fails at start (start-up probes check_pagemap, kerndat_get_dirty_track, kerndat_has_thp_disable)",
    );
    expect(line("EXPORTFS")).toBe("plain criu check fails (check_fdinfo_ext)");
    // FHANDLE is not in the map, but EXPORTFS has no prompt and FHANDLE is what selects it.
    expect(line("FHANDLE")).toBe("selects EXPORTFS: plain criu check fails (check_fdinfo_ext)");
    expect(line("TIMERFD")).toBe("criu check --feature timerfd fails");
    expect(line("POSIX_TIMERS")).toBe("criu check --all reports check_posix_timers missing");
    expect(trap.find((t) => t.symbol === "CONFIG_FILE_LOCKING")?.entries).toEqual([
      "feature/fdinfo_lock",
      "probe/kerndat_fdinfo_has_lock",
    ]);
    const text = formatTrap(trap, "allnoconfig");
    expect(text).toMatch(/^CONFIG_EXPERT=y over allnoconfig turns off 14 options/);
    expect(text.split("\n")[1]).toBe(
      "  CONFIG_EPOLL off: every CRIU command fails at start (start-up probe has_kcmp_epoll_tfd)",
    );
    // The complaint: none of these is left under "also".
    expect(text.split("\n").at(-1)).toBe("  also: CONFIG_ADVISE_SYSCALLS, CONFIG_BUG");
  });

  it("follows the CRIU version and its patches: no membarrier probe before 3.19, a tolerated one is a loss", () => {
    const old = trapFor("3.17.1");
    const membarrier = (trap: typeof old) => trap.find((t) => t.symbol === "CONFIG_MEMBARRIER")!;
    expect(membarrier(old)).toMatchObject({ criu: false, consequence: null });
    const patched = trapFor("4.1.1", ["membarrier-probe-nonfatal"]);
    expect(membarrier(patched).consequence).toBe(
      "CRIU starts only thanks to membarrier-probe-nonfatal (start-up probe kerndat_has_membarrier_get_registrations)",
    );
    expect(patched.findIndex((t) => t.symbol === "CONFIG_MEMBARRIER")).toBeGreaterThan(
      patched.findIndex((t) => t.symbol === "CONFIG_SIGNALFD"),
    );
  });
});
