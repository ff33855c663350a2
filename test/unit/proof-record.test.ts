/**
 * What `explain --prove --record` writes: one outcome per symbol, the map entries a proof
 * explains (their `proven` lists, written into the real map's text with its comments kept),
 * and the docs table.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import {
  KERNEL_REQUIREMENTS_FILE,
  loadKernelRequirements,
  parseKernelRequirements,
} from "../../scripts/data/kernel-requirements.js";
import { parseYaml } from "../../scripts/lib/yaml-file.js";
import {
  entriesProvenBy,
  mergeProofs,
  PROOFS_DOC,
  readProofs,
  recordInMap,
  renderProofsDoc,
  symbolProofs,
  type SymbolProof,
} from "../../scripts/explain/proof-record.js";
import type { ProveReport } from "../../scripts/explain/prove.js";

const map = loadKernelRequirements();

const report: ProveReport = {
  criu: "4.1.1",
  kernel: { version: "6.12.107", key: "e78f973ae98cc8d3" },
  baseline: { key: "aaaa", dir: "runs/aaaa" },
  skipped: [],
  batches: [
    {
      id: "TUN+USERFAULTFD-12345678",
      symbols: ["TUN", "USERFAULTFD"],
      criu: "4.1.1",
      kernel: { version: "6.12.107", default_key: "e78f973ae98cc8d3", variant_key: "0123456789abcdef" },
      date: "2026-12-06",
      request: [
        { symbol: "TUN", value: "n", why: "proved: off" },
        { symbol: "USERFAULTFD", value: "n", why: "proved: off" },
      ],
      config_diff: [
        { symbol: "TUN", base: "y", variant: "n" },
        { symbol: "USERFAULTFD", base: "y", variant: "n" },
        { symbol: "HAVE_ARCH_USERFAULTFD_MINOR", base: "y", variant: "n" },
      ],
      verdict: {
        symbols: [
          {
            symbol: "TUN",
            status: "proven",
            predicted: ["feature/tun", "feature/tun_ns"],
            failed: ["feature/tun", "feature/tun_ns"],
            stillPassed: [],
          },
          {
            symbol: "USERFAULTFD",
            status: "mismatch",
            predicted: ["feature/uffd", "feature/uffd-noncoop"],
            failed: ["feature/uffd"],
            stillPassed: ["feature/uffd-noncoop"],
            why: "predicted to fail but passed: feature/uffd-noncoop",
          },
        ],
        unpredicted: [],
        otherChanges: [],
      },
      cannot: [],
      run: { key: "bbbb", dir: "runs/bbbb", status: "COMPLETE" },
    },
  ],
};

describe("the proofs record", () => {
  const proofs = symbolProofs(report);

  it("one outcome per symbol, with what else the variant changed", () => {
    expect(proofs.map((p) => `${p.symbol}:${p.status}`)).toEqual(["TUN:proven", "USERFAULTFD:mismatch"]);
    expect(proofs[0].also_changed).toEqual(["HAVE_ARCH_USERFAULTFD_MINOR=n"]);
    expect(proofs[0].run).toBe("bbbb (COMPLETE)");
  });

  it("a symbol that stayed on is cannot-turn-off, and the rest of its variant ran: no 'not run' rows", () => {
    const b = report.batches[0];
    const withCannot = {
      ...report,
      batches: [
        {
          ...b,
          symbols: [...b.symbols, "SECCOMP_FILTER"],
          cannot: [{ symbol: "SECCOMP_FILTER", why: "no prompt" }],
        },
      ],
    };
    expect(symbolProofs(withCannot).map((p) => `${p.symbol}:${p.status}`)).toEqual([
      "SECCOMP_FILTER:cannot-turn-off",
      "TUN:proven",
      "USERFAULTFD:mismatch",
    ]);
    const neverRan = { ...withCannot, batches: [{ ...withCannot.batches[0], run: null }] };
    expect(
      symbolProofs(neverRan)
        .filter((p) => p.why?.startsWith("not run"))
        .map((p) => p.symbol),
    ).toEqual(["TUN", "USERFAULTFD"]);
    // Two outcomes of one symbol in one record: the last one said is kept.
    const merged = mergeProofs({ proofs: [] }, [...symbolProofs(neverRan), ...proofs]);
    expect(merged.proofs.filter((p) => p.symbol === "TUN").map((p) => p.status)).toEqual(["proven"]);
  });

  it("a newer outcome of the same symbol, CRIU and kernel replaces the older one", () => {
    const older: SymbolProof = { ...proofs[0], date: "2026-12-01", status: "mismatch" };
    const merged = mergeProofs({ proofs: [older] }, proofs);
    expect(merged.proofs.filter((p) => p.symbol === "TUN").map((p) => p.date)).toEqual(["2026-12-06"]);
  });

  it("a proven symbol proves the entries that need it and whose test failed; a mismatch proves none", () => {
    const names = entriesProvenBy(map, proofs[0]).map((r) => `${r.kind}/${r.name}`);
    expect(names).toEqual(expect.arrayContaining(["feature/tun", "feature/tun_ns"]));
    // check_tun_cr runs under --all, which fails on the default kernel already: not shown.
    expect(names.every((n) => n.startsWith("feature/"))).toBe(true);
    expect(entriesProvenBy(map, proofs[1])).toEqual([]);
  });

  it("the map keeps its comments and gets the proof in each proven entry", () => {
    const text = readFileSync(KERNEL_REQUIREMENTS_FILE, "utf8");
    const written = recordInMap(text, map, proofs);
    expect(written).toContain("# What each CRIU kernel check needs from the kernel");
    expect(recordInMap(text, map, [])).toBe(text);
    // Only the proven entries' values change (the committed map may hold real proofs already).
    const proved = entriesProvenBy(map, proofs[0]);
    const fresh = proved.filter(
      (r) => !r.proven.some((x) => x.symbols.join() === "TUN" && x.criu === "4.1.1"),
    );
    const count = (t: string, line: string) => t.split("\n").filter((l) => l.trim() === line).length;
    expect(count(text, "proven: false") - count(written, "proven: false")).toBe(
      proved.filter((r) => r.proven.length === 0).length,
    );
    expect(written.split("\n").length - text.split("\n").length).toBe(5 * fresh.length);
    const again = parseKernelRequirements(parseYaml(written, KERNEL_REQUIREMENTS_FILE));
    const tun = again.entries.find((r) => r.kind === "feature" && r.name === "tun")!;
    expect(tun.proven).toEqual([
      {
        symbols: ["TUN"],
        kernel: "6.12.107 (variant 0123456789abcdef)",
        criu: "4.1.1",
        date: "2026-12-06",
        run: "bbbb (COMPLETE)",
      },
    ]);
    // Every entry the proof does not touch keeps its proven list.
    const touched = new Set(proved.map((r) => r.at));
    map.entries.forEach((r, i) => {
      if (!touched.has(r.at)) expect(again.entries[i].proven, `${r.kind}/${r.name}`).toEqual(r.proven);
    });
    // Recording twice does not list the proof twice, and changes nothing the second time.
    expect(recordInMap(written, again, proofs)).toBe(written);
    const twice = parseKernelRequirements(parseYaml(recordInMap(written, again, proofs), "x"));
    expect(twice.entries.find((r) => r.kind === "feature" && r.name === "tun")!.proven).toHaveLength(1);
  });

  it("the docs table has a row per symbol with what failed and the evidence", () => {
    const doc = renderProofsDoc({ proofs });
    expect(doc).toContain(
      "| `TUN` | 4.1.1 | 6.12.107 | proven | feature/tun, feature/tun_ns | TUN, USERFAULTFD |",
    );
    expect(doc).toContain("predicted to fail but passed: feature/uffd-noncoop");
  });
});

describe("the committed record", () => {
  it("docs/kernel-proofs.md is the table of criu-builds/kernel-proofs.yaml (rerun explain --prove --record)", () => {
    const record = readProofs();
    expect(record.proofs.length).toBeGreaterThan(0);
    expect(readFileSync(PROOFS_DOC, "utf8")).toBe(renderProofsDoc(record));
  });

  it("every proven outcome is in the map: each entry it proves lists it", () => {
    for (const p of readProofs().proofs.filter((x) => x.status === "proven")) {
      const proved = entriesProvenBy(map, p);
      expect(proved.length, `${p.symbol} proves no entry`).toBeGreaterThan(0);
      for (const r of proved)
        expect(
          r.proven.some((x) => x.symbols.includes(p.symbol) && x.criu === p.criu),
          `${r.kind}/${r.name} lacks the proof of ${p.symbol} with CRIU ${p.criu}`,
        ).toBe(true);
    }
  });
});
