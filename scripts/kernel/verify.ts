/**
 * Proof that a kernel config holds what was asked: every requested symbol compared with the
 * final .config, each mismatch explained from Kconfig (unmet dependencies with the value of
 * each symbol in them, missing prompts, selects), unknown symbols reported on their own,
 * known drops accepted from an allowlist. Pure: inputs are parsed data.
 */
import semver from "semver";
import type { FragmentEntry, RequestedConfig } from "../data/fragments.js";
import {
  conjuncts,
  evalExpr,
  exprSymbols,
  exprToString,
  symbolValue,
  type Expr,
  type KSymbol,
  type KconfigTree,
} from "./kconfig.js";
import { closest } from "../lib/suggest.js";
import type { AllowEntry } from "../data/allowlist.js";
import { whitelisted, type WhitelistEntry } from "../data/kata-fragments.js";

export type { AllowEntry };

export interface Mismatch {
  symbol: string;
  requested: string;
  final: string;
  why: string[];
  from: FragmentEntry;
  allowed?: AllowEntry;
  /** Accepted by the Kata tree's whitelist. */
  whitelisted?: WhitelistEntry;
}

export interface UnknownSymbol {
  symbol: string;
  from: FragmentEntry;
  suggestion?: string;
  whitelisted?: WhitelistEntry;
}

export interface VerifyReport {
  checked: number;
  ok: string[];
  mismatches: Mismatch[];
  unknown: UnknownSymbol[];
  /** True when nothing is wrong that the allowlist or the Kata whitelist does not accept. */
  passed: boolean;
}

/** Normalizes values for comparison: `"n"` and absent are the same thing. */
function same(requested: string, final: string): boolean {
  return (
    requested === final || (requested.startsWith('"') && requested === `"${final.replace(/^"|"$/g, "")}"`)
  );
}

function describeTerm(term: Expr, config: Map<string, string>): string {
  const syms = [...exprSymbols(term)];
  const values = syms.map((s) => `${s}=${symbolValue(s, config)}`).join(", ");
  return `${exprToString(term)}${values ? ` [${values}]` : ""}`;
}

/** Why does `sym` (requested `requested`) have `final` in this config? */
export function explain(
  sym: KSymbol,
  requested: string,
  final: string,
  config: Map<string, string>,
): string[] {
  const why: string[] = [];
  const wantOn = requested !== "n";
  if (wantOn) {
    if (requested === "m" && symbolValue("MODULES", config) !== "y")
      why.push("requested =m but MODULES is not enabled");
    if (requested === "m" && sym.type === "bool") why.push(`${sym.name} is bool: it cannot be =m`);
    for (const def of sym.defs) {
      const at = `${def.file}:${def.line}`;
      const unmet = def.depends
        .flatMap(conjuncts)
        .filter((t) => evalExpr(t, config) !== 2 && (evalExpr(t, config) !== 1 || requested === "y"));
      if (unmet.length > 0) {
        why.push(
          `unmet dependency (${at}): ${unmet.map((t) => `depends on ${describeTerm(t, config)}`).join("; ")}`,
        );
        continue;
      }
      if (!def.prompt) {
        const sel = sym.selectedBy.map((s) => `${s.by}=${symbolValue(s.by, config)}`);
        why.push(
          `no prompt (${at}): a fragment cannot set it; it is only set by its default or when selected` +
            (sel.length
              ? ` by ${sel.slice(0, 8).join(", ")}${sel.length > 8 ? ", ..." : ""}`
              : " (nothing selects it)"),
        );
        continue;
      }
      if (def.prompt.cond && evalExpr(def.prompt.cond, config) !== 2) {
        why.push(`prompt hidden (${at}): visible only if ${describeTerm(def.prompt.cond, config)}`);
        continue;
      }
      if (def.choice !== undefined)
        why.push(`member of a choice (${at}): another option of the choice was picked`);
    }
    if (final === "m" && requested === "y") {
      const limits = sym.defs
        .flatMap((d) => d.depends.flatMap(conjuncts))
        .filter((t) => evalExpr(t, config) === 1);
      if (limits.length) why.push(`limited to m by ${limits.map((t) => describeTerm(t, config)).join("; ")}`);
    }
  } else {
    const selectors = sym.selectedBy.filter(
      (s) => symbolValue(s.by, config) !== "n" && (!s.cond || evalExpr(s.cond, config) !== 0),
    );
    if (selectors.length)
      why.push(`selected by ${selectors.map((s) => `${s.by}=${symbolValue(s.by, config)}`).join(", ")}`);
    else if (sym.defs.every((d) => !d.prompt))
      why.push("no prompt: its default decides and a fragment cannot turn it off");
    else
      for (const def of sym.defs)
        if (def.prompt?.cond && evalExpr(def.prompt.cond, config) !== 2)
          why.push(
            `prompt hidden (${def.file}:${def.line}): visible only if ${describeTerm(def.prompt.cond, config)}, so its default applies; set that too to turn it off`,
          );
  }
  if (why.length === 0) {
    if (requested === "y" && final === "m")
      why.push("dependencies allow y, but this config builds it as a module (present only after modprobe)");
    else if (wantOn && final === "n")
      why.push(
        "dependencies met and prompt visible: the config itself says n (the base config in a build, the distribution's choice in a prebuilt kernel)",
      );
    else why.push("no Kconfig reason found: check for a value outside its range or a conflicting fragment");
  }
  return why;
}

/** Prebuilt kernels come without their Kconfig: say what the values alone tell. */
function withoutKconfig(requested: string, final: string): string {
  if (requested === "y" && final === "m")
    return "built as a module: present only after modprobe (no initrd: not at boot)";
  if (final === "n") return "not enabled in this kernel (no Kconfig source cached to explain why)";
  return `set to ${final} in this kernel`;
}

export function isAllowed(
  symbol: string,
  kernelVersion: string,
  allow: AllowEntry[],
): AllowEntry | undefined {
  return allow.find(
    (a) => a.symbol === symbol && semver.satisfies(semver.coerce(kernelVersion) ?? kernelVersion, a.kernels),
  );
}

export function verifyConfig(opts: {
  requested: RequestedConfig;
  final: Map<string, string>;
  kconfig?: KconfigTree;
  kernelVersion: string;
  allowlist?: AllowEntry[];
  /** A Kata tree's whitelist: misses it names are reported apart and do not fail. */
  whitelist?: WhitelistEntry[];
}): VerifyReport {
  const wl = (symbol: string) => (opts.whitelist?.length ? whitelisted(symbol, opts.whitelist) : undefined);
  const ok: string[] = [];
  const mismatches: Mismatch[] = [];
  const unknown: UnknownSymbol[] = [];
  const names = opts.kconfig ? [...opts.kconfig.symbols.keys()] : [];
  for (const [symbol, entry] of opts.requested.values) {
    const name = symbol.replace(/^CONFIG_/, "");
    const sym = opts.kconfig?.symbols.get(name);
    if (opts.kconfig && !sym) {
      const suggestion = closest(name, names);
      unknown.push({
        symbol,
        from: entry,
        suggestion: suggestion ? `CONFIG_${suggestion}` : undefined,
        whitelisted: wl(symbol),
      });
      continue;
    }
    const final = opts.final.get(symbol) ?? "n";
    if (same(entry.value, final)) {
      ok.push(symbol);
      continue;
    }
    mismatches.push({
      symbol,
      requested: entry.value,
      final,
      why: sym ? explain(sym, entry.value, final, opts.final) : [withoutKconfig(entry.value, final)],
      from: entry,
      allowed: isAllowed(symbol, opts.kernelVersion, opts.allowlist ?? []),
      whitelisted: wl(symbol),
    });
  }
  return {
    checked: opts.requested.values.size,
    ok,
    mismatches,
    unknown,
    passed: unknown.every((u) => u.whitelisted) && mismatches.every((m) => m.allowed || m.whitelisted),
  };
}

/** The report as a table a person reads in a terminal or a log. */
export function formatVerifyReport(report: VerifyReport, kernelLabel: string): string {
  const out: string[] = [];
  out.push(
    `${kernelLabel}: ${report.ok.length}/${report.checked} requested symbols landed in the final .config`,
  );
  const unknown = report.unknown.filter((u) => !u.whitelisted);
  const mismatches = report.mismatches.filter((m) => !m.whitelisted);
  if (unknown.length) {
    out.push("", "Symbols that do not exist in this kernel's Kconfig:");
    for (const u of unknown)
      out.push(
        `  ${u.symbol}  (${u.from.file}:${u.from.line})${u.suggestion ? `  did you mean ${u.suggestion}?` : ""}`,
      );
  }
  if (mismatches.length) {
    const rows = mismatches.map((m) => [
      m.symbol,
      m.requested,
      m.final,
      m.allowed ? `allowed: ${m.allowed.reason}` : m.why[0],
    ]);
    const header = ["symbol", "requested", "final", "why"];
    const width = (i: number) => Math.max(header[i].length, ...rows.map((r) => r[i].length));
    const fmt = (r: string[]) =>
      `  ${r
        .slice(0, 3)
        .map((c, i) => c.padEnd(width(i)))
        .join("  ")}  ${r[3]}`;
    out.push("", "Requested symbols that did not land:", fmt(header));
    mismatches.forEach((m, i) => {
      out.push(fmt(rows[i]));
      for (const extra of m.why.slice(m.allowed ? 0 : 1))
        out.push(`  ${" ".repeat(width(0) + width(1) + width(2) + 6)}${extra}`);
      out.push(
        `  ${" ".repeat(width(0) + width(1) + width(2) + 6)}(requested in ${m.from.file}:${m.from.line})`,
      );
    });
  }
  const accepted = [
    ...report.unknown
      .filter((u) => u.whitelisted)
      .map((u) => ({ symbol: u.symbol, what: "not in this kernel's Kconfig", w: u.whitelisted! })),
    ...report.mismatches
      .filter((m) => m.whitelisted)
      .map((m) => ({
        symbol: m.symbol,
        what: `requested ${m.requested}, final ${m.final}`,
        w: m.whitelisted!,
      })),
  ];
  if (accepted.length) {
    out.push("", `Whitelisted by Kata (${accepted.length}, accepted misses, not failures):`);
    for (const a of accepted)
      out.push(`  ${a.symbol}  ${a.what}  (pattern '${a.w.pattern}', ${a.w.file}:${a.w.line})`);
  }
  out.push("", report.passed ? "verification PASSED" : "verification FAILED");
  return out.join("\n");
}

/**
 * The reader's own verdict on one requested y/m symbol, from Kconfig alone: can the final
 * config hold the requested value? Selected by an active symbol, or a visible prompt whose
 * dependencies allow the value. Choice members and n-requests are not judged (undefined).
 * Checked against what scripts/kconfig really wrote (`referenceDisagreements`), this is how
 * the parser is tested on whole real trees.
 */
export function readerVerdict(
  sym: KSymbol,
  requested: string,
  config: Map<string, string>,
): boolean | undefined {
  if (requested !== "y" && requested !== "m") return undefined;
  if (sym.defs.some((d) => d.choice !== undefined)) return undefined;
  if (requested === "m" && (sym.type === "bool" || symbolValue("MODULES", config) !== "y")) return false;
  const need = requested === "y" ? 2 : 1;
  const tri = (e: Expr | undefined) => (e ? evalExpr(e, config) : 2);
  // Selected by an active symbol: forced, whatever its own prompt says.
  if (
    sym.selectedBy.some((s) => (tri({ kind: "sym", name: s.by }) ?? 0) >= need && (tri(s.cond) ?? 0) >= need)
  )
    return true;
  let unknown = false;
  for (const d of sym.defs) {
    const deps = d.depends.map(tri);
    if (deps.includes(null)) unknown = true;
    const depsOk = deps.every((v) => v === null || v >= need);
    const visible = d.prompt ? tri(d.prompt.cond) : 0;
    if (visible === null) unknown = true;
    if (visible === 2 && depsOk) return true;
  }
  // No visible prompt: the first default whose condition holds decides, within the dependencies.
  for (const d of sym.defs)
    for (const dflt of d.defaults) {
      const cond = tri(dflt.cond);
      if (cond === null) return undefined;
      if (cond === 0) continue;
      const v = tri(dflt.value);
      if (v === null) return undefined;
      return v >= need && d.depends.every((dep) => (tri(dep) ?? 2) >= need)
        ? true
        : unknown
          ? undefined
          : false;
    }
  return unknown ? undefined : false;
}

/** Requested symbols where the reader's verdict and the final .config disagree (should be none). */
export function referenceDisagreements(
  requested: RequestedConfig,
  final: Map<string, string>,
  kconfig: KconfigTree,
): { symbol: string; reader: boolean; landed: boolean }[] {
  const out: { symbol: string; reader: boolean; landed: boolean }[] = [];
  for (const [symbol, entry] of requested.values) {
    const sym = kconfig.symbols.get(symbol.replace(/^CONFIG_/, ""));
    if (!sym) continue;
    const reader = readerVerdict(sym, entry.value, final);
    if (reader === undefined) continue;
    const landed = same(entry.value, final.get(symbol) ?? "n");
    if (reader !== landed) out.push({ symbol, reader, landed });
  }
  return out;
}
