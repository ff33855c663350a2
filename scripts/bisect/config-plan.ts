/**
 * A config bisect as data (pure), in the manner of the kernel's ktest config_bisect: the
 * symbols whose values differ between a good and a bad .config, ordered; candidate i is the
 * good config with the first i+1 of them at the bad end's value (Kconfig resolves each, and what
 * it forces is reported); the linear bisect of plan.ts finds the first whose change turns the
 * test from PASS to FAIL. Then, as ktest does not, again with that symbol held at its good
 * value, until the bad end passes: a config can be broken twice.
 */
import type { VariantLine } from "../variant/kernel-variant.js";
import type { FragmentEntry } from "../data/fragments.js";
import type { Candidate } from "./plan.js";

export interface SymbolChange {
  symbol: string;
  good: string;
  bad: string;
}

/** Every symbol whose value differs between the two final configs ("n" for absent). */
export function differences(good: Map<string, string>, bad: Map<string, string>): SymbolChange[] {
  const keys = [...new Set([...good.keys(), ...bad.keys()])];
  return keys
    .filter((k) => (good.get(k) ?? "n") !== (bad.get(k) ?? "n"))
    .map((k) => ({ symbol: k.replace(/^CONFIG_/, ""), good: good.get(k) ?? "n", bad: bad.get(k) ?? "n" }));
}

/**
 * The order of the range: what the bad end turns on first (EXPERT among them, which makes other
 * prompts visible), then what it turns off or changes; by name within each. A symbol turned
 * off whose prompt needs another turned on is then tried with it, not before it.
 */
export function orderChanges(changes: SymbolChange[]): SymbolChange[] {
  const on = (c: SymbolChange) => (c.good === "n" ? 0 : 1);
  return [...changes].sort((a, b) => on(a) - on(b) || a.symbol.localeCompare(b.symbol));
}

export const candidateOf = (c: SymbolChange): Candidate => ({
  id: c.symbol,
  title: `CONFIG_${c.symbol}: ${c.good} -> ${c.bad}`,
});

/**
 * The request of candidate `upto` (-1: none applied): the first upto+1 changes at the bad
 * end's value, every other change pinned at the good end's, and the symbols found in earlier
 * rounds held at their good value.
 */
export function candidateLines(
  changes: SymbolChange[],
  upto: number,
  held: SymbolChange[] = [],
): VariantLine[] {
  return [
    ...changes.map((c, i) =>
      i <= upto
        ? { symbol: c.symbol, value: c.bad, why: "bisect: the bad end's value" }
        : { symbol: c.symbol, value: c.good, why: "bisect: the good end's value" },
    ),
    ...held.map((c) => ({
      symbol: c.symbol,
      value: c.good,
      why: "bisect: found before, held at the good value",
    })),
  ];
}

/** Refinement of a bisect variant: a request Kconfig does not keep is dropped (and reported). */
export function dropForced(
  lines: VariantLine[],
  mismatches: { symbol: string; requested: string; final: string }[],
): VariantLine[] {
  const forced = new Set(mismatches.map((m) => m.symbol));
  return lines.filter((l) => !forced.has(l.symbol));
}

/** "CONFIG_X asked n, Kconfig kept y" for each request Kconfig overrode. */
export function forcedNote(lines: VariantLine[], settled: VariantLine[], final: Map<string, string>): string {
  const dropped = lines.filter((l) => !settled.some((s) => s.symbol === l.symbol));
  if (!dropped.length) return "";
  const shown = dropped
    .slice(0, 6)
    .map((l) => `${l.symbol} asked ${l.value}, kept ${final.get(`CONFIG_${l.symbol}`) ?? "n"}`);
  return `Kconfig forced ${dropped.length}: ${shown.join("; ")}${dropped.length > 6 ? "; ..." : ""}`;
}

/**
 * Where the bad end's value of a symbol comes from: the fragment line that asks for it, the
 * EXPERT trap (a prompt EXPERT makes visible, answered n by allnoconfig), or Kconfig.
 */
export function setBy(symbol: string, requested: Map<string, FragmentEntry>, trap: string[]): string {
  const at = (e: FragmentEntry) => `${e.file}:${e.line}`;
  const own = requested.get(`CONFIG_${symbol}`);
  if (own)
    return `${at(own)} (${own.value === "n" ? `# CONFIG_${symbol} is not set` : `CONFIG_${symbol}=${own.value}`})`;
  const expert = requested.get("CONFIG_EXPERT");
  if (trap.includes(symbol))
    return `the EXPERT trap: ${expert ? `CONFIG_EXPERT=y at ${at(expert)}` : "EXPERT=y"} shows its prompt and allnoconfig answers n`;
  return "no fragment line: Kconfig's resolution of the bad end (a default, a select or a dependency)";
}
