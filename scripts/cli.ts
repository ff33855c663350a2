/**
 * cr-guest: one entry point for every stage. `cr-guest <command> --help` for each command.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CommandError, UserError } from "./lib/errors.js";
import { loadConfig, type PipelineConfig } from "./lib/config.js";
import { didYouMean } from "./lib/suggest.js";

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  help: Record<string, string>;
  run: (values: Record<string, unknown>, positionals: string[]) => Promise<number>;
  /** Takes positional arguments (report merge, compare). */
  positionals?: boolean;
}

const CONFIG_OPTIONS = {
  config: { type: "string" },
  set: { type: "string", multiple: true },
  "cache-dir": { type: "string" },
} as const;

const CONFIG_HELP = {
  "--config FILE": "a pipeline.yaml on top of the embedded default",
  "--set KEY=VALUE": "override one config key, e.g. --set kernel.base=tinyconfig (repeatable)",
  "--cache-dir DIR": "where artifacts are cached (default: images/)",
};

const CRIU_OPTIONS = {
  version: { type: "string" },
  criu: { type: "string" },
  "criu-mirror": { type: "string" },
  git: { type: "string" },
  ref: { type: "string" },
  patch: { type: "string", multiple: true },
  provider: { type: "string", multiple: true },
  link: { type: "string" },
  suite: { type: "string" },
  "local-source": { type: "string" },
} as const;

const CRIU_HELP = {
  "--criu V, --version V": "CRIU version: 3.17.1, 3.19, 4.1 (newest 4.1.x), 4.2.1, latest; with --local-source or --git it may be left out (the source's own version)",
  "--patch NAME": "apply a patch from criu-builds/patches (repeatable), e.g. membarrier-probe-nonfatal",
  "--provider P": "local-source, git, local-mirror, debian-source, upstream, debian-binary (repeatable: only these, in this order)",
  "--link MODE": "static (default: only libc dynamic, runs in every suite) or dynamic",
  "--suite S": "the guest userland suite (bookworm, trixie, sid)",
  "--local-source PATH": "a CRIU source directory, git checkout (tracked files, commit recorded) or tarball",
  "--criu-mirror DIR": "a directory of CRIU tarballs (criu-X.tar.gz, vX.tar.gz, criu_X.orig.tar.xz), checked against the pins",
  "--git URL --ref REF": "build a git commit: REF (branch, tag or commit) is resolved, fetched into the cache and recorded",
};

function criuSets(v: Record<string, unknown>): string[] {
  const sets: string[] = [];
  const version = v.criu ?? v.version;
  if (v.criu && v.version && v.criu !== v.version) throw new UserError(`--criu ${v.criu} and --version ${v.version} disagree`, "give the CRIU version once");
  if (v.ref && !v.git) throw new UserError("--ref without --git", "give the repository: --git URL --ref REF");
  if (version) sets.push(`criu.version=${JSON.stringify(version)}`);
  // A source given without a version: build the version the source declares.
  else if (v["local-source"] || v.git) sets.push(`criu.version=""`);
  if (v["criu-mirror"]) sets.push(`criu.local_mirror=${JSON.stringify(v["criu-mirror"])}`);
  if (v.git) sets.push(`criu.git={url: ${JSON.stringify(v.git)}, ref: ${JSON.stringify(v.ref ?? "")}}`);
  if (v.patch) sets.push(`criu.patches=${JSON.stringify(v.patch)}`);
  if (v.provider) sets.push(`criu.providers=${JSON.stringify(v.provider)}`);
  if (v.link) sets.push(`criu.link=${v.link}`);
  if (v.suite) sets.push(`criu.guest_suite=${v.suite}`);
  if (v["local-source"]) sets.push(`criu.local_source=${JSON.stringify(v["local-source"])}`);
  return sets;
}

const AGENT_OPTIONS = {
  agent: { type: "string" },
  "kata-src": { type: "string" },
} as const;

const AGENT_HELP = {
  "--agent FILE": "a prebuilt kata-agent binary",
  "--kata-src DIR": "a kata-containers tree: patched for setsid() (on a copy) and built with its musl target",
};

function agentSets(v: Record<string, unknown>): string[] {
  const sets: string[] = [];
  if (v.agent) sets.push(`agent.binary=${JSON.stringify(v.agent)}`);
  if (v["kata-src"]) sets.push(`agent.kata_src=${JSON.stringify(v["kata-src"])}`);
  return sets;
}

/** CRIU, agent, image for the CLI: the provider chain's notes and the doctor's findings printed. */
async function buildImage(config: PipelineConfig, force: boolean, kernel?: import("./pipeline.js").PreparedKernel) {
  const { prepareImage } = await import("./pipeline.js");
  const { formatFindings } = await import("./criu/doctor.js");
  const image = await prepareImage(config, { force, kernel });
  for (const n of image.notes) console.error(`note: ${n}`);
  if (image.findings.length) console.error(formatFindings(image.findings, "compatibility"));
  return image;
}

async function readKernelConfig(file: string): Promise<Map<string, string>> {
  return (await import("./pipeline.js")).readKernelConfig(file);
}

/** --set and --cache-dir as config overrides. */
function setsFrom(values: Record<string, unknown>, extraSets: string[] = []): string[] {
  const set = [...((values.set as string[] | undefined) ?? []), ...extraSets];
  if (values["cache-dir"]) set.push(`cache_dir=${JSON.stringify(values["cache-dir"])}`);
  return set;
}

function configFrom(values: Record<string, unknown>, extraSets: string[] = []): PipelineConfig {
  return loadConfig({ configFile: values.config as string | undefined, set: setsFrom(values, extraSets) });
}

const COMMANDS: Record<string, Command> = {
  kernel: {
    summary: "build (or fetch) a checkpoint/restore guest kernel and prove its config",
    usage: "cr-guest kernel [options]",
    options: {
      ...CONFIG_OPTIONS,
      version: { type: "string" },
      base: { type: "string" },
      "fragment-set": { type: "string" },
      fragment: { type: "string", multiple: true },
      "check-config": { type: "boolean" },
      "verify-config": { type: "string" },
      prebuilt: { type: "boolean" },
      suite: { type: "string" },
      "boot-check": { type: "boolean" },
      jobs: { type: "string" },
      json: { type: "boolean" },
    },
    help: {
      ...CONFIG_HELP,
      "--version V": "kernel version: 6.12 (newest pinned 6.12.x), 6.1, 6.12.107, latest",
      "--base MODE": "allnoconfig (default, Kata's method), tinyconfig, defconfig (+ kvm_guest.config)",
      "--fragment-set NAME": "a fragment set from the config (default, debug, minimal)",
      "--fragment FILE": "one more fragment on top of the set (repeatable)",
      "--check-config": "configure and verify only, no build (seconds once the source is cached)",
      "--verify-config FILE": "verify an existing .config against the fragments (no source needed)",
      "--prebuilt": "take Debian's cloud kernel (kernel.kind=debian-cloud) and verify it",
      "--suite S": "the Debian suite for --prebuilt (default trixie)",
      "--boot-check": "boot the built kernel under QEMU and check /proc/config.gz in the guest",
      "--jobs N": "parallel make jobs (default: number of CPUs)",
      "--json": "print the artifact's metadata.json",
    },
    run: async (v) => {
      const sets: string[] = [];
      if (v.version) sets.push(`kernel.version=${JSON.stringify(v.version)}`);
      if (v.base) sets.push(`kernel.base=${v.base}`);
      if (v["fragment-set"]) sets.push(`kernel.fragment_set=${v["fragment-set"]}`);
      if (v.prebuilt) sets.push("kernel.kind=debian-cloud");
      if (v.suite) sets.push(`kernel.debian_cloud_suite=${v.suite}`);
      if (v.jobs) sets.push(`kernel.jobs=${Number(v.jobs)}`);
      const config = configFrom(v, sets);
      const { runKernelStage, verifyConfigFile } = await import("./kernel/stage.js");
      if (v["verify-config"]) {
        const { report, text } = verifyConfigFile(config, v["verify-config"] as string);
        console.log(text);
        return report.passed ? 0 : 1;
      }
      const result = await runKernelStage(config, {
        extraFragments: (v.fragment as string[] | undefined) ?? [],
        checkConfigOnly: Boolean(v["check-config"]),
        bootCheck: v["boot-check"] ? true : undefined,
      });
      for (const w of result.warnings) console.error(`warning: ${w}`);
      for (const n of result.notes) console.log(n);
      console.log(result.reportText);
      if (v.json && result.metadata) console.log(JSON.stringify(result.metadata, null, 2));
      if (result.dir) {
        console.log(`\nkernel: ${join(result.dir, "vmlinuz")}${result.cached ? " (cached)" : ""}`);
        console.log(`config: ${join(result.dir, "config")}`);
        console.log(`metadata: ${join(result.dir, "metadata.json")}`);
      }
      const passed = result.report ? result.report.passed : (result.metadata?.verify.passed ?? true);
      return passed ? 0 : 1;
    },
  },
  criu: {
    summary: "build or download a CRIU version for a guest userland (optionally patched)",
    usage: "cr-guest criu [--version V] [options]",
    options: {
      ...CONFIG_OPTIONS,
      ...CRIU_OPTIONS,
      plan: { type: "boolean" },
      force: { type: "boolean" },
      "kernel-config": { type: "string" },
      json: { type: "boolean" },
    },
    help: {
      ...CONFIG_HELP,
      ...CRIU_HELP,
      "--plan": "print the resolved version, providers and cache state, build nothing",
      "--force": "build even if the compatibility check finds a problem",
      "--kernel-config FILE": "check compatibility against this kernel .config",
      "--json": "print the artifact's metadata.json",
    },
    run: async (v) => {
      const config = configFrom(v, criuSets(v));
      const { resolveAndPlanCriu, describeCriuPlan, runCriuStage, doctorFor } = await import("./criu/stage.js");
      const { ArtifactCache } = await import("./lib/cache.js");
      const { formatFindings } = await import("./criu/doctor.js");
      const kernelConfig = v["kernel-config"] ? await readKernelConfig(v["kernel-config"] as string) : undefined;
      if (v.plan) {
        const cache = new ArtifactCache(config.cache_dir);
        const plan = resolveAndPlanCriu(config, { strict: true });
        console.log(`guest suite: ${plan.guestSuite}; link: ${config.criu.link}; patches: ${plan.patches.map((p) => p.name).join(", ") || "none"}`);
        for (const line of describeCriuPlan(plan, (key) => existsSync(join(cache.dir("criu", key), "metadata.json")))) console.log(line);
        const findings = doctorFor(config, plan, plan.candidates.find((c) => c.key)?.provider, { kernelConfig });
        console.log(formatFindings(findings, "compatibility"));
        return 0;
      }
      const result = await runCriuStage(config, { kernelConfig, force: Boolean(v.force) });
      for (const a of result.attempts) console.error(`note: ${a}`);
      if (result.findings.length) console.error(formatFindings(result.findings, "compatibility"));
      if (v.json) console.log(JSON.stringify(result.metadata, null, 2));
      const how = result.metadata.provider === "debian-binary" ? "Debian binary package" : `${result.metadata.provider}, ${result.metadata.link}`;
      console.log(`${result.metadata.version_output.split("\n")[0]} (${how}, runs in ${result.metadata.runs_in.join(", ")})`);
      console.log(`criu: ${join(result.dir, "criu")}${result.cached ? " (cached)" : ""}`);
      console.log(`metadata: ${join(result.dir, "metadata.json")}`);
      return 0;
    },
  },
  doctor: {
    summary: "check a CRIU version against a kernel config and guest suite: what will fail, why, the fix",
    usage: "cr-guest doctor --criu V [--kernel-config FILE | --debian-kernel SUITE] [options]",
    options: {
      ...CONFIG_OPTIONS,
      ...CRIU_OPTIONS,
      "kernel-config": { type: "string" },
      "debian-kernel": { type: "string" },
    },
    help: {
      ...CONFIG_HELP,
      ...CRIU_HELP,
      "--kernel-config FILE": "a kernel .config (default: the config the kernel stage produces)",
      "--debian-kernel SUITE": "check against Debian's cloud kernel of that suite",
    },
    run: async (v) => {
      const sets = criuSets(v);
      const config = configFrom(v, sets);
      const { resolveAndPlanCriu, doctorFor } = await import("./criu/stage.js");
      const { formatFindings } = await import("./criu/doctor.js");
      let kernelConfig: Map<string, string> | undefined;
      let kernelLabel: string;
      let kernelVersion: string | undefined;
      if (v["kernel-config"]) {
        kernelConfig = await readKernelConfig(v["kernel-config"] as string);
        kernelLabel = v["kernel-config"] as string;
      } else {
        const { runKernelStage } = await import("./kernel/stage.js");
        const kconfig = v["debian-kernel"] ? configFrom(v, [...sets, "kernel.kind=debian-cloud", `kernel.debian_cloud_suite=${v["debian-kernel"]}`]) : config;
        const k = await runKernelStage(kconfig, { checkConfigOnly: !v["debian-kernel"] });
        kernelConfig = k.finalConfig ?? (k.dir ? await readKernelConfig(join(k.dir, "config")) : undefined);
        kernelVersion = k.metadata?.version ?? undefined;
        kernelLabel = v["debian-kernel"] ? `Debian ${v["debian-kernel"]} cloud kernel ${k.metadata?.release ?? ""}` : `the configured kernel (${config.kernel.version}, ${config.kernel.base})`;
      }
      const plan = resolveAndPlanCriu(config, { strict: true });
      const provider = plan.candidates.find((c) => c.key)?.provider;
      const findings = doctorFor(config, plan, provider, { kernelConfig, kernelVersion: kernelVersion ?? config.kernel.version });
      console.log(formatFindings(findings, `CRIU ${plan.entry.version} (${provider ?? "?"}, ${config.criu.link}) in ${plan.guestSuite} on ${kernelLabel}`));
      return findings.some((f) => f.severity === "fail") ? 1 : 0;
    },
  },
  agent: {
    summary: "a kata-agent for the image: check and patch a Kata tree for setsid(), build it, or take a prebuilt one",
    usage: "cr-guest agent (--kata-src DIR [--check] | --agent FILE) [options]",
    options: { ...CONFIG_OPTIONS, ...AGENT_OPTIONS, check: { type: "boolean" }, json: { type: "boolean" } },
    help: {
      ...CONFIG_HELP,
      ...AGENT_HELP,
      "--check": "only say whether the tree calls setsid() for every container process and which patch applies",
      "--json": "print the artifact's metadata.json",
    },
    run: async (v) => {
      const config = configFrom(v, agentSets(v));
      if (!config.agent.binary && !config.agent.kata_src) throw new UserError("no agent given", "pass --kata-src DIR (a kata-containers tree) or --agent FILE (a prebuilt kata-agent)");
      if (v.check) {
        if (!config.agent.kata_src) throw new UserError("--check reads a source tree", "pass --kata-src DIR");
        const { kataSourceIdentity } = await import("./agent/stage.js");
        const { loadAgentPatches, selectAgentPatch } = await import("./agent/agent.js");
        const id = kataSourceIdentity(config.agent.kata_src);
        const patch = id.state === "unconditional" ? undefined : selectAgentPatch(id.version, loadAgentPatches());
        console.log(`Kata ${id.version}: setsid() ${id.state === "unconditional" ? "is called for every container process: no patch needed" : `only with a terminal (${id.state}): ${patch?.name} applies`}`);
        return 0;
      }
      const { runAgentStage } = await import("./agent/stage.js");
      const { runSteps } = await import("./lib/progress.js");
      const state: { art?: Awaited<ReturnType<typeof runAgentStage>> } = {};
      await runSteps(state, [{ title: "kata-agent", run: async (s, log) => void (s.art = await runAgentStage(config, log)) }]);
      const art = state.art!;
      if (v.json) console.log(JSON.stringify(art.metadata, null, 2));
      console.log(art.metadata.message);
      console.log(`agent: ${art.binary}${art.cached ? " (cached)" : ""}`);
      return 0;
    },
  },
  image: {
    summary: "a guest image with CRIU, the kata-agent and the test runner (fresh, or from an existing Kata image)",
    usage: "cr-guest image [--version V] [--base FILE] [--agent FILE | --kata-src DIR] [options]",
    options: { ...CONFIG_OPTIONS, ...CRIU_OPTIONS, ...AGENT_OPTIONS, base: { type: "string" }, name: { type: "string" }, force: { type: "boolean" }, json: { type: "boolean" } },
    help: {
      ...CONFIG_HELP,
      ...CRIU_HELP,
      ...AGENT_HELP,
      "--base FILE": "an existing raw Kata image to add CRIU to (copied; the original is never changed)",
      "--name N": "the image is images/<N>.img (default cr-guest)",
      "--force": "build even if the CRIU compatibility check finds a problem",
      "--json": "print the image's metadata.json",
    },
    run: async (v) => {
      const sets = [...criuSets(v), ...agentSets(v)];
      if (v.base) sets.push(`image.base=${JSON.stringify(v.base)}`);
      if (v.name) sets.push(`image.name=${JSON.stringify(v.name)}`);
      const config = configFrom(v, sets);
      const result = await buildImage(config, Boolean(v.force));
      if (v.json) console.log(JSON.stringify(result.metadata, null, 2));
      const m = result.manifest;
      console.log(`base: ${m.base}`);
      console.log(`criu: ${m.criu.version} (${m.criu.provider}, ${m.criu.link}${m.criu.patches.length ? `, ${m.criu.patches.join(", ")}` : ""})`);
      console.log(`agent: ${m.agent === "no agent" ? "no agent" : `${m.agent.source} ${m.agent.kata_version ?? ""} setsid ${m.agent.setsid}`}`);
      console.log(`runner: ${m.runner.files} files`);
      console.log(`injected and read back: ${result.metadata.injected.length} files, ${result.metadata.guestfish_launches} guestfish launch`);
      console.log(`image: ${result.link} -> ${result.image}${result.cached ? " (cached)" : ""}`);
      console.log(`metadata: ${join(result.dir, "metadata.json")}`);
      return 0;
    },
  },
  smoke: {
    summary: "boot the image with the kernel under QEMU: criu check, ptrace checks and dump/restore scenarios, bounded in time",
    usage: "cr-guest smoke [--version V] [--kernel-version K] [options]",
    options: {
      ...CONFIG_OPTIONS,
      ...CRIU_OPTIONS,
      ...AGENT_OPTIONS,
      "kernel-version": { type: "string" },
      "fragment-set": { type: "string" },
      fragment: { type: "string", multiple: true },
      base: { type: "string" },
      accel: { type: "string" },
      force: { type: "boolean" },
      strict: { type: "boolean" },
      json: { type: "boolean" },
    },
    help: {
      ...CONFIG_HELP,
      ...CRIU_HELP,
      ...AGENT_HELP,
      "--kernel-version K": "guest kernel version (default from the config: 6.12)",
      "--fragment-set NAME": "kernel fragment set (default, debug, minimal)",
      "--fragment FILE": "one more kernel fragment (repeatable)",
      "--base FILE": "an existing raw Kata image to add CRIU to",
      "--accel A": "auto (KVM only if a probe boot works), kvm or tcg",
      "--force": "run again even if a complete result for these inputs exists",
      "--strict": "exit 1 when a test fails (not counting criu check --all/--feature; default: 0 once the run completed; 4 on an infrastructure error)",
      "--json": "print results.json",
    },
    run: async (v) => {
      const sets = [...criuSets(v), ...agentSets(v)];
      if (v["kernel-version"]) sets.push(`kernel.version=${JSON.stringify(v["kernel-version"])}`);
      if (v["fragment-set"]) sets.push(`kernel.fragment_set=${v["fragment-set"]}`);
      if (v.base) sets.push(`image.base=${JSON.stringify(v.base)}`);
      if (v.accel) sets.push(`boot.accel=${v.accel}`);
      const config = configFrom(v, sets);
      const extraFragments = (v.fragment as string[] | undefined) ?? [];
      // Bad CRIU input fails before the kernel stage starts.
      (await import("./criu/stage.js")).resolveAndPlanCriu(config, { strict: true });
      const { prepareKernel } = await import("./pipeline.js");
      const { runBootTests, formatRun } = await import("./boot/stage.js");
      const { chooseAccel } = await import("./boot/accel.js");
      const { runSteps } = await import("./lib/progress.js");
      const kernel = await prepareKernel(config, extraFragments);
      for (const w of kernel.stage.warnings) console.error(`warning: ${w}`);
      const kref = kernel.ref;
      // The compatibility check runs against the kernel this run boots (--force overrides it).
      const image = await buildImage(config, Boolean(v.force), kernel);
      const accel = await chooseAccel(config, join(kref.dir, "vmlinuz"));
      const state: { run?: Awaited<ReturnType<typeof runBootTests>> } = {};
      await runSteps(state, [
        {
          title: `Boot and test: linux ${kref.version}, CRIU ${image.manifest.criu.version} (${accel.accel})`,
          run: async (s, log) => void (s.run = await runBootTests(config, { kernel: kref, image, criu: image.criu, accel: accel.accel, force: Boolean(v.force), log })),
        },
      ]);
      const r = state.run!;
      if (v.json) console.log(JSON.stringify(r.results, null, 2));
      console.log(formatRun(r.results));
      // The same report a matrix writes, for this one run.
      const { cellOfSingleRun } = await import("./matrix/stages.js");
      const { buildReport } = await import("./matrix/report.js");
      const { writeReports } = await import("./matrix/command.js");
      const cell = cellOfSingleRun(config, kernel, image, r);
      const report = await writeReports(join(config.cache_dir, "report", config.image.name), buildReport(config.image.name, [cell]));
      console.log(`\nkernel:  ${join(kref.dir, "vmlinuz")}`);
      console.log(`image:   ${image.link} -> ${image.image}`);
      console.log(`results: ${join(r.dir, "results.json")}${r.cached ? " (cached)" : ""}`);
      console.log(`console: ${join(r.dir, r.results.attempts.at(-1)?.console_log ?? "")}`);
      console.log(`report:  ${report.md} (also ${report.html}, ${report.junit})`);
      if (r.results.status === "ERROR") return 4;
      // As in the matrix: `criu check --all` and --feature are reported, never decide.
      return v.strict && cell.status === "FAIL" ? 1 : 0;
    },
  },
  matrix: {
    summary: "run the version matrix (matrix.yaml): every cell built once per shared stage, booted, reported",
    usage: "cr-guest matrix [--matrix FILE] [--plan] [--criu V] [--kernel K] [--patches P] [--cell ID] [options]",
    options: {
      ...CONFIG_OPTIONS,
      matrix: { type: "string" },
      plan: { type: "boolean" },
      criu: { type: "string", multiple: true },
      kernel: { type: "string", multiple: true },
      patches: { type: "string", multiple: true },
      suite: { type: "string", multiple: true },
      cell: { type: "string", multiple: true },
      out: { type: "string" },
      force: { type: "boolean" },
      jobs: { type: "string" },
      strict: { type: "boolean" },
      "emit-github": { type: "boolean" },
      "criu-mirror": { type: "string" },
      "local-source": { type: "string" },
      git: { type: "string" },
      ref: { type: "string" },
    },
    help: {
      ...CONFIG_HELP,
      "--matrix FILE": "the matrix (default: matrix.yaml)",
      "--plan": "print the cells, what they share and what is cached; run nothing",
      "--criu V": "only cells of this CRIU (axis id, or a version: 4.1 means 4.1.1) (repeatable)",
      "--kernel K": "only cells of this kernel axis value, e.g. 6.12 (repeatable)",
      "--patches P": "only cells of this patch axis value, e.g. unpatched (repeatable)",
      "--suite S": "only cells of this suite axis value (repeatable)",
      "--cell ID": "only this cell (repeatable)",
      "--out DIR": "where cells and reports go (default: <cache_dir>/matrix/<name>)",
      "--force": "run cells again (and boot again) even when a result with the same inputs is stored",
      "--jobs N": "guest boots at once (default: as many as the cores allow)",
      "--strict": "exit 1 when a cell has a failing test (default: only build failures, 4 for infrastructure errors)",
      "--emit-github": `write the GitHub Actions workflow for this matrix (.github/workflows/cr-guest-matrix.yml)`,
      "--criu-mirror DIR": "a directory of CRIU tarballs for every cell (checked against the pins)",
      "--local-source PATH": "a CRIU tree, git checkout or tarball: the cells of its version build it",
      "--git URL --ref REF": "a CRIU git commit: the cells of its version build it",
    },
    run: async (v) => {
      const { loadMatrixSpec, planMatrix, filterCells } = await import("./matrix/spec.js");
      const { defaultOutDir, formatPlan, runMatrixCommand, matrixExitCode, renderGithubWorkflow, GITHUB_WORKFLOW } = await import("./matrix/command.js");
      const { REPO_ROOT } = await import("./lib/paths.js");
      const { resolve } = await import("node:path");
      const spec = loadMatrixSpec(resolve((v.matrix as string | undefined) ?? join(REPO_ROOT, "matrix.yaml")));
      const sourceSets = criuSets({ "criu-mirror": v["criu-mirror"], "local-source": v["local-source"], git: v.git, ref: v.ref }).filter((x) => !x.startsWith("criu.version="));
      const plan = planMatrix(spec, { configFile: v.config as string | undefined, set: setsFrom(v, sourceSets) });
      if (v["emit-github"]) {
        const { mkdir, writeFile } = await import("node:fs/promises");
        const { dirname } = await import("node:path");
        await mkdir(dirname(GITHUB_WORKFLOW), { recursive: true });
        await writeFile(GITHUB_WORKFLOW, renderGithubWorkflow(plan));
        console.log(`workflow: ${GITHUB_WORKFLOW} (one job per CRIU version: ${spec.axes.criu.map((x) => x.id).join(", ")})`);
        return 0;
      }
      const cells = filterCells(plan, { criu: v.criu as string[], kernel: v.kernel as string[], patches: v.patches as string[], suite: v.suite as string[], cell: v.cell as string[] });
      const outDir = resolve((v.out as string | undefined) ?? defaultOutDir(plan, configFrom(v).cache_dir));
      if (v.plan) {
        console.log(await formatPlan(plan, cells, outDir, Boolean(v.force)));
        return 0;
      }
      const jobs = v.jobs ? Number(v.jobs) : undefined;
      if (jobs !== undefined && !(jobs >= 1)) throw new UserError(`--jobs ${v.jobs} is not a positive number`, "pass --jobs 1 or more");
      const { summary, report, files } = await runMatrixCommand({ plan, cells, outDir, force: Boolean(v.force), jobs });
      const t = report.totals;
      console.log(`\n${summary.ran.length} cells run, ${summary.kept.length} kept from earlier runs; ${summary.stageRuns.kernel} kernel, ${summary.stageRuns.image} CRIU+image and ${summary.stageRuns.boot} boot stages in ${summary.seconds.toFixed(0)} s`);
      console.log(`report (${report.cells.length} cells: ${t.PASS} PASS, ${t.FAIL} FAIL, ${t.ERROR} ERROR, ${t["BUILD-FAILED"]} BUILD-FAILED, ${t.SKIPPED} SKIPPED):`);
      for (const [kind, file] of Object.entries(files)) console.log(`  ${kind.padEnd(5)} ${file}`);
      for (const f of report.findings) console.log(`finding: ${f.say}`);
      return matrixExitCode(summary.cells, Boolean(v.strict));
    },
  },
  report: {
    summary: "report merge: combine cell results from several machines (or CI jobs) into one report",
    usage: "cr-guest report merge INPUT... [--out DIR] [--name NAME]",
    options: { out: { type: "string" }, name: { type: "string" } },
    help: {
      "INPUT": "cell.json files, directories holding them (any depth), or matrix.json reports",
      "--out DIR": "where matrix.json, matrix.md, matrix.html and junit.xml go (default: report)",
      "--name NAME": "the report's title (default: the matrix name of the cells)",
    },
    positionals: true,
    run: async (v, positionals) => {
      const [verb, ...inputs] = positionals;
      if (verb !== "merge") throw new UserError(`unknown report command '${verb ?? ""}'`, "use: cr-guest report merge INPUT... --out DIR");
      if (inputs.length === 0) throw new UserError("report merge needs at least one input", "pass cell.json files, directories or matrix.json files");
      const { collectCells } = await import("./matrix/cell.js");
      const { mergeCells, buildReport } = await import("./matrix/report.js");
      const { writeReports } = await import("./matrix/command.js");
      const { cells, duplicates } = mergeCells(inputs.map((i) => collectCells(i)));
      if (cells.length === 0) throw new UserError(`no cell results in ${inputs.join(", ")}`, "pass the output directories of `cr-guest matrix` (they hold cells/<id>/cell.json)");
      const report = buildReport((v.name as string | undefined) ?? cells[0].matrix, cells, { duplicates });
      const files = await writeReports((v.out as string | undefined) ?? "report", report);
      console.log(`merged ${cells.length} cells from ${inputs.length} inputs${duplicates.length ? ` (${duplicates.length} duplicates: newest kept)` : ""}`);
      for (const [kind, file] of Object.entries(files)) console.log(`  ${kind.padEnd(5)} ${file}`);
      return 0;
    },
  },
  compare: {
    summary: "compare two matrix reports: regressions, fixes, new and removed cells (exit 1 on a regression)",
    usage: "cr-guest compare OLD NEW [--markdown]",
    options: { markdown: { type: "boolean" }, json: { type: "boolean" } },
    help: {
      "OLD NEW": "matrix.json files (or directories of cell results)",
      "--markdown": "print Markdown (for a CI job summary or a pull request comment)",
      "--json": "print the comparison as JSON",
    },
    positionals: true,
    run: async (v, positionals) => {
      if (positionals.length !== 2) throw new UserError(`compare takes two reports, got ${positionals.length}`, "cr-guest compare OLD/matrix.json NEW/matrix.json");
      const { collectCells } = await import("./matrix/cell.js");
      const { compareReports, renderComparison } = await import("./matrix/report.js");
      const cmp = compareReports(collectCells(positionals[0]), collectCells(positionals[1]));
      console.log(v.json ? JSON.stringify(cmp, null, 2) : renderComparison(cmp, Boolean(v.markdown)));
      return cmp.regressions.length > 0 ? 1 : 0;
    },
  },
  config: {
    summary: "print the resolved configuration (default + --config + flags)",
    usage: "cr-guest config [--config FILE] [--set KEY=VALUE]",
    options: { ...CONFIG_OPTIONS },
    help: { ...CONFIG_HELP },
    run: async (v) => {
      console.log(JSON.stringify(configFrom(v), null, 2));
      return 0;
    },
  },
};

function commandHelp(name: string, cmd: Command): string {
  const width = Math.max(...Object.keys(cmd.help).map((k) => k.length), 6);
  return [
    `${cmd.usage}`,
    "",
    cmd.summary,
    "",
    "Options:",
    ...Object.entries({ ...cmd.help, "--help": "this help" }).map(([k, d]) => `  ${k.padEnd(width)}  ${d}`),
  ].join("\n");
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    "cr-guest: guest kernels and images in which CRIU works, for VM-based containers",
    "",
    "Usage: cr-guest <command> [options]     (cr-guest <command> --help for its options)",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`),
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    console.log(topic && COMMANDS[topic] ? commandHelp(topic, COMMANDS[topic]) : mainHelp());
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) throw new UserError(`unknown command '${name}'${didYouMean(name, Object.keys(COMMANDS))}`, `commands: ${Object.keys(COMMANDS).join(", ")}`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...cmd.options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: Boolean(cmd.positionals) });
  } catch (err) {
    throw new UserError(`${name}: ${(err as Error).message}`, `see 'cr-guest ${name} --help'`);
  }
  if (parsed.values.help) {
    console.log(commandHelp(name, cmd));
    return 0;
  }
  return cmd.run(parsed.values as Record<string, unknown>, parsed.positionals);
}

const isMain = process.argv[1] && /cli\.[tj]s$/.test(process.argv[1]);
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      if (err instanceof UserError) {
        console.error(`error: ${err.message}`);
        if (err.hint) console.error(`fix: ${err.hint}`);
        process.exit(err.exitCode);
      }
      if (err instanceof CommandError) process.exit(3);
      console.error(err);
      process.exit(70);
    },
  );
}
