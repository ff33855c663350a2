/**
 * `explain --prove [SYMBOL...]`: the command around prove.ts. Without symbols it proves every
 * symbol of the map the default kernel has; --dry-run shows the variants, builds and boots it
 * will cost (a configure, no build); --record writes the outcomes into the repository.
 */
import type { CommandContext } from "../commands.js";
import { repoData } from "../data/repo-data.js";
import { resolveKernelVersion } from "../data/kernel-catalog.js";
import { allSymbols } from "../data/kernel-requirements.js";
import { criuFacts } from "../data/requirement-check.js";
import { UserError } from "../lib/errors.js";
import { didYouMean } from "../lib/suggest.js";
import type { PipelineConfig } from "../lib/config.js";
import { batch, candidates } from "./prove-plan.js";
import type { ProveReport } from "./prove.js";
import type { SymbolProof } from "./proof-record.js";

/** SYMBOL or CONFIG_SYMBOL, each one the map names. */
export function proofSymbols(args: string[]): string[] | undefined {
  if (!args.length) return undefined;
  const known = allSymbols(repoData().kernelRequirements);
  return args.map((a) => {
    const s = a.replace(/^CONFIG_/, "");
    if (!known.includes(s))
      throw new UserError(
        `explain --prove: the kernel requirements map names no CONFIG_${s}${didYouMean(s, known)}`,
        "name a Kconfig symbol of criu-builds/kernel-requirements.yaml (`cr-guest explain SYMBOL` tells)",
      );
    return s;
  });
}

async function dryRun(ctx: CommandContext, config: PipelineConfig, symbols?: string[]): Promise<number> {
  const { drive } = await import("../driver.js");
  const { resolveAndPlanCriu, servingCandidate } = await import("../criu/stage.js");
  const plan = resolveAndPlanCriu(config, { strict: true });
  const serving = servingCandidate(plan);
  const criu = criuFacts({
    version: plan.entry.version,
    link: serving?.provider === "debian-binary" ? "debian-binary" : config.criu.link,
    patches: plan.patches,
  });
  // A configure of the default kernel (seconds), for its .config: the prediction reads it.
  const out = await drive(config, ["kernel"], { kernel: { checkConfigOnly: true } });
  const version = resolveKernelVersion(config.kernel.version, repoData().kernels).version;
  const base = { config: out.kernel!.value.stage.finalConfig!, version };
  const { prove, skipped } = candidates(repoData().kernelRequirements, base, criu, symbols);
  const batches = batch(prove);
  ctx.say(
    `explain --prove with CRIU ${criu.version} on linux ${base.version} (fragment set ${config.kernel.fragment_set}):`,
  );
  ctx.say(`  the default kernel and its run (checks and features only): built or taken from the cache`);
  batches.forEach((b, i) =>
    ctx.say(
      `  variant ${i + 1}: without ${b.map((c) => `${c.symbol} (${c.predicted.length} predicted to fail)`).join(", ")}`,
    ),
  );
  for (const s of skipped) ctx.say(`  not proved: ${s.symbol}: ${s.why}`);
  ctx.say(
    `worst case: ${batches.length} kernel builds (incremental from the default kernel) and ${batches.length + 1} boots; variants whose outcome the cache keeps are not run again`,
  );
  ctx.emit({
    criu: criu.version,
    kernel: base.version,
    variants: batches.map((b) => b.map((c) => ({ symbol: c.symbol, predicted: c.predicted }))),
    skipped,
    builds: batches.length,
    boots: batches.length + 1,
  });
  return 0;
}

function formatOutcome(p: SymbolProof): string {
  const what = p.status === "proven" ? `failed as predicted: ${p.failed.join(", ")}` : (p.why ?? "");
  return `  ${p.symbol}: ${p.status.toUpperCase()}${what ? ` (${what})` : ""}`;
}

export async function proveCommand(ctx: CommandContext, config: PipelineConfig): Promise<number> {
  const v = ctx.values;
  const symbols = proofSymbols(ctx.positionals);
  if (v["dry-run"]) return dryRun(ctx, config, symbols);
  const { prove } = await import("./prove.js");
  const { symbolProofs, recordProofs } = await import("./proof-record.js");
  const map = repoData().kernelRequirements;
  const report: ProveReport = await prove(config, {
    symbols,
    force: v.force,
    keptOnly: v.kept,
    maxBatch: v["max-batch"],
    log: (l) => console.error(l),
    // Each batch recorded as it ends: a long run stopped half-way keeps what it proved.
    onBatch: v.record
      ? async (b, head) => void (await recordProofs({ ...head, batches: [b] }, map))
      : undefined,
  });
  const outcomes = symbolProofs(report);
  ctx.say(
    `explain --prove: CRIU ${report.criu} on linux ${report.kernel.version} (default kernel ${report.kernel.key})`,
  );
  for (const o of outcomes) ctx.say(formatOutcome(o));
  for (const s of report.skipped) ctx.say(`  not proved: ${s.symbol}: ${s.why}`);
  if (v.record)
    ctx.say(
      "recorded in criu-builds/kernel-proofs.yaml, criu-builds/kernel-requirements.yaml, docs/kernel-proofs.md",
    );
  ctx.emit({ ...report, outcomes });
  return outcomes.every((o) => o.status === "proven") ? 0 : 1;
}
