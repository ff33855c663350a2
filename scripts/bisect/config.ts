/**
 * `cr-guest bisect config --good A --bad B --test ID`: the kernel options whose change breaks a
 * test. A and B are each a fragment set, fragment files, a Kata fragment tree or a .config,
 * joined with '+' (`--bad minimal+expert.conf`). Each step is a variant of the good end built by
 * the shared variant builder (variant/kernel-variant.ts, as `explain --prove` builds), with the
 * CRIU and image of the run, booted for the one test.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { CommandContext } from "../commands.js";
import { drive } from "../driver.js";
import { repoData } from "../data/repo-data.js";
import {
  loadFragmentFile,
  mergeFragments,
  parseDotConfig,
  type Fragment,
  type FragmentEntry,
} from "../data/fragments.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { cacheKey, sha256 } from "../lib/hash.js";
import { didYouMean } from "../lib/suggest.js";
import { configureVariant, variantKernel, type VariantLine } from "../variant/kernel-variant.js";
import { resolveAndPlanCriu } from "../criu/stage.js";
import { selectTest } from "../boot/test-selection.js";
import {
  candidateLines,
  candidateOf,
  differences,
  dropForced,
  forcedNote,
  orderChanges,
  setBy,
  type SymbolChange,
} from "./config-plan.js";
import { worstCase, type Candidate } from "./plan.js";
import { bisectDir } from "./state.js";
import { runBisect, type BisectReport, type StepPlan } from "./run.js";
import { scenariosOf } from "./step.js";
import { writeAtomic } from "../lib/fs-atomic.js";

/** One end of a config bisect: the config and fragments it builds with, and its .config lines. */
export interface ConfigEnd {
  spec: string;
  config: PipelineConfig;
  fragments: string[];
  /** The lines of a .config given as (part of) the end, requested as a variant. */
  dotLines: VariantLine[];
}

const isDotConfig = (file: string) =>
  /^# Automatically generated file; DO NOT EDIT\./m.test(readFileSync(file, "utf8").slice(0, 400));

/** SET, FILE, DIR (a Kata fragment tree) or a .config, joined with '+'. */
export function parseEnd(flag: string, spec: string, config: PipelineConfig): ConfigEnd {
  const sets = Object.keys(config.fragment_sets);
  let set: string | undefined;
  let kata: string | undefined;
  const fragments: string[] = [];
  const dotLines: VariantLine[] = [];
  for (const part of spec.split("+")) {
    if (sets.includes(part)) {
      if (set || kata)
        throw new UserError(
          `--${flag} ${spec}: two bases (${set ?? kata} and ${part})`,
          "give one fragment set or Kata tree per end, then fragment files",
        );
      set = part;
    } else if (existsSync(part) && statSync(part).isDirectory()) {
      if (set || kata)
        throw new UserError(
          `--${flag} ${spec}: two bases (${set ?? kata} and ${part})`,
          "give one fragment set or Kata tree per end, then fragment files",
        );
      kata = resolve(part);
    } else if (existsSync(part)) {
      if (isDotConfig(part))
        for (const [k, value] of parseDotConfig(readFileSync(part, "utf8")))
          dotLines.push({ symbol: k.replace(/^CONFIG_/, ""), value, why: `the .config ${part}` });
      else fragments.push(resolve(part));
    } else
      throw new UserError(
        `--${flag} ${spec}: '${part}' is no fragment set, file or directory${didYouMean(part, sets)}`,
        `name a fragment set (${sets.join(", ")}), a fragment or .config file, or a Kata fragment tree; join parts with '+'`,
      );
  }
  return {
    spec,
    config: {
      ...config,
      kernel: {
        ...config.kernel,
        fragment_set: set ?? config.kernel.fragment_set,
        kata_fragments: kata ?? (set ? "" : config.kernel.kata_fragments),
      },
    },
    fragments,
    dotLines,
  };
}

/** An end as configured: its final .config, the EXPERT trap, and the fragment lines it asked for. */
interface ConfiguredEnd extends ConfigEnd {
  final: Map<string, string>;
  trap: string[];
  requested: Map<string, FragmentEntry>;
}

async function configureEnd(end: ConfigEnd): Promise<ConfiguredEnd> {
  const own = end.config.kernel.kata_fragments
    ? []
    : (end.config.fragment_sets[end.config.kernel.fragment_set] ?? [])
        .map((n) => repoData().fragments.get(n))
        .filter((f): f is Fragment => Boolean(f));
  const requested = mergeFragments([...own, ...end.fragments.map(loadFragmentFile)]).values;
  if (end.dotLines.length && !end.fragments.length && !own.length)
    return {
      ...end,
      final: new Map(end.dotLines.map((l) => [`CONFIG_${l.symbol}`, l.value])),
      trap: [],
      requested,
    };
  const out = await drive(end.config, ["kernel"], {
    kernel: { extraFragments: end.fragments, checkConfigOnly: true },
  });
  const stage = out.kernel!.value.stage;
  const final = new Map(stage.finalConfig!);
  for (const l of end.dotLines) final.set(`CONFIG_${l.symbol}`, l.value);
  return {
    ...end,
    final,
    trap: (stage.expertTrap ?? []).map((t) => t.symbol.replace(/^CONFIG_/, "")),
    requested,
  };
}

/** The variant of candidate `c` in this round: the good end with changes up to it applied. */
async function roundStep(
  good: ConfiguredEnd,
  left: SymbolChange[],
  held: SymbolChange[],
  round: number,
  variants: string,
  c: Candidate,
): Promise<StepPlan> {
  const upto = c.id === "good" ? -1 : left.findIndex((x) => x.symbol === c.id);
  // The good end as given is a kernel the cache likely has: no variant of it.
  if (upto < 0 && !good.dotLines.length && !held.length)
    return { config: good.config, kernel: { extraFragments: good.fragments } };
  const want = candidateLines(left, upto, held);
  const lines = [...good.dotLines.filter((d) => !want.some((w) => w.symbol === d.symbol)), ...want];
  const file = join(variants, `${upto < 0 ? "good" : String(upto).padStart(3, "0")}.conf`);
  const settled = await configureVariant(good.config, {
    file,
    title: `bisect config round ${round}: ${upto < 0 ? "the good end" : `the good end with ${upto + 1} change(s) of the bad end's, up to ${c.id}`}`,
    fragments: good.fragments,
    lines,
    refine: (current, fb) => dropForced(current, fb.mismatches),
    max: 6,
  });
  return {
    config: good.config,
    kernel: variantKernel(file, good.fragments),
    note: forcedNote(lines, settled.lines, settled.final) || undefined,
  };
}

function dryRunConfig(
  ctx: CommandContext,
  id: string,
  test: string,
  criu: string,
  changes: SymbolChange[],
  bad: ConfiguredEnd,
): number {
  const w = worstCase(changes.length);
  for (const c of changes)
    ctx.say(`  ${candidateOf(c).title}  (${setBy(c.symbol, bad.requested, bad.trap)})`);
  ctx.say(
    `worst case for the first symbol: ${w.builds} kernel builds (incremental from the good end's) and ${w.boots} boots; each further symbol found costs another bisect over what is left`,
  );
  ctx.emit({ id, test, criu, changes, worst_case_first: w });
  return 0;
}

export async function bisectConfigCommand(ctx: CommandContext, config: PipelineConfig): Promise<number> {
  const v = ctx.values;
  const test = v.test!;
  const plan = resolveAndPlanCriu(config, { strict: true });
  // An unknown test is the caller's mistake: exit 2 before any build.
  selectTest(
    test,
    plan.entry.version,
    repoData().kernelRequirements,
    scenariosOf(config, plan.entry.version),
  );
  const good = await configureEnd(parseEnd("good", v.good!, config));
  const bad = await configureEnd(parseEnd("bad", v.bad!, config));
  const changes = orderChanges(differences(good.final, bad.final));
  if (!changes.length)
    throw new UserError(
      `--good ${good.spec} and --bad ${bad.spec} configure the same .config`,
      "name two ends that differ (bisect config narrows their difference)",
    );
  const base = cacheKey({
    kind: "config",
    good: sha256(JSON.stringify([...good.final].sort())),
    bad: sha256(JSON.stringify([...bad.final].sort())),
    test,
    criu: plan.entry.version,
    config: { ...config, cache_dir: "" },
  });
  ctx.say(
    `bisect config: ${changes.length} symbol(s) differ between --good ${good.spec} and --bad ${bad.spec} (CRIU ${plan.entry.version}, test ${test})`,
  );
  if (v["dry-run"]) return dryRunConfig(ctx, base, test, plan.entry.version, changes, bad);
  const held: SymbolChange[] = [];
  const found: NonNullable<BisectReport["found"]> = [];
  const rounds: BisectReport[] = [];
  for (let round = 1; ; round++) {
    const left = changes.filter((c) => !held.some((h) => h.symbol === c.symbol));
    if (!left.length) break;
    const id = `${base}-r${round}`;
    const variants = join(bisectDir(config.cache_dir, id), "variants");
    const step = (c: Candidate) => roundStep(good, left, held, round, variants, c);
    // One JSON document for the whole bisect (the summary): a round's report stays on disk.
    const outcome = await runBisect({ ...ctx, emit: () => undefined }, config, {
      id,
      kind: "config",
      test,
      source: `round ${round}: --good ${good.spec} --bad ${bad.spec}${held.length ? `, held at good: ${held.map((h) => h.symbol).join(", ")}` : ""}`,
      good: { ref: good.spec, id: "good" },
      bad: { ref: bad.spec, id: left.at(-1)!.symbol },
      range: {
        good: { id: "good", title: `the good end (${good.spec})` },
        candidates: left.map(candidateOf),
        steps: [],
      },
      describe: (c) => c.title,
      step,
      finish: () => ({ found: [...found] }),
    });
    if (outcome.report) rounds.push(outcome.report);
    const a = outcome.answer;
    if (!a) return outcome.code;
    if (a.kind === "found" && a.confirmed) {
      const c = left.find((x) => x.symbol === a.culprit.id)!;
      found.push({ ...c, set_by: setBy(c.symbol, bad.requested, bad.trap) });
      held.push(c);
      ctx.say(
        `found CONFIG_${c.symbol} (${c.good} -> ${c.bad}); does the bad end still fail with it held at ${c.good}?`,
      );
      continue;
    }
    // A later round whose bad end passes: every symbol that breaks the test is found.
    const complete = round > 1 && a.kind === "ends" && /the bad end .* passes/.test(a.why);
    return finishConfig(ctx, config, base, rounds, found, complete);
  }
  return finishConfig(ctx, config, base, rounds, found, true);
}

async function finishConfig(
  ctx: CommandContext,
  config: PipelineConfig,
  base: string,
  rounds: BisectReport[],
  found: NonNullable<BisectReport["found"]>,
  complete: boolean,
): Promise<number> {
  const dir = bisectDir(config.cache_dir, base);
  const summary = {
    id: base,
    complete,
    found,
    rounds: rounds.map((r) => ({ id: r.id, answer: r.answer, steps: r.steps.length, seconds: r.seconds })),
  };
  await writeAtomic(join(dir, "bisect-config.json"), `${JSON.stringify(summary, null, 2)}\n`);
  ctx.say("");
  ctx.say(
    complete
      ? `bisect config: ${found.length} symbol(s) break the test, and with them held at the good end's values the bad end passes:`
      : `bisect config: not complete (${rounds.at(-1)?.answer.kind ?? "no answer"}); found so far:`,
  );
  for (const f of found) ctx.say(`  CONFIG_${f.symbol}: ${f.good} -> ${f.bad}, set by ${f.set_by}`);
  ctx.say(
    `summary: ${join(dir, "bisect-config.json")}; each round's bisect.md under ${join(config.cache_dir, "bisect")}/${base}-r*`,
  );
  ctx.emit(summary);
  return complete && found.length ? 0 : 1;
}
