/**
 * `cr-guest explain --prove [SYMBOL...]`: proof by experiment that the kernel requirements map
 * says true. Per batch of symbols: a variant of the default kernel with them off (EXPERT and the
 * trap it springs handled, selectors turned off too, Kconfig's consequences measured by
 * configuring), built incrementally from the default kernel, booted with the checks and
 * features only, and judged against the default kernel's run: exactly the predicted tests fail.
 * Each batch's outcome is kept under the cache (a second run resumes where it stopped).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { drive, type Outcomes } from "../driver.js";
import { repoData } from "../data/repo-data.js";
import { loadDotConfig } from "../data/fragments.js";
import { criuFacts, type CriuFacts, type KernelFacts } from "../data/requirement-check.js";
import type { KconfigTree } from "../kernel/kconfig.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { writeAtomic } from "../lib/fs-atomic.js";
import { configureVariant, variantKernel } from "../variant/kernel-variant.js";
import { cacheKey } from "../lib/hash.js";
import {
  batch,
  candidates,
  configDiff,
  judgeBatch,
  mapTests,
  predictedFailures,
  without,
  refineVariant,
  variantLines,
  type BatchVerdict,
  type Candidate,
  type VariantLine,
} from "./prove-plan.js";

/** Configures before a variant's request is stable (trap put back, forced-off recorded). */
const MAX_CONFIGURES = 4;

export interface ProveOptions {
  symbols?: string[];
  maxBatch?: number;
  force?: boolean;
  /** Judge (and record) only the outcomes the cache keeps: build and boot nothing new. */
  keptOnly?: boolean;
  log: (line: string) => void;
  /** Called as each batch's outcome is known (kept or new): recording as it goes survives a stop. */
  onBatch?: (b: BatchOutcome, report: Pick<ProveReport, "criu" | "kernel" | "baseline">) => Promise<void>;
}

/** One variant's outcome, as kept under the cache and in the proofs record. */
export interface BatchOutcome {
  id: string;
  symbols: string[];
  criu: string;
  kernel: { version: string; default_key: string; variant_key: string | null };
  date: string;
  /** The variant's fragment, line by line with why. */
  request: VariantLine[];
  /** Every symbol whose value differs from the default kernel's final .config. */
  config_diff: { symbol: string; base: string; variant: string }[];
  verdict: BatchVerdict;
  cannot: { symbol: string; why: string }[];
  run: { key: string; dir: string; status: string } | null;
}

export interface ProveReport {
  criu: string;
  kernel: { version: string; key: string };
  baseline: { key: string; dir: string };
  skipped: { symbol: string; why: string }[];
  batches: BatchOutcome[];
}

/** The guest run of proofs: checks and features only (no scenarios), the same for both kernels. */
async function proofConfig(config: PipelineConfig): Promise<PipelineConfig> {
  const dir = join(config.cache_dir, "prove");
  await mkdir(dir, { recursive: true });
  const scenarios = join(dir, "no-scenarios.yaml");
  if (!existsSync(scenarios))
    await writeAtomic(scenarios, "# explain --prove: the checks and features alone\nscenarios: []\n");
  return { ...config, boot: { ...config.boot, scenarios } };
}

const statuses = (o: Outcomes) => new Map(o.boot!.value.results.tests.map((t) => [t.name, t.status]));

interface Baseline {
  config: PipelineConfig;
  outcomes: Outcomes;
  kernel: KernelFacts;
  criu: CriuFacts;
  key: string;
  tests: Map<string, string>;
}

/** The default kernel, the CRIU build, the image and their run: what every variant is held against. */
async function baseline(config: PipelineConfig): Promise<Baseline> {
  const proof = await proofConfig(config);
  const outcomes = await drive(proof, ["boot"]);
  const k = outcomes.kernel!.value;
  const boot = outcomes.boot!.value;
  if (boot.results.status !== "COMPLETE")
    throw new UserError(
      `the default kernel's run did not complete (${boot.results.status}): ${boot.dir}`,
      "a proof needs a working default kernel: run `cr-guest smoke` and read its console log",
      3,
    );
  return {
    config: proof,
    outcomes,
    kernel: { config: k.config!, version: k.ref!.version },
    criu: criuFacts(outcomes.criu!.value.metadata),
    key: k.ref!.key,
    tests: statuses(outcomes),
  };
}

/** Configure the variant until its request is stable: the trap put back, forced-off recorded. */
async function configureProofVariant(b: Baseline, file: string, lines: VariantLine[], title: string) {
  const r = await configureVariant(b.config, {
    file,
    title,
    lines,
    max: MAX_CONFIGURES,
    refine: (current, fb) =>
      refineVariant(current as VariantLine[], {
        trap: fb.trap,
        forcedOff: fb.mismatches.filter((m) => m.requested === "y" && m.final !== "y").map((m) => m.symbol),
      }),
  });
  return { ...r, lines: r.lines as VariantLine[] };
}

function batchId(b: Baseline, symbols: string[]): string {
  return `${[...symbols].sort().join("+").slice(0, 60)}-${cacheKey({ base: b.key, criu: b.criu, symbols }).slice(0, 8)}`;
}

/** Where a batch's outcome is kept: one file per batch under the cache. */
const outcomeFile = (config: PipelineConfig, id: string) =>
  join(config.cache_dir, "prove", "outcomes", `${id}.json`);

/** The variant's request for the symbols that can be turned off, configured until stable. */
async function settleVariant(b: Baseline, tree: KconfigTree, symbols: string[], file: string) {
  const cannot: { symbol: string; why: string }[] = [];
  let runnable = symbols;
  // A symbol that stays on is dropped and the rest configured again (a batch is never lost to one).
  for (;;) {
    const first = variantLines(runnable, tree, b.kernel.config);
    cannot.push(...first.cannot);
    runnable = runnable.filter((s) => !first.cannot.some((c) => c.symbol === s));
    if (!runnable.length) return { runnable, cannot, lines: [], final: b.kernel.config };
    const title = `explain --prove: the default kernel without ${runnable.join(", ")}`;
    const { lines, final } = await configureProofVariant(b, file, first.lines, title);
    const stillOn = runnable.filter((s) => ["y", "m"].includes(final.get(`CONFIG_${s}`) ?? "n"));
    if (!stillOn.length) return { runnable, cannot, lines, final };
    for (const s of stillOn)
      cannot.push({
        symbol: s,
        why: `still ${final.get(`CONFIG_${s}`)} in the final .config after the request`,
      });
    runnable = runnable.filter((s) => !stillOn.includes(s));
  }
}

/**
 * The verdict of a variant run, from the current map: the prediction is made again each time,
 * so an outcome kept from before a correction of the map is judged by the corrected map.
 */
function judge(
  b: Baseline,
  symbols: string[],
  variantConfig: Map<string, string>,
  variantTests: Map<string, string>,
) {
  const map = repoData().kernelRequirements;
  const cands = symbols.map((symbol): Candidate => ({
    symbol,
    predicted: predictedFailures(map, b.kernel, without(b.kernel, [symbol]), b.criu),
  }));
  const variantFacts = { config: variantConfig, version: b.kernel.version };
  return judgeBatch(
    cands,
    mapTests(map, b.criu, b.kernel),
    b.tests,
    variantTests,
    predictedFailures(map, b.kernel, variantFacts, b.criu),
  );
}

/** A kept outcome judged again from its runs on disk (the variant's .config and results). */
function rejudge(b: Baseline, kept: BatchOutcome): BatchOutcome {
  if (!kept.run || !kept.kernel.variant_key) return kept;
  const cache = b.config.cache_dir;
  const config = loadDotConfig(join(cache, "kernel", kept.kernel.variant_key, "config"));
  const results = JSON.parse(readFileSync(join(cache, kept.run.dir, "results.json"), "utf8")) as {
    tests: { name: string; status: string }[];
  };
  const ran = kept.symbols.filter((s) => !kept.cannot.some((c) => c.symbol === s));
  const tests = new Map(results.tests.map((t) => [t.name, t.status]));
  return { ...kept, verdict: judge(b, ran, config, tests) };
}

/** A kept outcome, when it is complete: its variant ran, or none of its symbols could be turned off. */
function readOutcome(file: string): BatchOutcome | undefined {
  const o = JSON.parse(readFileSync(file, "utf8")) as BatchOutcome;
  return o.run || o.symbols.every((s) => o.cannot.some((c) => c.symbol === s)) ? o : undefined;
}

/** One batch: its variant configured, built, booted and judged. */
async function proveBatch(
  b: Baseline,
  tree: KconfigTree,
  batchOf: Candidate[],
  o: ProveOptions,
): Promise<BatchOutcome> {
  const symbols = batchOf.map((c) => c.symbol);
  const id = batchId(b, symbols);
  const file = join(b.config.cache_dir, "prove", "variants", `${id}.conf`);
  await mkdir(join(b.config.cache_dir, "prove", "variants"), { recursive: true });
  const { runnable, cannot, lines, final } = await settleVariant(b, tree, symbols, file);
  const common = {
    id,
    symbols,
    criu: b.criu.version,
    date: new Date().toISOString().slice(0, 10),
    request: lines,
    config_diff: configDiff(b.kernel.config, final),
    cannot,
  };
  const kernelOf = (variantKey: string | null) => ({
    version: b.kernel.version!,
    default_key: b.key,
    variant_key: variantKey,
  });
  if (!runnable.length)
    return {
      ...common,
      kernel: kernelOf(null),
      verdict: { symbols: [], unpredicted: [], otherChanges: [] },
      run: null,
    };
  o.log(`building and booting the variant without ${runnable.join(", ")}`);
  const given = { criu: b.outcomes.criu, agent: b.outcomes.agent, image: b.outcomes.image };
  const out = await drive(b.config, ["boot"], {
    given,
    kernel: variantKernel(file),
  });
  const run = out.boot!.value;
  return {
    ...common,
    kernel: kernelOf(out.kernel!.value.ref!.key),
    verdict: judge(b, runnable, out.kernel!.value.config!, statuses(out)),
    run: { key: run.results.run_key, dir: relative(b.config.cache_dir, run.dir), status: run.results.status },
  };
}

/** Prove: baseline, candidates, batches, each batch unless its outcome is kept; returns them all. */
/**
 * The outcomes the cache keeps for this default kernel and CRIU, complete ones only, that cover
 * one of the symbols asked for. Found by symbol, not by batch: a symbol proved once is not
 * built again when an edit of the map regroups the batches.
 */
function keptOutcomes(b: Baseline, symbols: string[]): BatchOutcome[] {
  const dir = join(b.config.cache_dir, "prove", "outcomes");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => readOutcome(join(dir, f)))
    .filter((k): k is BatchOutcome => Boolean(k))
    .filter((k) => k.kernel.default_key === b.key && k.criu === b.criu.version)
    .filter((k) => k.symbols.some((s) => symbols.includes(s)));
}

/** Prove: baseline, candidates, the outcomes kept, then each new batch; returns them all. */
export async function prove(config: PipelineConfig, o: ProveOptions): Promise<ProveReport> {
  const b = await baseline(config);
  const map = repoData().kernelRequirements;
  const { prove: cands, skipped } = candidates(map, b.kernel, b.criu, o.symbols);
  const run = b.outcomes.boot!.value;
  const head = {
    criu: b.criu.version,
    kernel: { version: b.kernel.version!, key: b.key },
    baseline: { key: run.results.run_key, dir: relative(config.cache_dir, run.dir) },
  };
  const outcomes: BatchOutcome[] = [];
  const kept = o.force
    ? []
    : keptOutcomes(
        b,
        cands.map((c) => c.symbol),
      );
  for (const k of kept) {
    o.log(`${k.symbols.join(", ")} (${k.id}): kept from an earlier run`);
    outcomes.push(rejudge(b, k));
    await o.onBatch?.(outcomes.at(-1)!, head);
  }
  const done = new Set(kept.flatMap((k) => k.symbols));
  const batches = batch(
    cands.filter((c) => !done.has(c.symbol)),
    o.maxBatch,
  );
  let tree: KconfigTree | undefined;
  for (const [i, batchOf] of batches.entries()) {
    const names = batchOf.map((c) => c.symbol).join(", ");
    if (o.keptOnly) {
      o.log(`batch ${i + 1}/${batches.length} (${names}): not run yet`);
      continue;
    }
    o.log(`batch ${i + 1}/${batches.length}: ${names}`);
    tree ??= await kconfigTree(b);
    const outcome = await proveBatch(b, tree, batchOf, o);
    await mkdir(join(config.cache_dir, "prove", "outcomes"), { recursive: true });
    await writeAtomic(outcomeFile(config, outcome.id), `${JSON.stringify(outcome, null, 2)}\n`);
    outcomes.push(outcome);
    await o.onBatch?.(outcome, head);
  }
  return { ...head, skipped, batches: outcomes };
}

/** The kernel's Kconfig, from a check-config of the default kernel (which parses it). */
async function kconfigTree(b: Baseline): Promise<KconfigTree> {
  const out = await drive(b.config, ["kernel"], { kernel: { checkConfigOnly: true } });
  const tree = out.kernel!.value.stage.kconfig;
  if (!tree) throw new Error("a check-config run gave no Kconfig tree");
  return tree;
}
