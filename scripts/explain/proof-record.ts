/**
 * What a proof run leaves in the repository (`explain --prove --record`): each symbol's outcome
 * in criu-builds/kernel-proofs.yaml (the evidence: what was predicted, what failed, the variant's
 * config diff, the runs), each map entry a proven symbol explains gets a `proven` item in
 * criu-builds/kernel-requirements.yaml (comments and layout kept), and docs/kernel-proofs.md
 * is written from the record. The merging and the table are pure.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import semver from "semver";
import { isMap, isScalar, isSeq, parseDocument, stringify, type Document } from "yaml";
import { semverOf } from "../data/criu-catalog.js";
import {
  KERNEL_REQUIREMENTS_FILE,
  symbolsOf,
  type KernelRequirements,
  type Proof,
  type Requirement,
} from "../data/kernel-requirements.js";
import { writeAtomic } from "../lib/fs-atomic.js";
import { CRIU_BUILDS_DIR, REPO_ROOT } from "../lib/paths.js";
import type { BatchOutcome, ProveReport } from "./prove.js";
import type { ProofStatus } from "./prove-plan.js";

export const PROOFS_FILE = join(CRIU_BUILDS_DIR, "kernel-proofs.yaml");
export const PROOFS_DOC = join(REPO_ROOT, "docs", "kernel-proofs.md");

/** One symbol's outcome with one CRIU on one kernel. */
export interface SymbolProof {
  symbol: string;
  criu: string;
  kernel: string;
  status: ProofStatus | "cannot-turn-off";
  date: string;
  predicted: string[];
  failed: string[];
  why?: string;
  /** The symbols turned off together in the same variant. */
  batch: string[];
  /** What else differs from the default kernel's .config (selectors, EXPERT, the trap, Kconfig's consequences). */
  also_changed: string[];
  variant_kernel: string | null;
  run: string | null;
  baseline_run: string;
}

export interface ProofsRecord {
  proofs: SymbolProof[];
}

/** A report's batches as one outcome per symbol. */
export function symbolProofs(
  report: Pick<ProveReport, "criu" | "kernel" | "baseline" | "batches">,
): SymbolProof[] {
  return report.batches.flatMap((b) => batchProofs(report, b));
}

function batchProofs(
  report: Pick<ProveReport, "criu" | "kernel" | "baseline">,
  b: BatchOutcome,
): SymbolProof[] {
  const common = {
    criu: report.criu,
    kernel: report.kernel.version,
    date: b.date,
    batch: b.symbols,
    also_changed: b.config_diff
      .map((d) => `${d.symbol}=${d.variant}`)
      .filter((d) => !b.symbols.includes(d.split("=")[0])),
    variant_kernel: b.kernel.variant_key,
    run: b.run ? `${b.run.key} (${b.run.status})` : null,
    baseline_run: report.baseline.key,
  };
  const cannot = b.cannot.map((c): SymbolProof => ({
    ...common,
    symbol: c.symbol,
    status: "cannot-turn-off",
    predicted: [],
    failed: [],
    why: c.why,
  }));
  const judged = b.verdict.symbols.map((s): SymbolProof => ({
    ...common,
    symbol: s.symbol,
    status: s.status,
    predicted: s.predicted,
    failed: s.failed,
    ...(s.why ? { why: s.why } : {}),
  }));
  // A variant that never ran (each symbol stayed on, or an outcome of an older cr-guest).
  const notRun = !b.run
    ? b.symbols
        .filter((s) => !b.cannot.some((c) => c.symbol === s))
        .map((s): SymbolProof => ({
          ...common,
          symbol: s,
          status: "unobservable",
          predicted: [],
          failed: [],
          why: "not run: another symbol of its variant could not be turned off",
        }))
    : [];
  return [...cannot, ...judged, ...notRun];
}

/** The record with these outcomes in: one per symbol, CRIU and kernel (a newer run replaces). */
export function mergeProofs(record: ProofsRecord, add: SymbolProof[]): ProofsRecord {
  const key = (p: SymbolProof) => `${p.symbol} ${p.criu} ${p.kernel}`;
  // One per key: of the added, the last one said wins.
  const added = [...new Map(add.map((p) => [key(p), p])).values()];
  const fresh = new Set(added.map(key));
  const proofs = [...record.proofs.filter((p) => !fresh.has(key(p))), ...added];
  return { proofs: proofs.sort((a, b) => a.symbol.localeCompare(b.symbol) || a.criu.localeCompare(b.criu)) };
}

/** The guest tests that show an entry failing (plain criu check, a feature; --all shows nothing new). */
function testsOf(r: Requirement): string[] {
  if (r.kind === "feature") return [`feature/${r.name}`];
  if (r.kind === "check") return r.mode === "plain" ? ["criu-check"] : [];
  if (r.effect === "every CRIU command fails at start") return ["criu-check"];
  return r.feeds.map((f) => `feature/${f}`);
}

/** The map entries a proven symbol explains: they need it, and a test that shows them failed. */
export function entriesProvenBy(map: KernelRequirements, p: SymbolProof): Requirement[] {
  if (p.status !== "proven") return [];
  const v = semverOf(p.criu);
  return map.entries.filter(
    (r) =>
      !r.sameAs &&
      semver.satisfies(v, r.criu) &&
      symbolsOf(r.needs).includes(p.symbol) &&
      testsOf(r).some((t) => p.failed.includes(t)),
  );
}

/** The proof item an entry gets. */
const proofItem = (p: SymbolProof): Proof => ({
  symbols: [p.symbol],
  kernel: p.variant_kernel ? `${p.kernel} (variant ${p.variant_kernel})` : p.kernel,
  criu: p.criu,
  date: p.date,
  run: p.run ?? "",
});

/**
 * The map file's text with each proven entry's `proven` list rewritten in place: only those
 * values change, every other byte (comments, flow lists, wrapping) stays as written.
 */
export function recordInMap(mapText: string, map: KernelRequirements, proofs: SymbolProof[]): string {
  const edits = new Map<Requirement, Proof[]>();
  const doc = parseDocument(mapText);
  for (const p of proofs)
    for (const r of entriesProvenBy(map, p)) {
      const have = edits.get(r) ?? provenOf(doc, r);
      const kept = have.filter(
        (x) => !(x.symbols.join() === p.symbol && x.criu === p.criu && x.kernel.startsWith(p.kernel)),
      );
      edits.set(r, [...kept, proofItem(p)]);
    }
  // From the end of the file backwards, so earlier offsets stay valid.
  const spans = [...edits].map(([r, list]) => ({ ...provenSpan(doc, mapText, r), list }));
  let text = mapText;
  for (const { start, end, indent, list } of spans.sort((a, b) => b.start - a.start))
    text = text.slice(0, start) + renderProvenList(list, indent) + text.slice(end);
  return text;
}

function entryPath(doc: Document, r: Requirement): (string | number)[] {
  const node = doc.getIn([r.kind, r.name]);
  if (!isSeq(node)) return [r.kind, r.name];
  const i = (node.toJSON() as { criu: string }[]).findIndex((e) => e.criu === r.criu);
  return [r.kind, r.name, i];
}

function provenOf(doc: Document, r: Requirement): Proof[] {
  const v = doc.getIn([...entryPath(doc, r), "proven"]);
  return isSeq(v) ? (v.toJSON() as Proof[]) : [];
}

/** Where an entry's `proven` value is in the text, and the column of its key. */
function provenSpan(
  doc: Document,
  text: string,
  r: Requirement,
): { start: number; end: number; indent: number } {
  const entry = doc.getIn(entryPath(doc, r), true);
  const pair = isMap(entry)
    ? entry.items.find((i) => isScalar(i.key) && i.key.value === "proven")
    : undefined;
  const key = pair?.key as { range?: [number, number, number] } | undefined;
  const value = pair?.value as { range?: [number, number, number] } | undefined;
  if (!key?.range || !value?.range)
    throw new Error(`${r.at}: ${r.kind}/${r.name} has no 'proven:' to record into (write proven: false)`);
  const indent = key.range[0] - text.lastIndexOf("\n", key.range[0]) - 1;
  // A block list's range runs over the line breaks after it: those stay.
  let end = value.range[1];
  while (end > value.range[0] && /\s/.test(text[end - 1])) end--;
  return { start: key.range[1], end, indent };
}

/** `proven:` followed by a block list, at the key's indent. */
function renderProvenList(list: Proof[], indent: number): string {
  const pad = " ".repeat(indent + 2);
  const item = (p: Proof) =>
    [
      `${pad}- symbols: [${p.symbols.join(", ")}]`,
      `${pad}  kernel: ${JSON.stringify(p.kernel)}`,
      `${pad}  criu: ${JSON.stringify(p.criu)}`,
      `${pad}  date: ${JSON.stringify(p.date)}`,
      `${pad}  run: ${JSON.stringify(p.run)}`,
    ].join("\n");
  return `:\n${list.map(item).join("\n")}`;
}

export function readProofs(file = PROOFS_FILE): ProofsRecord {
  if (!existsSync(file)) return { proofs: [] };
  const doc = parseDocument(readFileSync(file, "utf8")).toJSON() as { proofs?: SymbolProof[] } | null;
  return { proofs: doc?.proofs ?? [] };
}

const HEADER = `# Written by \`cr-guest explain --prove --record\`: each symbol's proof (docs/kernel-proofs.md
# is made from this file). status: proven (exactly the predicted checks and features failed),
# mismatch (they did not: read why), unobservable (every predicted test already fails on the
# default kernel), cannot-turn-off (the symbol could not be turned off alone).
`;

/** Each proof with its symbol and verdict first, lists inline where short, no YAML aliases. */
export function renderProofs(record: ProofsRecord): string {
  const ordered = record.proofs.map(({ symbol, status, criu, kernel, date, ...rest }) => ({
    symbol,
    status,
    criu,
    kernel,
    date,
    ...rest,
  }));
  return `${HEADER}${stringify({ proofs: ordered }, { lineWidth: 110, aliasDuplicateObjects: false })}`;
}

/** docs/kernel-proofs.md: one row per symbol and CRIU version. */
export function renderProofsDoc(record: ProofsRecord): string {
  const rows = record.proofs.map((p) => {
    const what = [p.failed.join(", "), p.status === "proven" ? "" : (p.why ?? "")].filter(Boolean).join("; ");
    const evidence = p.run ? `run ${p.run}; variant kernel ${p.variant_kernel}` : (p.why ?? "");
    return `| \`${p.symbol}\` | ${p.criu} | ${p.kernel} | ${p.status} | ${what} | ${p.batch.join(", ")} | ${p.date} | ${evidence} |`;
  });
  return [
    "# Kernel requirements, proven",
    "",
    "Each row is one run of `cr-guest explain --prove`: the default kernel built again without the",
    "symbol (EXPERT and what it turns off handled, selectors off too; the final .config checked),",
    "booted with the checks and features, held against the default kernel's run with the same",
    "CRIU. **proven**: exactly the checks and features the map predicts failed, every other one",
    "still passed. The record is `criu-builds/kernel-proofs.yaml` (with each variant's full",
    "config diff); each proven entry of `criu-builds/kernel-requirements.yaml` lists its proof.",
    "Runs and kernel keys name artifacts in the cache of the machine that ran them; run",
    "`cr-guest explain --prove SYMBOL` to make them anew.",
    "",
    "| symbol | CRIU | kernel | verdict | what failed without it | turned off together | date | evidence |",
    "|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
  ].join("\n");
}

/** Writes the record, the map's proven lists and the docs table (each by temp file and rename). */
export async function recordProofs(
  report: Pick<ProveReport, "criu" | "kernel" | "baseline" | "batches">,
  map: KernelRequirements,
): Promise<SymbolProof[]> {
  const add = symbolProofs(report);
  const record = mergeProofs(readProofs(), add);
  await writeAtomic(PROOFS_FILE, renderProofs(record));
  await writeAtomic(
    KERNEL_REQUIREMENTS_FILE,
    recordInMap(readFileSync(KERNEL_REQUIREMENTS_FILE, "utf8"), map, add),
  );
  await writeAtomic(PROOFS_DOC, renderProofsDoc(record));
  return add;
}
