/**
 * Runs a bisect (CRIU commits or kernel configs): step after step as plan.ts says, each
 * recorded in the bisect's state before the next starts, until the answer; then bisect.json
 * and bisect.md beside the state. An infrastructure error stops it with its state kept.
 */
import { join } from "node:path";
import type { CommandContext } from "../commands.js";
import type { DriveOptions } from "../driver.js";
import type { PipelineConfig } from "../lib/config.js";
import { writeAtomic } from "../lib/fs-atomic.js";
import { BISECT_SCHEMA_VERSION, BisectReportSchema } from "../lib/output-schemas.js";
import type { z } from "zod";
import {
  nextStep,
  progress,
  type BisectAnswer,
  type BisectRange,
  type BisectStep,
  type Candidate,
} from "./plan.js";
import { bisectDir, loadState, lockBisect, saveState } from "./state.js";
import { runTestStep } from "./step.js";

export type BisectReport = z.infer<typeof BisectReportSchema>;

/** The pipeline of one candidate: its config, kernel options, and a note for its record. */
export interface StepPlan {
  config: PipelineConfig;
  kernel?: DriveOptions["kernel"];
  note?: string;
}

/** What is bisected, as the generic runner needs it. */
export interface BisectSubject {
  id: string;
  kind: "criu" | "config";
  test: string;
  source: string;
  good: { ref: string; id: string };
  bad: { ref: string; id: string };
  range: BisectRange;
  describe: (c: Candidate) => string;
  /** The pipeline of one candidate. */
  step: (c: Candidate) => StepPlan | Promise<StepPlan>;
  /** More for the report once the answer is known (a config bisect's symbols). */
  finish?: (
    answer: BisectAnswer,
    range: BisectRange,
  ) => Promise<Pick<BisectReport, "found">> | Pick<BisectReport, "found">;
}

interface SavedState {
  id: string;
  steps: BisectStep[];
  created: string;
}

function answerLines(s: BisectSubject, a: BisectAnswer): string[] {
  switch (a.kind) {
    case "found":
      return [
        `first bad: ${s.describe(a.culprit)}`,
        `last good: ${s.describe(a.parent)}`,
        `${a.confirmed ? "confirmed" : "NOT confirmed"}: ${a.why}`,
      ];
    case "ambiguous":
      return [`the first bad is one of: ${a.among.map((c) => s.describe(c)).join("; ")}`, a.why];
    case "ends":
      return [`stopped: ${a.why}`];
  }
}

export function renderMarkdown(r: BisectReport, describe: (c: Candidate) => string): string {
  const byId = new Map(r.candidates.map((c) => [c.id, c]));
  const name = (id: string) => (byId.has(id) ? describe(byId.get(id)!) : id.slice(0, 12));
  const a = r.answer as BisectAnswer;
  return [
    `# bisect ${r.kind}: ${r.test}`,
    "",
    `- good: \`${r.good.ref}\` (${r.good.id.slice(0, 12)}), bad: \`${r.bad.ref}\` (${r.bad.id.slice(0, 12)})`,
    `- source: ${r.source}`,
    `- ${r.candidates.length} candidates, ${r.steps.length} steps, ${Math.round(r.seconds)} s`,
    "",
    "## Answer",
    "",
    ...answerLines({ describe } as BisectSubject, a).map((l) => `- ${l}`),
    ...(r.found?.length
      ? [
          "",
          "| symbol | good | bad | set by |",
          "|---|---|---|---|",
          ...r.found.map((f) => `| \`${f.symbol}\` | ${f.good} | ${f.bad} | ${f.set_by} |`),
        ]
      : []),
    "",
    "## Steps",
    "",
    "| # | role | candidate | verdict | status | why | evidence | s |",
    "|---|---|---|---|---|---|---|---|",
    ...r.steps.map(
      (st, i) =>
        `| ${i + 1} | ${st.role} | ${name(st.id).replace(/\|/g, "\\|")} | ${st.verdict} | ${st.status} | ${st.reason.replace(/\|/g, "\\|").slice(0, 200)} | ${st.evidence ?? ""} | ${st.seconds} |`,
    ),
    "",
  ].join("\n");
}

export interface BisectOutcome {
  /** The command's exit code: 0 a confirmed culprit, 1 no answer, 4 stopped by infrastructure. */
  code: number;
  answer?: BisectAnswer;
  report?: BisectReport;
}

export async function runBisect(
  ctx: CommandContext,
  config: PipelineConfig,
  s: BisectSubject,
): Promise<BisectOutcome> {
  const dir = bisectDir(config.cache_dir, s.id);
  const release = await lockBisect(dir, s.id);
  const t0 = Date.now();
  try {
    const saved = loadState<SavedState>(dir);
    const range: BisectRange = { ...s.range, steps: saved?.steps ?? [] };
    const created = saved?.created ?? new Date().toISOString();
    ctx.say(
      `bisect ${s.kind} ${s.id}: ${saved ? `resuming after ${saved.steps.length} step(s)` : "new"} (state ${dir})`,
    );
    for (;;) {
      const next = nextStep(range);
      if (next.action === "done") return await finish(ctx, s, dir, range, next.answer, created, t0);
      ctx.say(`${progress(range)}: ${s.describe(next.candidate)} [${next.role}]`);
      const { config: stepConfig, kernel, note } = await s.step(next.candidate);
      const { step } = await runTestStep(stepConfig, s.test, {
        force: true,
        rerun: next.role.startsWith("confirm"),
        kernel,
      });
      if (step.verdict === "abort") {
        ctx.say(`stopped: ${step.reason}`);
        ctx.say(`the state is kept (${range.steps.length} step(s)): run the same command again to resume`);
        return { code: 4 };
      }
      range.steps.push({
        id: next.candidate.id,
        role: next.role,
        verdict: step.verdict,
        status: step.status,
        reason: note ? `${step.reason}; ${note}` : step.reason,
        evidence: step.run?.results ?? null,
        seconds: step.seconds,
        at: new Date().toISOString(),
      });
      await saveState(dir, { id: s.id, steps: range.steps, created } satisfies SavedState);
      ctx.say(
        `  -> ${step.verdict} (${step.status}: ${step.reason})${step.run ? ` evidence ${step.run.results}` : ""}`,
      );
    }
  } finally {
    release();
  }
}

async function finish(
  ctx: CommandContext,
  s: BisectSubject,
  dir: string,
  range: BisectRange,
  answer: BisectAnswer,
  created: string,
  t0: number,
): Promise<BisectOutcome> {
  const more = s.finish ? await s.finish(answer, range) : {};
  const report: BisectReport = BisectReportSchema.parse({
    schema: BISECT_SCHEMA_VERSION,
    id: s.id,
    kind: s.kind,
    test: s.test,
    source: s.source,
    good: s.good,
    bad: s.bad,
    candidates: [range.good, ...range.candidates],
    steps: range.steps,
    answer,
    ...more,
    seconds: range.steps.reduce((n, st) => n + st.seconds, 0),
    created,
  });
  const json = join(dir, "bisect.json");
  const md = join(dir, "bisect.md");
  await writeAtomic(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeAtomic(md, renderMarkdown(report, s.describe));
  for (const l of answerLines(s, answer)) ctx.say(l);
  for (const f of report.found ?? []) ctx.say(`  ${f.symbol}: ${f.good} -> ${f.bad} (${f.set_by})`);
  ctx.say(`report: ${md} (also ${json}); this run ${Math.round((Date.now() - t0) / 1000)} s`);
  ctx.emit({ ...report, files: { json, markdown: md } });
  return { code: answer.kind === "found" && answer.confirmed ? 0 : 1, answer, report };
}
