/**
 * `cr-guest explain NAME`: a name of the kernel requirements map (feature, check, probe, with or
 * without its kind; a Kconfig symbol, with or without CONFIG_) found, printed as text and as
 * one JSON document; an unknown name or one outside --criu's version refused with exit 2.
 */
import { describe, expect, it } from "vitest";
import { explain, explainedDocument, formatExplained } from "../../scripts/explain/entry.js";
import { repoData } from "../../scripts/data/repo-data.js";
import type { KernelRequirements } from "../../scripts/data/kernel-requirements.js";
import { UserError } from "../../scripts/lib/errors.js";
import { crGuest } from "../helpers/cli.js";

const map = repoData().kernelRequirements;

function refused(f: () => unknown): UserError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return e as UserError;
  }
  throw new Error("not refused");
}

describe("explain: which entry a name stands for", () => {
  it("finds a feature, a check and a probe by their name, with or without the kind", () => {
    expect(explain(map, "uffd")).toMatchObject({ kind: "feature", name: "uffd" });
    expect(explain(map, "feature/uffd")).toEqual(explain(map, "uffd"));
    expect(explain(map, "check_fdinfo_ext")).toMatchObject({ kind: "check", name: "check_fdinfo_ext" });
    expect(explain(map, "check/check_fdinfo_ext")).toEqual(explain(map, "check_fdinfo_ext"));
    expect(explain(map, "probe/kerndat_uffd")).toMatchObject({ kind: "probe", name: "kerndat_uffd" });
  });

  it("a name with entries for several CRIU ranges gives them all, or with --criu the version's", () => {
    const all = explain(map, "kerndat_has_memfd_hugetlb");
    expect(all.kind === "probe" && all.entries.map((r) => r.criu)).toEqual([">=3.17.1 <3.18.0", ">=3.18.0"]);
    const old = explain(map, "kerndat_has_memfd_hugetlb", "3.17.1");
    expect(old.kind === "probe" && old.entries.map((r) => r.needs.all_of)).toEqual([["HUGETLBFS"]]);
  });

  it("a Kconfig symbol, with or without CONFIG_: the entries that need it, what fails at start first", () => {
    const e = explain(map, "CONFIG_FILE_LOCKING");
    expect(e).toEqual(explain(map, "FILE_LOCKING"));
    expect(e.kind === "symbol" && e.neededBy.map((u) => `${u.entry.kind}/${u.entry.name}`)).toEqual([
      "probe/kerndat_fdinfo_has_lock",
      "feature/fdinfo_lock",
      "check/check_fdinfo_lock",
    ]);
    // A symbol of an any_of group: one of the group is enough, and the text says so.
    const grouped: KernelRequirements = {
      kernelTree: "6.12.107",
      entries: [
        {
          ...map.entries.find((r) => r.name === "net_diag_raw")!,
          needs: { any_of: [["INET_RAW_DIAG", "INET_DIAG"]] },
        },
      ],
    };
    const u = explain(grouped, "INET_DIAG");
    expect(u.kind === "symbol" && u.neededBy.map((x) => x.anyOf)).toEqual([["INET_RAW_DIAG", "INET_DIAG"]]);
    expect(formatExplained(u)).toMatch(
      /feature\/net_diag_raw \[CRIU >= 3\.17\.1\] \(one of INET_RAW_DIAG, INET_DIAG\)/,
    );
  });

  it("refuses an unknown name with a suggestion, and a name outside --criu's version with the ranges it has", () => {
    expect(refused(() => explain(map, "membarier")).message).toMatch(/did you mean 'MEMBARRIER'\?/);
    expect(refused(() => explain(map, "CONFIG_USERFAULTFF")).message).toMatch(/did you mean 'USERFAULTFD'\?/);
    expect(refused(() => explain(map, "feature/kerndat_uffd")).message).toMatch(/is no feature, check/);
    const e = refused(() => explain(map, "timer_cr_ids", "4.1.1"));
    expect(e.message).toBe("feature/timer_cr_ids is not in CRIU 4.1.1: the map has it for CRIU >= 4.2");
    expect(e.exitCode).toBe(2);
    expect(refused(() => explain(map, "MEMBARRIER", "3.18")).message).toMatch(
      /CONFIG_MEMBARRIER is not in CRIU 3\.18: the map has it for CRIU >= 3\.19/,
    );
  });
});

describe("explain: the text and the document", () => {
  it("prints an entry's fields: kind/name, CRIU range, probes, needs, effect, feeds, sources, proof, notes, where", () => {
    const text = formatExplained(explain(map, "kerndat_fdinfo_has_lock", "4.1.1"));
    const lines = text.split("\n");
    expect(lines[0]).toBe("probe/kerndat_fdinfo_has_lock (CRIU 4.1.1)");
    expect(lines).toContain("  CRIU:       >= 3.17.1");
    expect(lines).toContain("  probes:     criu/kerndat.c:kerndat_fdinfo_has_lock@v4.2");
    expect(lines).toContain("  needs:      FILE_LOCKING");
    expect(lines).toContain("  effect:     every CRIU command fails at start");
    expect(lines).toContain("  feeds:      feature/fdinfo_lock");
    expect(lines).toContain("              fs/locks.c:2982@6.12.107");
    // The committed map holds the proof of FILE_LOCKING (explain --prove --record).
    expect(text).toMatch(
      /^ {2}proven: {5}FILE_LOCKING off: linux 6\.12\.107 \(variant \w+\), CRIU 4\.1\.1, \d{4}-\d{2}-\d{2}, run \w+/m,
    );
    // An entry no run has proven yet (the map's own: proofs land as they are run).
    const unproven = map.entries.find((e) => e.kind === "probe" && !e.sameAs && !e.proven?.length)!;
    expect(formatExplained(explain(map, unproven.name, "4.1.1"))).toMatch(/^ {2}proven: {5}not yet proven$/m);
    expect(text).toMatch(/^ {2}notes: {6}opens \/proc\/locks/m);
    expect(text).toMatch(/^ {2}at: {9}criu-builds\/kernel-requirements\.yaml:\d+$/m);
  });

  it("prints a check that runs a feature's function with the feature it runs, and runtime needs in words", () => {
    const text = formatExplained(explain(map, "check_uffd"));
    expect(text).toContain("  mode:       criu check --all");
    expect(text).toContain("  runs:       feature/uffd (its needs and sources)");
    expect(text).toContain("  needs:      USERFAULTFD; runtime root: CRIU runs as root (not --unprivileged)");
  });

  it("prints a symbol's users with their CRIU range and what they break", () => {
    expect(formatExplained(explain(map, "MEMBARRIER"))).toBe(
      [
        "CONFIG_MEMBARRIER: needed by 1 entry",
        "  probe/kerndat_has_membarrier_get_registrations [CRIU >= 3.19]: every CRIU command fails at start (criu/kerndat.c:kerndat_has_membarrier_get_registrations@v4.2)",
      ].join("\n"),
    );
  });

  it("gives one document in the map's own words", () => {
    expect(explainedDocument(explain(map, "kerndat_has_membarrier_get_registrations"))).toMatchObject({
      kind: "probe",
      name: "kerndat_has_membarrier_get_registrations",
      criu: null,
      entries: [
        {
          criu: ">=3.19.0",
          needs: { all_of: ["MEMBARRIER"] },
          avoided_by_patches: ["membarrier-probe-nonfatal"],
          // The committed map holds the proof of MEMBARRIER (explain --prove --record).
          proven: [expect.objectContaining({ symbols: ["MEMBARRIER"], criu: "4.1.1" })],
        },
      ],
    });
    expect(explainedDocument(explain(map, "USERFAULTFD", "4.2.1"))).toMatchObject({
      kind: "symbol",
      name: "USERFAULTFD",
      criu: "4.2.1",
      needed_by: expect.arrayContaining([
        { kind: "feature", name: "uffd", criu: ">=3.17.1", effect: "the feature check fails", any_of: null },
      ]),
    });
  });
});

describe("cr-guest explain", () => {
  it("prints one JSON document with --json; --criu 4.1 is the newest 4.1", { timeout: 60_000 }, async () => {
    const r = await crGuest(["explain", "uffd", "--criu", "4.1", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ kind: "feature", name: "uffd", criu: "4.1.1" });
    expect(doc.entries[0].needs.all_of).toEqual(["USERFAULTFD"]);
  });

  it(
    "exits 2 on an unknown name, a missing one, and an unknown CRIU version",
    { timeout: 60_000 },
    async () => {
      const typo = await crGuest(["explain", "USERFAULTFF"]);
      expect(typo.exitCode).toBe(2);
      expect(typo.stderr).toMatch(/did you mean 'USERFAULTFD'\?/);
      expect(typo.stderr).toMatch(/^fix: name a feature/m);
      const none = await crGuest(["explain"]);
      expect(none.exitCode).toBe(2);
      expect(none.stderr).toContain("explain needs a name");
      const version = await crGuest(["explain", "uffd", "--criu", "9.9"]);
      expect(version.exitCode).toBe(2);
      expect(version.stderr).toContain("unknown CRIU version '9.9'");
    },
  );
});
