/**
 * The EXPERT trap, measured instead of guessed. EXPERT=y makes the `if EXPERT` prompts
 * visible, so an allnoconfig base turns their default-y options off (MEMBARRIER, RSEQ, FUTEX,
 * ...) unless the fragments set them. The kernel stage configures a second time without
 * EXPERT; what is on there, off here, and not set by any fragment is the trap, exactly.
 * Which of those matter to CRIU, and how, comes from the kernel requirements map held against
 * the final .config (requirement-check.ts), not from a list kept here. Pure.
 */
import type { RequestedConfig } from "../data/fragments.js";
import type { KernelRequirements } from "../data/kernel-requirements.js";
import { assess, type Assessment, type CriuFacts } from "../data/requirement-check.js";
import type { KconfigTree } from "./kconfig.js";

export interface TrapEntry {
  symbol: string;
  /** What CRIU loses, as the map says, when it loses something. */
  consequence: string | null;
  /** Relevant to checkpoint/restore: listed first. */
  criu: boolean;
  /** The map's entries (kind/NAME) the option's absence blocks, directly or through what it selects. */
  entries: string[];
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
  requirements: KernelRequirements;
  /** The CRIU the kernel is for: its version, build and patches. */
  criu: CriuFacts;
  kernelVersion: string;
  /** The final .config (with EXPERT). */
  withExpert: Map<string, string>;
  /** Who selects whom: an option the map does not name may select one it does (FHANDLE, EXPORTFS). */
  kconfig?: Pick<KconfigTree, "symbols">;
}

/**
 * Ranks, the order of the trap's lines: 0 CRIU does not start, 1 plain criu check fails, 2 a
 * feature is lost, 3 nothing CRIU needs.
 */
const NOTHING = 3;

/** What one blocked entry breaks: how bad, and the words of its group ("{}" takes the names). */
function breakage(x: Assessment): { rank: number; says: string } | undefined {
  const r = x.req;
  if (r.kind === "probe" && r.effect === "every CRIU command fails at start")
    return x.tolerated
      ? { rank: 2, says: `CRIU starts only thanks to ${r.avoidedByPatches.join(", ")} (start-up probe {})` }
      : { rank: 0, says: "every CRIU command fails at start (start-up probe {})" };
  if (r.kind === "check" && r.mode === "plain") return { rank: 1, says: "plain criu check fails ({})" };
  if (r.kind === "feature") return { rank: 2, says: "criu check --feature {} fails" };
  // An --all check that runs a feature's function (same_as) says what the feature says.
  if (r.kind === "check" && !r.sameAs) return { rank: 2, says: "criu check --all reports {} missing" };
  return undefined;
}

/** The blocked entries that lack this symbol, and what the worst of them break, in the map's words. */
function blockedBy(name: string, assessed: Assessment[]) {
  const broken = assessed
    .filter(
      (x) => x.blocked && (x.unmet.missing.includes(name) || x.unmet.anyOf.some((g) => g.includes(name))),
    )
    .flatMap((x) => {
      const b = breakage(x);
      return b ? [{ ...b, x }] : [];
    });
  if (!broken.length) return undefined;
  const rank = Math.min(...broken.map((b) => b.rank));
  const groups = new Map<string, string[]>();
  for (const b of broken.filter((y) => y.rank === rank))
    groups.set(b.says, [...(groups.get(b.says) ?? []), b.x.req.name]);
  return {
    rank,
    text: [...groups]
      .map(([says, names]) =>
        says.replace("probe {}", `probe${names.length > 1 ? "s" : ""} {}`).replace("{}", names.join(", ")),
      )
      .join("; "),
    entries: broken.map((b) => `${b.x.req.kind}/${b.x.req.name}`),
  };
}

/** Trapped options that select this one (its only way in when it has no prompt). */
function selectorsOf(name: string, trapped: string[], kconfig: TrapContext["kconfig"]): string[] {
  const by = kconfig?.symbols.get(name)?.selectedBy.map((s) => s.by) ?? [];
  return trapped.filter((t) => by.includes(t));
}

/** Each trapped option with what CRIU loses by the map; what breaks most first, then the rest. */
export function explainTrap(symbols: string[], ctx: TrapContext): TrapEntry[] {
  const assessed = assess(
    ctx.requirements,
    { config: ctx.withExpert, version: ctx.kernelVersion, modules: false },
    ctx.criu,
  );
  const names = symbols.map((s) => s.replace(/^CONFIG_/, ""));
  const direct = new Map(names.map((n) => [n, blockedBy(n, assessed)]));
  const ranked = symbols.map((symbol, i): TrapEntry & { rank: number } => {
    const name = names[i];
    const own = direct.get(name);
    // An option the map does not name, selecting one it does: the selected one's loss is its own.
    const selected = own
      ? undefined
      : names.find((n) => direct.get(n) && selectorsOf(n, names, ctx.kconfig).includes(name));
    const b = own ?? (selected ? direct.get(selected) : undefined);
    if (!b) return { symbol, consequence: null, criu: false, entries: [], rank: NOTHING };
    const via = selected ? `selects ${selected}: ` : "";
    return { symbol, consequence: `${via}${b.text}`, criu: true, entries: b.entries, rank: b.rank };
  });
  return ranked
    .sort((a, b) => a.rank - b.rank || a.symbol.localeCompare(b.symbol))
    .map(({ rank: _r, ...e }) => e);
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
