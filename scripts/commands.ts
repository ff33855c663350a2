/**
 * What each command does, given parsed flags. The flags, the parsing and the printing of
 * errors and help live in cli.ts and cli-flags.ts; here text goes through `ctx.say` and
 * machine output through `ctx.emit` (one JSON document on stdout with --json).
 */
import { existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { UserError } from "./lib/errors.js";
import { loadConfig, type PipelineConfig } from "./lib/config.js";

export interface CommandContext {
  values: Record<string, unknown>;
  positionals: string[];
  /** The config overrides the flags stand for (--set first). */
  sets: string[];
  json: boolean;
  /** Human-readable lines: stdout, or stderr when --json keeps stdout for the document. */
  say: (line: string) => void;
  /** The one JSON document of a --json run. */
  emit: (doc: unknown) => void;
}

export function configOf(ctx: CommandContext, extraSets: string[] = []): PipelineConfig {
  return loadConfig({
    configFile: ctx.values.config as string | undefined,
    set: [...ctx.sets, ...extraSets],
  });
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
    const { report, text } = verifyConfigFile(config, v["verify-config"] as string);
    ctx.say(text);
    ctx.emit({ file: v["verify-config"], passed: report.passed, symbols: symbolTable(report) });
    return report.passed ? 0 : 1;
  }
  const configOut = v["config-out"] ? resolve(v["config-out"] as string) : undefined;
  if (configOut && !existsSync(dirname(configOut)))
    throw new UserError(
      `--config-out ${v["config-out"]}: the directory ${dirname(configOut)} does not exist`,
      "create it, or give a path in an existing directory",
    );
  // --criu: the doctor judges the final .config for that CRIU (a bad version fails before any work).
  const criuPlan = v.criu
    ? (await import("./criu/stage.js")).resolveAndPlanCriu(config, { strict: false })
    : undefined;
  const out = await driveStages(config, ["kernel"], {
    kernel: {
      extraFragments: (v.fragment as string[] | undefined) ?? [],
      checkConfigOnly: Boolean(v["check-config"]),
      bootCheck: v["boot-check"] ? true : undefined,
      criuVersion: criuPlan?.entry.version,
      configOut,
    },
  });
  const kernel = out.kernel!.value;
  const result = kernel.stage;
  for (const n of result.notes) ctx.say(n);
  ctx.say(result.reportText);
  if (configOut) ctx.say(`final .config: ${configOut}`);
  let findings: import("./data/doctor.js").Finding[] = [];
  if (criuPlan && kernel.config) {
    const { doctorFor, servingCandidate } = await import("./criu/stage.js");
    const { formatFindings } = await import("./data/doctor.js");
    findings = doctorFor(config, criuPlan, servingCandidate(criuPlan)?.provider, {
      kernelConfig: kernel.config,
      kernelVersion: result.metadata?.version ?? config.kernel.version,
    });
    ctx.say(`\n${formatFindings(findings, `CRIU ${criuPlan.entry.version} on this kernel`)}`);
  }
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
    ...(criuPlan ? { criu: criuPlan.entry.version, findings } : {}),
    ...(configOut ? { config_out: configOut } : {}),
    warnings: result.warnings,
    ...(result.metadata ? { metadata: result.metadata, dir: result.dir, cached: result.cached } : {}),
  });
  return passed ? 0 : 1;
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
  const kernelConfig = v["kernel-config"] ? await readKernelConfig(v["kernel-config"] as string) : undefined;
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
    const dot = (await import("./data/fragments.js")).readDotConfig(v["kernel-config"] as string);
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
    findings,
  });
  return failed ? 1 : 0;
}

export async function agentCommand(ctx: CommandContext): Promise<number> {
  const config = configOf(ctx);
  if (!config.agent.binary && !config.agent.kata_src)
    throw new UserError(
      "no agent given",
      "pass --kata-src DIR (a kata-containers tree) or --agent FILE (a prebuilt kata-agent)",
    );
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
  const extraFragments = (v.fragment as string[] | undefined) ?? [];
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

export async function migrateCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const config = configOf(ctx);
  const { runMigration, formatPair } = await import("./migrate/run.js");
  const { sideFromFlags } = await import("./migrate/pair.js");
  const { resolveCriuVersion } = await import("./data/criu-catalog.js");
  const { repoData } = await import("./data/repo-data.js");
  // Named as resolved (4.1 -> 4.1.1): the pair's id and report say which build ran.
  const version = (v: string) => resolveCriuVersion(v, repoData().criu).version;
  const from = sideFromFlags(
    version((v["from-criu"] as string | undefined) ?? config.criu.version),
    (v["from-kernel"] as string | undefined) ?? config.kernel.version,
    (v["from-patch"] as string[] | undefined) ?? config.criu.patches,
  );
  const to = sideFromFlags(
    version((v["to-criu"] as string | undefined) ?? from.criu),
    (v["to-kernel"] as string | undefined) ?? from.kernel,
    (v["to-patch"] as string[] | undefined) ?? from.patches,
  );
  const inPlace = Boolean(v["in-place"]);
  if (inPlace && from.kernel !== to.kernel)
    throw new UserError(
      `--in-place runs one boot, so one kernel: --from-kernel ${from.kernel} and --to-kernel ${to.kernel} differ`,
      "drop --in-place to migrate between kernels, or give one kernel",
    );
  const r = await runMigration(
    { configFile: v.config as string | undefined, set: ctx.sets },
    { from, to, inPlace },
    { force: Boolean(v.force), log: (l) => console.error(l), onOutcome: (x) => void printNotes(x) },
  );
  ctx.say(formatPair(r));
  ctx.say(`pair: ${join(config.cache_dir, "migrate", r.id, "pair.json")}`);
  ctx.emit(r);
  return r.status === "ERROR" ? 4 : r.status === "FAIL" ? 1 : 0;
}

export async function matrixCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const { loadMatrixSpec, planMatrix, filterCells, planPairs } = await import("./matrix/spec.js");
  const { pairId, pairAxes } = await import("./migrate/pair.js");
  const {
    defaultOutDir,
    formatPlan,
    runMatrixCommand,
    matrixExitCode,
    renderGithubWorkflow,
    GITHUB_WORKFLOW,
  } = await import("./matrix/command.js");
  const { REPO_ROOT } = await import("./lib/paths.js");
  const spec = loadMatrixSpec(resolve((v.matrix as string | undefined) ?? join(REPO_ROOT, "matrix.yaml")));
  const plan = planMatrix(spec, { configFile: v.config as string | undefined, set: ctx.sets });
  if (v["emit-github"]) {
    const { mkdir, writeFile } = await import("node:fs/promises");
    const { dirname } = await import("node:path");
    await mkdir(dirname(GITHUB_WORKFLOW), { recursive: true });
    await writeFile(GITHUB_WORKFLOW, renderGithubWorkflow(plan));
    ctx.say(
      `workflow: ${GITHUB_WORKFLOW} (one job per CRIU version: ${spec.axes.criu.map((x) => x.id).join(", ")})`,
    );
    ctx.emit({ workflow: GITHUB_WORKFLOW });
    return 0;
  }
  const cells = filterCells(plan, {
    criu: v.criu as string[],
    kernel: v.kernel as string[],
    patches: v.patches as string[],
    suite: v["guest-suite"] as string[],
    cell: v.cell as string[],
  });
  const outDir = resolve((v.out as string | undefined) ?? defaultOutDir(plan, configOf(ctx).cache_dir));
  // Without filters the matrix runs its cells, then its migration pairs; --pairs: only the pairs.
  const filtered = ["criu", "kernel", "patches", "guest-suite", "cell"].some(
    (f) => ((v[f] as string[] | undefined) ?? []).length > 0,
  );
  const withPairs = Boolean(v.pairs) || !filtered;
  if (v["dry-run"]) {
    ctx.say(
      await formatPlan(
        plan,
        v.pairs ? [] : cells,
        outDir,
        Boolean(v.force),
        withPairs ? { set: ctx.sets } : undefined,
      ),
    );
    ctx.emit({
      matrix: plan.spec.name,
      out: outDir,
      cells: (v.pairs ? [] : cells).map((c) => ({
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
  const boots = v.boots ? Number(v.boots) : undefined;
  if (boots !== undefined && !(Number.isInteger(boots) && boots >= 1))
    throw new UserError(`--boots ${v.boots} is not a positive whole number`, "pass --boots 1 or more");
  const { summary, report, files } = await runMatrixCommand({
    plan,
    cells: v.pairs ? [] : cells,
    outDir,
    force: Boolean(v.force),
    jobs: boots,
    pairs: withPairs,
    base: { configFile: v.config as string | undefined, set: ctx.sets },
  });
  const t = report.totals;
  ctx.say(
    `\n${summary.ran.length} cells run, ${summary.kept.length} kept from earlier runs; ${summary.stageRuns.kernel} kernel, ${summary.stageRuns.image} CRIU+image and ${summary.stageRuns.boot} boot stages in ${summary.seconds.toFixed(0)} s`,
  );
  ctx.say(
    `report (${report.cells.length} cells: ${t.PASS} PASS, ${t.FAIL} FAIL, ${t.ERROR} ERROR, ${t["BUILD-FAILED"]} BUILD-FAILED, ${t.SKIPPED} SKIPPED):`,
  );
  for (const [kind, file] of Object.entries(files)) ctx.say(`  ${kind.padEnd(5)} ${file}`);
  for (const f of report.findings) ctx.say(`finding: ${f.say}`);
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
    findings: report.findings.map((f) => f.say),
    cells: summary.cells.map((c) => ({ id: c.id, status: c.status, reason: c.reason })),
  });
  return code;
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
  const { collectCells } = await import("./matrix/cell.js");
  const { mergeCells, buildReport } = await import("./matrix/report.js");
  const { writeReports } = await import("./matrix/command.js");
  const { cells, duplicates } = mergeCells(inputs.map((i) => collectCells(i)));
  if (cells.length === 0)
    throw new UserError(
      `no cell results in ${inputs.join(", ")}`,
      "pass the output directories of `cr-guest matrix` (they hold cells/<id>/cell.json)",
    );
  const report = buildReport((ctx.values.name as string | undefined) ?? cells[0].matrix, cells, {
    duplicates,
  });
  const files = await writeReports((ctx.values.out as string | undefined) ?? "report", report);
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
export async function ciCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  const [step, ...extra] = ctx.positionals;
  if (!["keys", "kernels", "cell", "report"].includes(step ?? "") || extra.length)
    throw new UserError(
      `unknown ci step '${ctx.positionals.join(" ")}'`,
      "use: cr-guest ci keys | ci kernels | ci cell --criu V | ci report",
    );
  const store = resolve((v.store as string | undefined) ?? "ci-store");
  const ci = await import("./matrix/ci.js");
  const { loadMatrixSpec, planMatrix, filterCells } = await import("./matrix/spec.js");
  const { REPO_ROOT } = await import("./lib/paths.js");
  const plan = () =>
    planMatrix(loadMatrixSpec(resolve((v.matrix as string | undefined) ?? join(REPO_ROOT, "matrix.yaml"))), {
      configFile: v.config as string | undefined,
      set: ctx.sets,
    });

  if (step === "keys") {
    // Cache keys for the workflow: the matrix's stage groups (what each stage reads).
    const p = plan();
    const keys = ci.cacheKeys(
      p.cells,
      (v.criu as string[] | undefined)?.length ? filterCells(p, { criu: v.criu as string[] }) : undefined,
    );
    const text =
      Object.entries(keys)
        .map(([k, val]) => `${k}=${val}`)
        .join("\n") + "\n";
    if (process.env.GITHUB_OUTPUT) (await import("node:fs")).appendFileSync(process.env.GITHUB_OUTPUT, text);
    ctx.say(text.trimEnd());
    ctx.emit(keys);
    return 0;
  }
  if (step === "kernels") {
    const p = plan();
    const kernels = await ci.packKernels(p.cells, store, (l) => console.error(l));
    ctx.say(
      `${kernels.length} kernels packed in ${join(store, ci.KERNELS_DIR)}: ${kernels.map((k) => `${k.axis} (${k.release ?? k.version})`).join(", ")}`,
    );
    ctx.emit({ store, kernels });
    return 0;
  }
  if (step === "cell") {
    const versions = (v.criu as string[] | undefined) ?? [];
    if (versions.length !== 1)
      throw new UserError(
        "ci cell runs the cells of one CRIU version",
        "pass --criu V once (one CI job per version)",
      );
    const p = plan();
    const cells = filterCells(p, { criu: versions });
    const index = ci.readKernelIndex(store);
    const { runMatrixCommand, matrixExitCode } = await import("./matrix/command.js");
    const outDir = join(store, `cells-${versions[0]}`);
    const { summary, files } = await runMatrixCommand({
      plan: p,
      cells,
      outDir,
      force: Boolean(v.force),
      jobs: v.boots ? Number(v.boots) : undefined,
      kernelFrom: (c) => ci.packedKernelOutcome(store, index, c.axes.kernel),
    });
    ctx.say(
      `${summary.cells.length} cells of CRIU ${versions[0]} in ${outDir} (${summary.ran.length} run, ${summary.kept.length} kept); kernels from ${join(store, ci.KERNELS_DIR)}`,
    );
    ctx.emit({
      store,
      out: outDir,
      files,
      cells: summary.cells.map((c) => ({ id: c.id, status: c.status, reason: c.reason })),
    });
    // Verdicts are the report step's: here only what stops the cells from being results.
    return matrixExitCode(summary.cells);
  }
  // report
  const { collectCells } = await import("./matrix/cell.js");
  const { mergeCells, buildReport } = await import("./matrix/report.js");
  const { writeReports } = await import("./matrix/command.js");
  const dirs = ci.cellDirsIn(store);
  const { cells, duplicates } = mergeCells(dirs.map((d) => collectCells(d)));
  if (cells.length === 0)
    throw new UserError(
      `no cell results in ${store} (cells-*/)`,
      "run `cr-guest ci cell --criu V --store DIR` first (on GitHub: the cells jobs' artifacts)",
    );
  const report = buildReport((v.name as string | undefined) ?? cells[0].matrix, cells, { duplicates });
  const reportDir = join(store, "report");
  const files = await writeReports(reportDir, report);
  let baseline = v.baseline as string | undefined;
  let baselineLabel = baseline ? `the baseline ${baseline}` : "no baseline (none given, not on GitHub)";
  if (!baseline) {
    const gh = await import("./lib/github-baseline.js");
    const { GITHUB_WORKFLOW } = await import("./matrix/command.js");
    const context = gh.githubContext(process.env, basename(GITHUB_WORKFLOW));
    if (context) {
      const got = await gh.fetchBaseline(context, join(store, "baseline"));
      if (got.status === "ok") {
        baseline = join(store, "baseline");
        baselineLabel = `the last successful run of ${got.branch} (run ${got.runId})`;
      } else baselineLabel = `no baseline: ${got.note}`;
    }
  }
  const verdict = ci.ciVerdict(report.cells, ci.compareWithBaseline(baseline, report.cells));
  const summaryText = ci.renderCiSummary(report, verdict, baselineLabel);
  const summaryFile = await ci.writeCiSummary(reportDir, summaryText);
  ctx.say(summaryText);
  ctx.say(`summary: ${summaryFile}`);
  for (const [kind, file] of Object.entries(files)) ctx.say(`  ${kind.padEnd(5)} ${file}`);
  ctx.emit({
    store,
    baseline: baselineLabel,
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

export async function configCommand(ctx: CommandContext): Promise<number> {
  const config = configOf(ctx);
  // The configuration is this command's document, with or without --json.
  if (ctx.json) ctx.emit(config);
  else ctx.say(JSON.stringify(config, null, 2));
  return 0;
}
