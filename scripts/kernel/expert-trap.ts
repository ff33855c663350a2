/**
 * The EXPERT trap, measured instead of guessed. EXPERT=y makes the `if EXPERT` prompts
 * visible, so an allnoconfig base turns their default-y options off (MEMBARRIER, RSEQ, FUTEX,
 * ...) unless the fragments set them. The kernel stage configures a second time without
 * EXPERT; what is on there, off here, and not set by any fragment is the trap, exactly.
 * Which of those matter to CRIU, and how, comes from the CRIU catalog's kernel options and the
 * doctor's rules (the findings the trap adds), not from a list kept here. Pure.
 */
import type { CriuCatalog, CriuVersionEntry } from "../data/criu-catalog.js";
import { diagnose } from "../data/doctor.js";
import type { RequestedConfig } from "../data/fragments.js";
import type { KernelRequirements } from "../data/kernel-requirements.js";

export interface TrapEntry {
  symbol: string;
  /** What CRIU loses, when it loses something. */
  consequence: string | null;
  /** Relevant to checkpoint/restore: listed first. */
  criu: boolean;
}

const isOn = (v: string | undefined) => v === "y" || v === "m";

/** True when the fragments ask for EXPERT=y: the second configure is worth its seconds. */
export function requestsExpert(requested: RequestedConfig): boolean {
  return requested.values.get("CONFIG_EXPERT")?.value === "y";
}

/** The request as it would be without EXPERT. */
export function withoutExpert(requested: RequestedConfig): RequestedConfig {
  const values = new Map(requested.values);
  values.delete("CONFIG_EXPERT");
  return { values, overrides: requested.overrides };
}

/** Off with EXPERT, on without it, and set by no fragment: the options EXPERT turned off. */
export function trapSymbols(
  withExpert: Map<string, string>,
  noExpert: Map<string, string>,
  requested: RequestedConfig,
): string[] {
  return [...noExpert]
    .filter(([sym, v]) => isOn(v) && !isOn(withExpert.get(sym)) && !requested.values.has(sym))
    .map(([sym]) => sym)
    .sort();
}

export interface TrapContext {
  catalog: CriuCatalog;
  requirements: KernelRequirements;
  /** The CRIU the kernel is for: its doctor's findings give the consequences. */
  criu?: CriuVersionEntry;
  patches?: string[];
  kernelVersion: string;
  withExpert: Map<string, string>;
  noExpert: Map<string, string>;
}

/** Each trapped option with what CRIU loses; C/R-relevant ones first. */
export function explainTrap(symbols: string[], ctx: TrapContext): TrapEntry[] {
  // The doctor's findings that exist only because of EXPERT, each naming the option it is about.
  const added = ctx.criu ? findingsOnlyWith(ctx) : [];
  // Ranked: what makes CRIU fail first, then what it loses, then the rest.
  const ranked = symbols.map((symbol): TrapEntry & { rank: number } => {
    const name = symbol.replace(/^CONFIG_/, "");
    const finding = added.find((f) => new RegExp(`\\b(CONFIG_)?${name}\\b`).test(f.what));
    if (finding?.severity === "fail") return { symbol, consequence: said(finding), criu: true, rank: 0 };
    if (finding) return { symbol, consequence: said(finding), criu: true, rank: 3 };
    return { symbol, consequence: null, criu: false, rank: 4 };
  });
  return ranked
    .sort((a, b) => a.rank - b.rank || a.symbol.localeCompare(b.symbol))
    .map(({ rank: _r, ...e }) => e);
}

/** A finding as one line: its own words, with the reason when they do not name CRIU. */
const said = (f: { what: string; why: string }) => (/CRIU/.test(f.what) ? f.what : `${f.what}: ${f.why}`);

function findingsOnlyWith(ctx: TrapContext) {
  const run = (kernelConfig: Map<string, string>) =>
    diagnose({
      criu: ctx.criu!,
      catalog: ctx.catalog,
      kernelConfig,
      kernelVersion: ctx.kernelVersion,
      requirements: ctx.requirements,
      guestSuite: ctx.criu!.min_suite,
      criuBuild: ["compat"],
      patches: ctx.patches ?? [],
    });
  const without = new Set(run(ctx.noExpert).map((f) => f.id));
  return run(ctx.withExpert).filter((f) => !without.has(f.id));
}

/** The warning a user reads: C/R-relevant options with their consequence, then the rest. */
export function formatTrap(trap: TrapEntry[], base: string): string {
  const cr = trap.filter((e) => e.criu);
  const rest = trap.filter((e) => !e.criu).map((e) => e.symbol);
  return [
    `CONFIG_EXPERT=y over ${base} turns off ${trap.length} options that are on without it (the EXPERT trap; set them in a fragment to keep them):`,
    ...cr.map((e) => `  ${e.symbol} off: ${e.consequence}`),
    ...(rest.length ? [`  ${cr.length ? "also" : "off"}: ${rest.join(", ")}`] : []),
  ].join("\n");
}
