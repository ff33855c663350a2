/**
 * Planning a proof of the kernel requirements map (`explain --prove`), pure: which symbols to
 * prove, what each is predicted to break, how they batch into kernel variants, the fragment
 * that turns a batch off, and the verdict once the variant has run beside the default kernel.
 * The prediction is the diagnosis itself (causeOf on the variant's .config against the
 * default's): a proof proves exactly what every report will say.
 */
import type { VariantLine as BaseVariantLine } from "../variant/kernel-variant.js";
import { evalExpr, exprSymbols, type KconfigTree } from "../kernel/kconfig.js";
import { allSymbols, type KernelRequirements } from "../data/kernel-requirements.js";
import { assess, causeOf, judgeConfig, type CriuFacts, type KernelFacts } from "../data/requirement-check.js";

/** The guest tests the map speaks of: criu check, --all and each feature. */
export function mapTests(map: KernelRequirements, criu: CriuFacts, base: KernelFacts): string[] {
  const features = assess(map, base, criu)
    .filter((a) => a.req.kind === "feature")
    .map((a) => `feature/${a.req.name}`);
  return ["criu-check", "criu-check-all", ...features];
}

/** The tests whose failure the map explains on this kernel: by its config, or also by CRIU's build. */
function explained(
  map: KernelRequirements,
  k: KernelFacts,
  criu: CriuFacts,
  byBuildToo = false,
): Set<string> {
  const ctx = { verdict: judgeConfig(map, k, criu), assessments: assess(map, k, criu) };
  const kinds = byBuildToo ? ["config", "build"] : ["config"];
  return new Set(mapTests(map, criu, k).filter((t) => kinds.includes(causeOf(t, ctx)?.kind ?? "")));
}

/** What turning symbols off is predicted to break: tests the config explains on the variant, nothing on the base. */
export function predictedFailures(
  map: KernelRequirements,
  base: KernelFacts,
  variant: KernelFacts,
  criu: CriuFacts,
): string[] {
  const before = explained(map, base, criu, true);
  return [...explained(map, variant, criu)].filter((t) => !before.has(t));
}

/** The base with these symbols unset (a prediction before Kconfig has had its say). */
export function without(base: KernelFacts, symbols: string[]): KernelFacts {
  const config = new Map(base.config);
  for (const s of symbols) config.set(`CONFIG_${s}`, "n");
  return { ...base, config };
}

export interface Candidate {
  symbol: string;
  /** Tests predicted to turn from PASS to FAIL (those the base already fails cannot show it). */
  predicted: string[];
}

/**
 * The symbols a proof covers: named by the map, on in the default kernel (built in), and
 * predicted to break something this CRIU build can show. The rest say why not.
 */
export function candidates(
  map: KernelRequirements,
  base: KernelFacts,
  criu: CriuFacts,
  only?: string[],
): { prove: Candidate[]; skipped: { symbol: string; why: string }[] } {
  const prove: Candidate[] = [];
  const skipped: { symbol: string; why: string }[] = [];
  for (const symbol of only ?? allSymbols(map)) {
    const value = base.config.get(`CONFIG_${symbol}`);
    if (value !== "y") {
      skipped.push({ symbol, why: `off in the default kernel (${value ?? "unset"}): nothing to take away` });
      continue;
    }
    const predicted = predictedFailures(map, base, without(base, [symbol]), criu);
    if (predicted.length) prove.push({ symbol, predicted });
    else
      skipped.push({
        symbol,
        why: `no check or feature of CRIU ${criu.version} (this build) is predicted to fail without it`,
      });
  }
  return { prove, skipped };
}

/** Symbols batch when their predicted failures are disjoint: each failure then names its symbol. */
export function batch(cands: Candidate[], maxSize = 6): Candidate[][] {
  const batches: Candidate[][] = [];
  for (const c of cands) {
    const fits = batches.find(
      (b) => b.length < maxSize && b.every((o) => !o.predicted.some((t) => c.predicted.includes(t))),
    );
    if (fits) fits.push(c);
    else batches.push([c]);
  }
  // The fullest variants first: each build proves the most symbols (a run cut short gets most).
  return batches.sort((a, b) => b.length - a.length);
}

/** A line of a proof's variant: a symbol off, or a trap's option put back on. */
export type VariantLine = BaseVariantLine & { value: "y" | "n" };

const on = (config: Map<string, string>, s: string) => ["y", "m"].includes(config.get(`CONFIG_${s}`) ?? "");

/**
 * The first request for a variant with `symbols` off: each symbol and every option on in the
 * base that selects it (a select overrides "is not set"), and EXPERT when a prompt is visible
 * only with it. What Kconfig then turns off with them, and what EXPERT turns off besides, is
 * measured by configuring (refineVariant).
 */
export function variantLines(
  symbols: string[],
  tree: KconfigTree,
  base: Map<string, string>,
): { lines: VariantLine[]; cannot: { symbol: string; why: string }[] } {
  const lines: VariantLine[] = [];
  const cannot: { symbol: string; why: string }[] = [];
  const queue = symbols.map((s) => ({ s, why: "proved: off" }));
  let expert = false;
  while (queue.length) {
    const { s, why } = queue.shift()!;
    if (lines.some((l) => l.symbol === s)) continue;
    const sym = tree.symbols.get(s);
    if (!sym) {
      cannot.push({ symbol: s, why: `the kernel's Kconfig defines no CONFIG_${s}` });
      continue;
    }
    const prompts = sym.defs.filter((d) => d.prompt);
    if (!prompts.length && !sym.selectedBy.length) {
      cannot.push({ symbol: s, why: `CONFIG_${s} has no prompt and no select: its default alone sets it` });
      continue;
    }
    lines.push({ symbol: s, value: "n", why });
    const hidden = prompts.some((d) => d.prompt!.cond && evalExpr(d.prompt!.cond, base) === 0);
    if (hidden && prompts.some((d) => d.prompt!.cond && exprSymbols(d.prompt!.cond).has("EXPERT")))
      expert = true;
    for (const sel of sym.selectedBy)
      if (on(base, sel.by) && (!sel.cond || evalExpr(sel.cond, base) !== 0))
        queue.push({ s: sel.by, why: `selects ${s}` });
  }
  if (expert && !on(base, "EXPERT"))
    lines.push({ symbol: "EXPERT", value: "y", why: "makes the prompts of the symbols turned off visible" });
  return { lines, cannot };
}

/** What a configure of the variant told: the EXPERT trap to put back, requests Kconfig overrode. */
export interface ConfigureFeedback {
  trap: string[];
  /** Requested y, final off: forced off by what the variant turned off. */
  forcedOff: string[];
}

/** The next request: the trap put back (y), what Kconfig forced off requested off. Stable when unchanged. */
export function refineVariant(lines: VariantLine[], fb: ConfigureFeedback): VariantLine[] {
  const next = lines.map((l) =>
    fb.forcedOff.includes(l.symbol) && l.value === "y"
      ? { ...l, value: "n" as const, why: "depends on a symbol turned off (Kconfig forced it off)" }
      : l,
  );
  for (const s of fb.trap)
    if (!next.some((l) => l.symbol === s))
      next.push({ symbol: s, value: "y", why: "EXPERT trap: on in the default kernel, put back" });
  for (const s of fb.forcedOff)
    if (!next.some((l) => l.symbol === s))
      next.push({ symbol: s, value: "n", why: "depends on a symbol turned off (Kconfig forced it off)" });
  return next;
}

/** Every symbol whose value differs between two .config files. */
export function configDiff(
  base: Map<string, string>,
  variant: Map<string, string>,
): { symbol: string; base: string; variant: string }[] {
  const keys = new Set([...base.keys(), ...variant.keys()]);
  return [...keys]
    .filter((k) => (base.get(k) ?? "n") !== (variant.get(k) ?? "n"))
    .sort()
    .map((k) => ({
      symbol: k.replace(/^CONFIG_/, ""),
      base: base.get(k) ?? "n",
      variant: variant.get(k) ?? "n",
    }));
}

export type ProofStatus = "proven" | "mismatch" | "cannot-turn-off" | "unobservable";

export interface SymbolVerdict {
  symbol: string;
  status: ProofStatus;
  predicted: string[];
  /** Of predicted: those that did fail. */
  failed: string[];
  /** Of predicted: those that still passed. */
  stillPassed: string[];
  why?: string;
}

export interface BatchVerdict {
  symbols: SymbolVerdict[];
  /** Map tests that changed without any symbol of the batch predicting it. */
  unpredicted: { test: string; base: string; variant: string }[];
  /** Tests outside the map (scenarios, ...) whose status changed: evidence, not part of the verdict. */
  otherChanges: { test: string; base: string; variant: string }[];
}

/**
 * The verdict of one variant run: each symbol is proven when every test predicted for it
 * turned from PASS to FAIL and no map test changed that no symbol of the batch predicted.
 */
export function judgeBatch(
  cands: Candidate[],
  universe: string[],
  base: Map<string, string>,
  variant: Map<string, string>,
  /** What the map predicts from the variant's final .config (Kconfig may have turned off more). */
  variantPredicted: string[] = [],
): BatchVerdict {
  const predictedAll = new Set([...cands.flatMap((c) => c.predicted), ...variantPredicted]);
  const changed = [...new Set([...base.keys(), ...variant.keys()])]
    .filter((t) => (base.get(t) ?? "absent") !== (variant.get(t) ?? "absent"))
    .map((test) => ({ test, base: base.get(test) ?? "absent", variant: variant.get(test) ?? "absent" }));
  const unpredicted = changed.filter((c) => universe.includes(c.test) && !predictedAll.has(c.test));
  const symbols = cands.map((c): SymbolVerdict => {
    const observable = c.predicted.filter((t) => base.get(t) === "PASS");
    const failed = observable.filter((t) => variant.get(t) !== "PASS");
    const stillPassed = observable.filter((t) => variant.get(t) === "PASS");
    const status: ProofStatus = !observable.length
      ? "unobservable"
      : stillPassed.length || unpredicted.length
        ? "mismatch"
        : "proven";
    const why =
      status === "unobservable"
        ? "every test predicted to fail already fails on the default kernel"
        : stillPassed.length
          ? `predicted to fail but passed: ${stillPassed.join(", ")}`
          : unpredicted.length
            ? `changed though no symbol of the variant predicts it: ${unpredicted.map((u) => u.test).join(", ")}`
            : undefined;
    return { symbol: c.symbol, status, predicted: c.predicted, failed, stillPassed, why };
  });
  return { symbols, unpredicted, otherChanges: changed.filter((c) => !universe.includes(c.test)) };
}
