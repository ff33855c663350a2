/**
 * What each command does, given parsed flags. The flags, the parsing and the printing of
 * errors and help live in cli.ts and cli-flags.ts; here text goes through `ctx.say` and
 * machine output through `ctx.emit` (one JSON document on stdout with --json).
 */
import { existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { FilterValues, FlagValues } from "./cli-flags.js";
import { UserError } from "./lib/errors.js";
import { loadConfig, type PipelineConfig } from "./lib/config.js";
import type { DryRun } from "./plan-only.js";

export interface CommandContext {
  values: FlagValues;
  /** The matrix filters of a command that takes them (matrix, ci). */
  filters: FilterValues;
  positionals: string[];
  /** The config overrides the flags stand for (--set first). */
  sets: string[];
  json: boolean;
  /** Human-readable lines: stdout, or stderr when --json keeps stdout for the document. */
  say: (line: string) => void;
  /** The one JSON document of a --json run. */
  emit: (doc: unknown) => void;
}

/** The config file and overrides of this run, as the matrix and migration code take them. */
function baseOf(ctx: CommandContext): { configFile?: string; set: string[] } {
  return { configFile: ctx.values.config, set: ctx.sets };
}

export function configOf(ctx: CommandContext, extraSets: string[] = []): PipelineConfig {
  return loadConfig({ configFile: ctx.values.config, set: [...ctx.sets, ...extraSets] });
}

/** --dry-run of a command that builds or boots: the plan as text, or one JSON document. */
async function printDryRun(ctx: CommandContext, plan: DryRun): Promise<number> {
  const { formatDryRun } = await import("./plan-only.js");
  ctx.say(formatDryRun(plan));
  ctx.emit(plan);
  return 0;
}

/** The matrix of --matrix (default: the repository's matrix.yaml), planned with this run's config. */
async function matrixPlanOf(ctx: CommandContext) {
  const { loadMatrixSpec, planMatrix } = await import("./matrix/spec.js");
  const { REPO_ROOT } = await import("./lib/paths.js");
  return planMatrix(
    loadMatrixSpec(resolve(ctx.values.matrix ?? join(REPO_ROOT, "matrix.yaml"))),
    baseOf(ctx),
  );
}

/**
 * Cell results from several inputs merged (of duplicates the newest is kept), the report
 * written to `outDir`; `none` is the error when the inputs hold no cell.
 */
async function mergeAndReport(inputs: string[], outDir: string, name: string | undefined, none: UserError) {
  const { collectCells } = await import("./matrix/cell.js");
  const { mergeCells, buildReport } = await import("./matrix/report.js");
  const { writeReports } = await import("./matrix/command.js");
  const { cells, duplicates } = mergeCells(inputs.map((i) => collectCells(i)));
  if (cells.length === 0) throw none;
  const report = buildReport(name ?? cells[0].matrix, cells, { duplicates });
  return { cells, duplicates, report, files: await writeReports(outDir, report) };
}

async function readKernelConfig(file: string): Promise<Map<string, string>> {
  return (await import("./data/fragments.js")).loadDotConfig(file);
}

/** A stage's own notes (warnings, provider notes) and the doctor's predictions, on stderr. */
async function printNotes(o: import("./driver.js").StageOutcome): Promise<void> {
  for (const n of o.notes) console.error(n);
  if (o.stage === "criu") {
    const { formatFindings } = await import("./data/doctor.js");
    const { findings } = (o as import("./driver.js").StageOutcome<"criu">).value;
    if (findings.length) console.error(formatFindings(findings, "compatibility"));
  }
}

/** Runs the driver with each stage's notes printed as it finishes. */
async function driveStages(
  config: PipelineConfig,
  targets: import("./driver.js").StageName[],
  o: import("./driver.js").DriveOptions = {},
) {
  const { drive } = await import("./driver.js");
  const printing: Promise<void>[] = [];
  const out = await drive(config, targets, { ...o, onOutcome: (x) => void printing.push(printNotes(x)) });
  await Promise.all(printing);
  return out;
}

export async function kernelCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const config = configOf(ctx);
  const { verifyConfigFile } = await import("./kernel/stage.js");
  if (v["verify-config"]) {
    if (v["dry-run"])
      throw new UserError("--verify-config builds nothing, --dry-run plans a build", "drop one of them");
    const { report, text } = verifyConfigFile(config, v["verify-config"]);
    ctx.say(text);
    ctx.emit({ file: v["verify-config"], passed: report.passed, symbols: symbolTable(report) });
    return report.passed ? 0 : 1;
  }
  const configOut = v["config-out"] ? resolve(v["config-out"]) : undefined;
  if (configOut && !existsSync(dirname(configOut)))
    throw new UserError(
      `--config-out ${v["config-out"]}: the directory ${dirname(configOut)} does not exist`,
      "create it, or give a path in an existing directory",
    );
  // --criu: the doctor judges the final .config for that CRIU (a bad version fails before any work).
  const criuPlan = v.criu
    ? (await import("./criu/stage.js")).resolveAndPlanCriu(config, { strict: false })
    : undefined;
  const kernelOptions = {
    extraFragments: v.fragment ?? [],
    checkConfigOnly: Boolean(v["check-config"]),
    bootCheck: v["boot-check"],
  };
  if (v["dry-run"]) {
    const { planStages } = await import("./plan-only.js");
    const plan = await planStages("kernel", config, ["kernel"], kernelOptions);
    if (criuPlan) plan.notes.push(`the doctor judges the final .config for CRIU ${criuPlan.entry.version}`);
    return printDryRun(ctx, plan);
  }
  const out = await driveStages(config, ["kernel"], {
    kernel: { ...kernelOptions, criuVersion: criuPlan?.entry.version, configOut },
  });
  const kernel = out.kernel!.value;
  const result = kernel.stage;
  for (const n of result.notes) ctx.say(n);
  ctx.say(result.reportText);
  if (configOut) ctx.say(`final .config: ${configOut}`);
  const { findings, verdicts } = kernel.config
    ? await judgeForCriu(
        ctx,
        config,
        criuPlan,
        kernel.config,
        result.metadata?.version ?? config.kernel.version,
      )
    : { findings: [], verdicts: [] };
  const doctorFailed = findings.some((f) => f.severity === "fail");
  if (result.dir) {
    ctx.say(`\nkernel: ${join(result.dir, "vmlinuz")}${result.cached ? " (cached)" : ""}`);
    ctx.say(`config: ${join(result.dir, "config")}`);
    ctx.say(`metadata: ${join(result.dir, "metadata.json")}`);
  }
  const verified = result.report ? result.report.passed : (result.metadata?.verify.passed ?? true);
  const passed = verified && !doctorFailed;
  ctx.emit({
    passed,
    verified,
    version: config.kernel.version,
    ...(result.report
      ? { checked: result.report.checked, symbols: symbolTable(result.report, result.finalConfig) }
      : {}),
    expert_trap: result.expertTrap ?? [],
    verdicts,
    ...(criuPlan ? { criu: criuPlan.entry.version, findings } : {}),
    ...(configOut ? { config_out: configOut } : {}),
    warnings: result.warnings,
    ...(result.metadata ? { metadata: result.metadata, dir: result.dir, cached: result.cached } : {}),
  });
  return passed ? 0 : 1;
}

/**
 * A final .config judged for CRIU: per version what it gives (the planned CRIU's, else every
 * catalog version's), and with a planned CRIU (--criu) the doctor's findings.
 */
async function judgeForCriu(
  ctx: CommandContext,
  config: PipelineConfig,
  criuPlan: import("./criu/stage.js").CriuPlan | undefined,
  kernelConfig: Map<string, string>,
  kernelVersion: string,
) {
  const { configVerdicts } = await import("./criu/config-verdicts.js");
  const { verdictDocument } = await import("./data/requirement-check.js");
  const verdicts = configVerdicts(config, { config: kernelConfig, version: kernelVersion }, criuPlan);
  ctx.say("");
  for (const v of verdicts) ctx.say(verdictDocument(v).line);
  let findings: import("./data/doctor.js").Finding[] = [];
  if (criuPlan) {
    const { doctorFor, servingCandidate } = await import("./criu/stage.js");
    const { formatFindings } = await import("./data/doctor.js");
    findings = doctorFor(config, criuPlan, servingCandidate(criuPlan)?.provider, {
      kernelConfig,
      kernelVersion,
    });
    ctx.say(`\n${formatFindings(findings, `CRIU ${criuPlan.entry.version} on this kernel`)}`);
  }
  return { findings, verdicts: verdicts.map((v) => verdictDocument(v)) };
}

/** Every requested symbol: requested value, final value and why (for --json). */
function symbolTable(report: import("./kernel/verify.js").VerifyReport, final?: Map<string, string>) {
  return [
    ...report.ok.map((symbol) => ({
      symbol,
      status: "ok",
      requested: final?.get(symbol) ?? null,
      final: final?.get(symbol) ?? null,
      reason: null,
    })),
    ...report.mismatches.map((m) => ({
      symbol: m.symbol,
      status: m.whitelisted ? "whitelisted" : m.allowed ? "allowed" : "mismatch",
      requested: m.requested,
      final: m.final,
      reason: [
        ...m.why,
        ...(m.allowed ? [`allowed: ${m.allowed.reason}`] : []),
        ...(m.whitelisted
          ? [`whitelisted by Kata: '${m.whitelisted.pattern}' (${m.whitelisted.file}:${m.whitelisted.line})`]
          : []),
      ].join("; "),
    })),
    ...report.unknown.map((u) => ({
      symbol: u.symbol,
      status: u.whitelisted ? "whitelisted" : "unknown",
      requested: u.from.value,
      final: null,
      reason: `not in this kernel's Kconfig${u.suggestion ? `; did you mean ${u.suggestion}?` : ""}${u.whitelisted ? `; whitelisted by Kata: '${u.whitelisted.pattern}' (${u.whitelisted.file}:${u.whitelisted.line})` : ""}`,
    })),
  ];
}

export async function criuCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const config = configOf(ctx);
  const { resolveAndPlanCriu, describeCriuPlan, doctorFor, servingCandidate } =
    await import("./criu/stage.js");
  const { ArtifactCache } = await import("./lib/cache.js");
  const { formatFindings } = await import("./data/doctor.js");
  const kernelConfig = v["kernel-config"] ? await readKernelConfig(v["kernel-config"]) : undefined;
  if (v["dry-run"]) {
    const cache = new ArtifactCache(config.cache_dir);
    const plan = resolveAndPlanCriu(config, { strict: true });
    const cached = (key: string) => existsSync(join(cache.dir("criu", key), "metadata.json"));
    ctx.say(
      `guest suite: ${plan.guestSuite}; link: ${config.criu.link}; patches: ${plan.patches.map((p) => p.name).join(", ") || "none"}`,
    );
    for (const line of describeCriuPlan(plan, cached)) ctx.say(line);
    const findings = doctorFor(config, plan, servingCandidate(plan)?.provider, { kernelConfig });
    ctx.say(formatFindings(findings, "compatibility"));
    ctx.emit({
      version: plan.entry.version,
      version_from: plan.resolved.versionFrom,
      guest_suite: plan.guestSuite,
      patches: plan.patches.map((p) => p.name),
      serving: servingCandidate(plan)?.provider ?? null,
      providers: plan.candidates.map((c) => ({
        provider: c.provider,
        key: c.key ?? null,
        identity: c.identity ?? null,
        from: c.from ?? null,
        skip: c.skip ?? null,
        cached: c.key ? cached(c.key) : false,
      })),
      findings,
    });
    return 0;
  }
  const out = await driveStages(config, ["criu"], { criu: { kernelConfig, force: Boolean(v.force) } });
  const result = out.criu!.value;
  const how =
    result.metadata.provider === "debian-binary"
      ? "Debian binary package"
      : `${result.metadata.provider}, ${result.metadata.link}`;
  ctx.say(
    `${result.metadata.version_output.split("\n")[0]} (${how}, runs in ${result.metadata.runs_in.join(", ")})`,
  );
  ctx.say(`criu: ${join(result.dir, "criu")}${result.cached ? " (cached)" : ""}`);
  ctx.say(`metadata: ${join(result.dir, "metadata.json")}`);
  ctx.emit({
    dir: result.dir,
    cached: result.cached,
    metadata: result.metadata,
    findings: result.findings,
    notes: result.attempts,
  });
  return 0;
}

export async function doctorCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const config = configOf(ctx);
  const { resolveAndPlanCriu, doctorFor, servingCandidate } = await import("./criu/stage.js");
  const { formatFindings } = await import("./data/doctor.js");
  let kernelConfig: Map<string, string> | undefined;
  let kernelLabel: string;
  let kernelVersion: string | undefined;
  if (v["kernel-config"]) {
    // The kernel-aware predictions need the file's own version, not the configured kernel's.
    const dot = (await import("./data/fragments.js")).readDotConfig(v["kernel-config"]);
    kernelConfig = dot.values;
    kernelVersion = dot.version;
    kernelLabel = `${v["kernel-config"]}${kernelVersion ? ` (linux ${kernelVersion})` : ""}`;
  } else {
    const kconfig = v["debian-kernel"]
      ? configOf(ctx, [
          "kernel.kind=debian-cloud",
          `kernel.debian_cloud_suite=${JSON.stringify(v["debian-kernel"])}`,
        ])
      : config;
    const kernel = (
      await driveStages(kconfig, ["kernel"], { kernel: { checkConfigOnly: !v["debian-kernel"] } })
    ).kernel!.value;
    const k = kernel.stage;
    kernelConfig = kernel.config;
    kernelVersion = k.metadata?.version ?? undefined;
    kernelLabel = v["debian-kernel"]
      ? `Debian ${v["debian-kernel"]} cloud kernel ${k.metadata?.release ?? ""}`
      : `the configured kernel (${config.kernel.version}, ${config.kernel.base})`;
  }
  const plan = resolveAndPlanCriu(config, { strict: true });
  const provider = servingCandidate(plan)?.provider;
  const findings = doctorFor(config, plan, provider, {
    kernelConfig,
    kernelVersion: kernelVersion ?? config.kernel.version,
  });
  const verdict = kernelConfig
    ? await configVerdictOf(config, plan, kernelConfig, kernelVersion ?? config.kernel.version)
    : undefined;
  if (verdict) ctx.say(verdict.line);
  ctx.say(
    formatFindings(
      findings,
      `CRIU ${plan.entry.version} (${provider ?? "?"}, ${config.criu.link}) in ${plan.guestSuite} on ${kernelLabel}`,
    ),
  );
  const failed = findings.some((f) => f.severity === "fail");
  ctx.emit({
    criu: plan.entry.version,
    provider: provider ?? null,
    guest_suite: plan.guestSuite,
    kernel: kernelLabel,
    passed: !failed,
    verdicts: verdict ? [verdict] : [],
    findings,
  });
  return failed ? 1 : 0;
}

/** The doctor's CRIU judged by the map against a .config: the counts, as --json prints them. */
async function configVerdictOf(
  config: PipelineConfig,
  plan: import("./criu/stage.js").CriuPlan,
  kernelConfig: Map<string, string>,
  kernelVersion: string,
) {
  const { configVerdicts } = await import("./criu/config-verdicts.js");
  const { verdictDocument } = await import("./data/requirement-check.js");
  const [v] = configVerdicts(config, { config: kernelConfig, version: kernelVersion }, plan);
  return verdictDocument(v);
}

export async function agentCommand(ctx: CommandContext): Promise<number> {
  const config = configOf(ctx);
  if (!config.agent.binary && !config.agent.kata_src)
    throw new UserError(
      "no agent given",
      "pass --kata-src DIR (a kata-containers tree) or --agent FILE (a prebuilt kata-agent)",
    );
  if (ctx.values["dry-run"] && !ctx.values.check) {
    const { planStages } = await import("./plan-only.js");
    return printDryRun(ctx, await planStages("agent", config, ["agent"]));
  }
  if (ctx.values.check) {
    if (!config.agent.kata_src) throw new UserError("--check reads a source tree", "pass --kata-src DIR");
    const { kataSourceIdentity } = await import("./agent/stage.js");
    const { selectAgentPatch } = await import("./data/agent-patches.js");
    const id = kataSourceIdentity(config.agent.kata_src);
    const patch =
      id.state === "unconditional"
        ? undefined
        : selectAgentPatch(id.version, (await import("./data/repo-data.js")).repoData().agentPatches);
    ctx.say(
      `Kata ${id.version}: setsid() ${id.state === "unconditional" ? "is called for every container process: no patch needed" : `only with a terminal (${id.state}): ${patch?.name} applies`}`,
    );
    ctx.emit({ kata_version: id.version, setsid: id.state, patch: patch?.name ?? null });
    return 0;
  }
  const art = (await driveStages(config, ["agent"])).agent!.value!;
  ctx.say(art.metadata.message);
  ctx.say(`agent: ${art.binary}${art.cached ? " (cached)" : ""}`);
  ctx.emit({ binary: art.binary, cached: art.cached, metadata: art.metadata });
  return 0;
}

export async function imageCommand(ctx: CommandContext): Promise<number> {
  const config = configOf(ctx);
  if (ctx.values["dry-run"]) {
    const { planStages } = await import("./plan-only.js");
    return printDryRun(ctx, await planStages("image", config, ["image"], { criuForce: ctx.values.force }));
  }
  const out = await driveStages(config, ["image"], { criu: { force: Boolean(ctx.values.force) } });
  const result = out.image!.value;
  const m = result.manifest;
  ctx.say(`base: ${m.base}`);
  ctx.say(
    `criu: ${m.criu.version} (${m.criu.provider}, ${m.criu.link}${m.criu.patches.length ? `, ${m.criu.patches.join(", ")}` : ""})`,
  );
  ctx.say(
    `agent: ${m.agent === "no agent" ? "no agent" : `${m.agent.source} ${m.agent.kata_version ?? ""} setsid ${m.agent.setsid}`}`,
  );
  ctx.say(`runner: ${m.runner.files} files`);
  ctx.say(
    `injected and read back: ${result.metadata.injected.length} files, ${result.metadata.guestfish_launches} guestfish launch`,
  );
  ctx.say(`image: ${result.link} -> ${result.image}${result.cached ? " (cached)" : ""}`);
  ctx.say(`metadata: ${join(result.dir, "metadata.json")}`);
  ctx.emit({ image: result.image, link: result.link, cached: result.cached, metadata: result.metadata });
  return 0;
}

export async function smokeCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const config = configOf(ctx);
  const extraFragments = v.fragment ?? [];
  if (v["dry-run"]) {
    const { planStages } = await import("./plan-only.js");
    return printDryRun(
      ctx,
      await planStages("smoke", config, ["boot"], { extraFragments, force: v.force, criuForce: v.force }),
    );
  }
  // Bad CRIU input fails before the kernel stage starts.
  const plan = (await import("./criu/stage.js")).resolveAndPlanCriu(config, { strict: true });
  const { formatRun } = await import("./boot/stage.js");
  const out = await driveStages(config, ["boot"], {
    kernel: { extraFragments },
    criu: { force: Boolean(v.force), plan },
    boot: { force: Boolean(v.force) },
  });
  const kref = out.kernel!.value.ref!;
  const image = out.image!.value;
  const r = out.boot!.value;
  ctx.say(formatRun(r.results));
  // The same report a matrix writes, for this one run.
  const { cellOfSingleRun } = await import("./matrix/stages.js");
  const { buildReport, cellSummary } = await import("./matrix/report.js");
  const { writeReports } = await import("./matrix/command.js");
  const cell = cellOfSingleRun(config, out);
  // The line a reader takes at its word: what decides, apart from what only informs.
  if (cellSummary(cell)) ctx.say(cellSummary(cell));
  const report = await writeReports(
    join(config.cache_dir, "report", config.image.name),
    buildReport(config.image.name, [cell]),
  );
  const paths = {
    kernel: join(kref.dir, "vmlinuz"),
    image: image.image,
    results: join(r.dir, "results.json"),
    console: join(r.dir, r.results.attempts.at(-1)?.console_log ?? ""),
    report: report.md,
  };
  ctx.say(`\nkernel:  ${paths.kernel}`);
  ctx.say(`image:   ${image.link} -> ${image.image}`);
  ctx.say(`results: ${paths.results}${r.cached ? " (cached)" : ""}`);
  ctx.say(`console: ${paths.console}`);
  ctx.say(`report:  ${report.md} (also ${report.html}, ${report.junit})`);
  const { failsUnexpectedly } = await import("./matrix/verdicts.js");
  const code = r.results.status === "ERROR" ? 4 : v.strict && failsUnexpectedly(cell) ? 1 : 0;
  ctx.emit({
    status: r.results.status,
    cell_status: cell.status,
    summary: r.results.summary,
    cached: r.cached,
    paths,
    results: r.results,
  });
  // As in the matrix: `criu check --all` and --feature are reported, never decide.
  return code;
}

/** The pair of `migrate`: each side from its flags, defaulting to the config, then to the other side. */
async function pairOf(ctx: CommandContext, config: PipelineConfig) {
  const v = ctx.values;
  const { sideFromFlags } = await import("./migrate/pair.js");
  const { resolveCriuVersion } = await import("./data/criu-catalog.js");
  const { repoData } = await import("./data/repo-data.js");
  // Named as resolved (4.1 -> 4.1.1): the pair's id and report say which build ran.
  const version = (v: string) => resolveCriuVersion(v, repoData().criu).version;
  const from = sideFromFlags(
    version(v["from-criu"] ?? config.criu.version),
    v["from-kernel"] ?? config.kernel.version,
    v["from-patch"] ?? config.criu.patches,
  );
  const to = sideFromFlags(
    version(v["to-criu"] ?? from.criu),
    v["to-kernel"] ?? from.kernel,
    v["to-patch"] ?? from.patches,
  );
  const inPlace = Boolean(v["in-place"]);
  if (inPlace && from.kernel !== to.kernel)
    throw new UserError(
      `--in-place runs one boot, so one kernel: --from-kernel ${from.kernel} and --to-kernel ${to.kernel} differ`,
      "drop --in-place to migrate between kernels, or give one kernel",
    );
  return { from, to, inPlace };
}

export async function migrateCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const config = configOf(ctx);
  const pair = await pairOf(ctx, config);
  if (v["dry-run"]) {
    const { planMigration } = await import("./plan-only-migrate.js");
    return printDryRun(ctx, await planMigration(baseOf(ctx), pair, { force: v.force }));
  }
  const { runMigration, formatPair } = await import("./migrate/run.js");
  const r = await runMigration(baseOf(ctx), pair, {
    force: Boolean(v.force),
    log: (l) => console.error(l),
    onOutcome: (x) => void printNotes(x),
  });
  ctx.say(formatPair(r));
  ctx.say(`pair: ${join(config.cache_dir, "migrate", r.id, "pair.json")}`);
  ctx.emit(r);
  return r.status === "ERROR" ? 4 : r.status === "FAIL" ? 1 : 0;
}

type MatrixPlan = import("./matrix/spec.js").MatrixPlan;
type PlannedCell = import("./matrix/spec.js").PlannedCell;

export async function matrixCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const f = ctx.filters;
  const { filterCells } = await import("./matrix/spec.js");
  const { defaultOutDir, runMatrixCommand, matrixExitCode } = await import("./matrix/command.js");
  const plan = await matrixPlanOf(ctx);
  // The workflow is checked in now: the old flag says where, and writes nothing.
  if (v["emit-github"]) (await import("./matrix/command.js")).renderGithubWorkflow(plan);
  const cells = filterCells(plan, {
    criu: f.criu,
    kernel: f.kernel,
    patches: f.patches,
    suite: f["guest-suite"],
    cell: f.cell,
  });
  const outDir = resolve(v.out ?? defaultOutDir(plan, configOf(ctx).cache_dir));
  // Without filters the matrix runs its cells, then its migration pairs; --pairs: only the pairs.
  const filtered = Object.values(f).some((values) => values.length > 0);
  const withPairs = Boolean(v.pairs) || !filtered;
  const picked = v.pairs ? [] : cells;
  if (v["dry-run"]) return matrixDryRun(ctx, plan, picked, outDir, withPairs);
  const { cellDiagnoses } = await import("./matrix/cell.js");
  const { summary, report, files } = await runMatrixCommand({
    plan,
    cells: picked,
    outDir,
    force: Boolean(v.force),
    jobs: v.boots,
    pairs: withPairs,
    base: baseOf(ctx),
  });
  const t = report.totals;
  ctx.say(
    `\n${summary.ran.length} cells run, ${summary.kept.length} kept from earlier runs; ${summary.stageRuns.kernel} kernel, ${summary.stageRuns.image} CRIU+image and ${summary.stageRuns.boot} boot stages in ${summary.seconds.toFixed(0)} s`,
  );
  ctx.say(
    `report (${report.cells.length} cells: ${t.PASS} PASS, ${t.FAIL} FAIL, ${t.ERROR} ERROR, ${t["BUILD-FAILED"]} BUILD-FAILED, ${t.SKIPPED} SKIPPED):`,
  );
  for (const [kind, file] of Object.entries(files)) ctx.say(`  ${kind.padEnd(5)} ${file}`);
  for (const finding of report.findings) ctx.say(`finding: ${finding.say}`);
  const { reportSummary } = await import("./matrix/report.js");
  ctx.say(`tests: ${reportSummary(report.cells)}`);
  const code = matrixExitCode(summary.cells, Boolean(v.strict));
  ctx.emit({
    matrix: plan.spec.name,
    totals: t,
    ran: summary.ran,
    kept: summary.kept,
    seconds: summary.seconds,
    files,
    findings: report.findings.map((x) => x.say),
    cells: summary.cells.map((c) => {
      // The report's cell: a kept one has its causes refreshed from its kernel's .config.
      const diagnoses = cellDiagnoses(report.cells.find((r) => r.id === c.id) ?? c);
      return { id: c.id, status: c.status, reason: c.reason, ...(diagnoses.length ? { diagnoses } : {}) };
    }),
  });
  return code;
}

/** matrix --dry-run: the cells (kept or to run, what each stage would cost) and the pairs. */
async function matrixDryRun(
  ctx: CommandContext,
  plan: MatrixPlan,
  cells: PlannedCell[],
  outDir: string,
  withPairs: boolean,
): Promise<number> {
  const { formatPlan } = await import("./matrix/command.js");
  const { planPairs } = await import("./matrix/spec.js");
  const { pairId, pairAxes } = await import("./migrate/pair.js");
  ctx.say(
    await formatPlan(
      plan,
      cells,
      outDir,
      Boolean(ctx.values.force),
      withPairs ? { set: ctx.sets } : undefined,
    ),
  );
  ctx.emit({
    matrix: plan.spec.name,
    out: outDir,
    cells: cells.map((c) => ({
      id: c.id,
      axes: c.axes,
      criu: c.criuVersion,
      skip: c.skip ?? null,
      criu_provider: c.criuCandidates.find((x) => x.key)?.provider ?? null,
      groups: c.groups,
    })),
    excluded: plan.excluded,
    pairs: withPairs
      ? planPairs(plan.spec).map((p) => ({
          id: pairId(p.pair),
          changes: pairAxes(p.pair),
          from: p.base,
          to: p.to,
        }))
      : [],
  });
  return 0;
}

export async function reportCommand(ctx: CommandContext): Promise<number> {
  const [verb, ...inputs] = ctx.positionals;
  if (verb !== "merge")
    throw new UserError(
      `unknown report command '${verb ?? ""}'`,
      "use: cr-guest report merge INPUT... --out DIR",
    );
  if (inputs.length === 0)
    throw new UserError(
      "report merge needs at least one input",
      "pass cell.json files, directories or matrix.json files",
    );
  const { cells, duplicates, report, files } = await mergeAndReport(
    inputs,
    ctx.values.out ?? "report",
    ctx.values.name,
    new UserError(
      `no cell results in ${inputs.join(", ")}`,
      "pass the output directories of `cr-guest matrix` (they hold cells/<id>/cell.json)",
    ),
  );
  ctx.say(
    `merged ${cells.length} cells from ${inputs.length} inputs${duplicates.length ? ` (${duplicates.length} duplicates: newest kept)` : ""}`,
  );
  for (const [kind, file] of Object.entries(files)) ctx.say(`  ${kind.padEnd(5)} ${file}`);
  ctx.emit({ cells: cells.length, inputs: inputs.length, duplicates, totals: report.totals, files });
  return 0;
}

export async function compareCommand(ctx: CommandContext): Promise<number> {
  const p = ctx.positionals;
  if (p.length !== 2)
    throw new UserError(
      `compare takes two reports, got ${p.length}`,
      "cr-guest compare OLD/matrix.json NEW/matrix.json",
    );
  const { collectCells } = await import("./matrix/cell.js");
  const { compareReports, renderComparison } = await import("./matrix/report.js");
  const cmp = compareReports(collectCells(p[0]), collectCells(p[1]));
  ctx.say(renderComparison(cmp, Boolean(ctx.values.markdown)));
  ctx.emit(cmp);
  return cmp.regressions.length > 0 ? 1 : 0;
}

/** The CI steps (matrix/ci.ts): the same commands run in the workflow and in `make ci-local`. */
export const CI_STEPS: Record<string, (ctx: CommandContext, store: string) => Promise<number>> = {
  keys: ciKeys,
  kernels: ciKernels,
  cell: ciCell,
  report: ciReport,
};

export async function ciCommand(ctx: CommandContext): Promise<number> {
  const [step, ...extra] = ctx.positionals;
  const run = step !== undefined && Object.hasOwn(CI_STEPS, step) ? CI_STEPS[step] : undefined;
  if (!run || extra.length)
    throw new UserError(
      `unknown ci step '${ctx.positionals.join(" ")}'`,
      "use: cr-guest ci keys | ci kernels | ci cell --criu V | ci report",
    );
  return run(ctx, resolve(ctx.values.store ?? "ci-store"));
}

/** ci keys: cache keys for the workflow, the matrix's stage groups (what each stage reads). */
async function ciKeys(ctx: CommandContext): Promise<number> {
  const ci = await import("./matrix/ci.js");
  const { filterCells } = await import("./matrix/spec.js");
  const p = await matrixPlanOf(ctx);
  const criu = ctx.filters.criu ?? [];
  const keys = ci.cacheKeys(p.cells, criu.length ? filterCells(p, { criu }) : undefined);
  const text =
    Object.entries(keys)
      .map(([k, val]) => `${k}=${val}`)
      .join("\n") + "\n";
  if (process.env.GITHUB_OUTPUT) (await import("node:fs")).appendFileSync(process.env.GITHUB_OUTPUT, text);
  ctx.say(text.trimEnd());
  ctx.emit(keys);
  return 0;
}

/** ci kernels: the matrix's kernels, built once and packed into the store. */
async function ciKernels(ctx: CommandContext, store: string): Promise<number> {
  const ci = await import("./matrix/ci.js");
  const kernels = await ci.packKernels((await matrixPlanOf(ctx)).cells, store, (l) => console.error(l));
  ctx.say(
    `${kernels.length} kernels packed in ${join(store, ci.KERNELS_DIR)}: ${kernels.map((k) => `${k.axis} (${k.release ?? k.version})`).join(", ")}`,
  );
  ctx.emit({ store, kernels });
  return 0;
}

/** ci cell --criu V: the cells of one CRIU version, on the packed kernels. */
async function ciCell(ctx: CommandContext, store: string): Promise<number> {
  const ci = await import("./matrix/ci.js");
  const { filterCells } = await import("./matrix/spec.js");
  const versions = ctx.filters.criu ?? [];
  if (versions.length !== 1)
    throw new UserError(
      "ci cell runs the cells of one CRIU version",
      "pass --criu V once (one CI job per version)",
    );
  const p = await matrixPlanOf(ctx);
  const cells = filterCells(p, { criu: versions });
  const index = ci.readKernelIndex(store);
  const { runMatrixCommand, matrixExitCode } = await import("./matrix/command.js");
  const { cellDiagnoses } = await import("./matrix/cell.js");
  const outDir = join(store, `cells-${versions[0]}`);
  const { summary, report, files } = await runMatrixCommand({
    plan: p,
    cells,
    outDir,
    force: Boolean(ctx.values.force),
    jobs: ctx.values.boots,
    kernelFrom: (c) => ci.packedKernelOutcome(store, index, c.axes.kernel),
  });
  ctx.say(
    `${summary.cells.length} cells of CRIU ${versions[0]} in ${outDir} (${summary.ran.length} run, ${summary.kept.length} kept); kernels from ${join(store, ci.KERNELS_DIR)}`,
  );
  ctx.emit({
    store,
    out: outDir,
    files,
    cells: summary.cells.map((c) => {
      // The report's cell: a kept one has its causes refreshed from its kernel's .config.
      const diagnoses = cellDiagnoses(report.cells.find((r) => r.id === c.id) ?? c);
      return { id: c.id, status: c.status, reason: c.reason, ...(diagnoses.length ? { diagnoses } : {}) };
    }),
  });
  // Verdicts are the report step's: here only what stops the cells from being results.
  return matrixExitCode(summary.cells);
}

/** ci report: the store's cells merged, compared with the baseline, the summary and the exit code. */
async function ciReport(ctx: CommandContext, store: string): Promise<number> {
  const ci = await import("./matrix/ci.js");
  const reportDir = join(store, "report");
  const { report, files } = await mergeAndReport(
    ci.cellDirsIn(store),
    reportDir,
    undefined,
    new UserError(
      `no cell results in ${store} (cells-*/)`,
      "run `cr-guest ci cell --criu V --store DIR` first (on GitHub: the cells jobs' artifacts)",
    ),
  );
  const { baseline, label } = await ciBaseline(ctx.values.baseline, store);
  const verdict = ci.ciVerdict(report.cells, ci.compareWithBaseline(baseline, report.cells));
  const summaryText = ci.renderCiSummary(report, verdict, label);
  const summaryFile = await ci.writeCiSummary(reportDir, summaryText);
  ctx.say(summaryText);
  ctx.say(`summary: ${summaryFile}`);
  for (const [kind, file] of Object.entries(files)) ctx.say(`  ${kind.padEnd(5)} ${file}`);
  ctx.emit({
    store,
    baseline: label,
    exit_code: verdict.exitCode,
    unexpected: verdict.unexpected,
    expected: verdict.expected,
    unexpected_passes: verdict.unexpectedPasses,
    regressions: verdict.comparison?.regressions ?? [],
    infrastructure: verdict.infrastructure,
    files: { ...files, summary: summaryFile },
  });
  return verdict.exitCode;
}

/** The report to compare with: --baseline, else on GitHub the last successful run of the branch. */
async function ciBaseline(
  given: string | undefined,
  store: string,
): Promise<{ baseline: string | undefined; label: string }> {
  if (given) return { baseline: given, label: `the baseline ${given}` };
  const gh = await import("./lib/github-baseline.js");
  const { GITHUB_WORKFLOW } = await import("./matrix/command.js");
  const context = gh.githubContext(process.env, basename(GITHUB_WORKFLOW));
  if (!context) return { baseline: undefined, label: "no baseline (none given, not on GitHub)" };
  const got = await gh.fetchBaseline(context, join(store, "baseline"));
  return got.status === "ok"
    ? {
        baseline: join(store, "baseline"),
        label: `the last successful run of ${got.branch} (run ${got.runId})`,
      }
    : { baseline: undefined, label: `no baseline: ${got.note}` };
}

export async function configCommand(ctx: CommandContext): Promise<number> {
  const config = configOf(ctx);
  // The configuration is this command's document, with or without --json.
  if (ctx.json) ctx.emit(config);
  else ctx.say(JSON.stringify(config, null, 2));
  return 0;
}
