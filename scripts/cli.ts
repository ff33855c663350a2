/**
 * cr-guest: one entry point for every stage. The commands (which flags each takes, their
 * old spellings), parsing, help, and how results and errors are printed. What the flags mean
 * is in cli-flags.ts; what the commands do is in commands.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import {
  FLAGS,
  flagSets,
  typedFlags,
  type FilterName,
  type Flag,
  type FlagName,
  type ParsedFlags,
} from "./cli-flags.js";
import * as cmds from "./commands.js";
import { UserError } from "./lib/errors.js";
import { REPO_ROOT } from "./lib/paths.js";
import { didYouMean } from "./lib/suggest.js";
import { interruptHandler } from "./lib/interrupt.js";

export interface Command {
  summary: string;
  usage: string;
  /** Flags that stand for config keys or options of this command. */
  flags: FlagName[];
  /** Matrix filters: repeatable, and never config keys. */
  filters?: FilterName[];
  /** Old spellings in this command, each a deprecated alias of a flag. */
  aliases?: Record<string, FlagName>;
  positionals?: { usage: string; help: string };
  /** What --json prints. */
  json?: string;
  run: (ctx: cmds.CommandContext) => Promise<number>;
}

const CONFIG: FlagName[] = ["config", "set", "cache-dir"];
const CRIU: FlagName[] = [
  "criu",
  "patch",
  "provider",
  "link",
  "guest-suite",
  "local-source",
  "criu-mirror",
  "git",
  "ref",
  "jobs",
];
const KERNEL: FlagName[] = [
  "kernel",
  "kernel-base",
  "kernel-mirror",
  "fragment-set",
  "fragment",
  "kata-fragments",
  "kata-build-type",
  "kata-confidential",
];
const AGENT: FlagName[] = ["agent", "kata-src"];
const CRIU_ALIASES = { version: "criu", suite: "guest-suite" } as const;

export const COMMANDS: Record<string, Command> = {
  kernel: {
    summary: "build (or fetch) a checkpoint/restore guest kernel and prove its config",
    usage: "cr-guest kernel [--kernel K] [--check-config | --dry-run] [--criu V] [options]",
    flags: [
      ...CONFIG,
      ...KERNEL,
      "check-config",
      "dry-run",
      "verify-config",
      "prebuilt",
      "cloud-suite",
      "boot-check",
      "criu",
      "config-out",
      "jobs",
      "json",
    ],
    aliases: { version: "kernel", base: "kernel-base", suite: "cloud-suite" },
    json: "the per-symbol verification table (requested, final, reason), the EXPERT trap, the CRIU doctor's findings (--criu) and the artifact's metadata (with --dry-run: the plan)",
    run: cmds.kernelCommand,
  },
  criu: {
    summary: "build or download a CRIU version for a guest userland (optionally patched)",
    usage:
      "cr-guest criu [--criu V] [--criu-mirror DIR | --local-source PATH | --git URL --ref REF] [--dry-run] [options]",
    flags: [...CONFIG, ...CRIU, "dry-run", "force", "kernel-config", "json"],
    aliases: { ...CRIU_ALIASES, plan: "dry-run" },
    json: "the artifact's metadata (with --dry-run: each provider's answer)",
    run: cmds.criuCommand,
  },
  doctor: {
    summary: "check a CRIU version against a kernel config and guest suite: what will fail, why, the fix",
    usage: "cr-guest doctor [--criu V] [--kernel-config FILE | --debian-kernel SUITE] [options]",
    flags: [...CONFIG, ...CRIU, ...KERNEL, "kernel-config", "debian-kernel", "json"],
    aliases: CRIU_ALIASES,
    json: "the findings",
    run: cmds.doctorCommand,
  },
  agent: {
    summary:
      "a kata-agent for the image: check and patch a Kata tree for setsid(), build it, or take a prebuilt one",
    usage: "cr-guest agent (--kata-src DIR [--check] | --agent FILE) [--dry-run] [options]",
    flags: [...CONFIG, ...AGENT, "check", "dry-run", "json"],
    json: "the agent's metadata (with --dry-run: the plan)",
    run: cmds.agentCommand,
  },
  image: {
    summary:
      "a guest image with CRIU, the kata-agent and the test runner (fresh, or from an existing Kata image)",
    usage:
      "cr-guest image [--criu V] [--image-base FILE] [--agent FILE | --kata-src DIR] [--name N] [--dry-run] [options]",
    flags: [...CONFIG, ...CRIU, ...AGENT, "image-base", "name", "dry-run", "force", "json"],
    aliases: { ...CRIU_ALIASES, base: "image-base" },
    json: "the image's metadata (with --dry-run: the plan)",
    run: async (ctx) =>
      cmds.imageCommand(
        withSets(ctx, ctx.values.name ? [`image.name=${JSON.stringify(ctx.values.name)}`] : []),
      ),
  },
  smoke: {
    summary:
      "boot the image with the kernel under QEMU: criu check, ptrace checks and dump/restore scenarios, bounded in time",
    usage: "cr-guest smoke [--criu V] [--kernel K] [--test ID [--bisect-exit]] [--dry-run] [options]",
    flags: [
      ...CONFIG,
      ...CRIU,
      ...KERNEL,
      ...AGENT,
      "image-base",
      "accel",
      "test",
      "bisect-exit",
      "dry-run",
      "force",
      "strict",
      "json",
    ],
    aliases: { ...CRIU_ALIASES, base: "image-base", "kernel-version": "kernel" },
    json: "the run: status, summary, paths and results.json (with --dry-run: the plan)",
    run: async (ctx) =>
      ctx.values.test || ctx.values["bisect-exit"]
        ? (await import("./bisect/smoke-test.js")).smokeTestCommand(ctx)
        : cmds.smokeCommand(ctx),
  },
  migrate: {
    summary:
      "a migration pair: dump in boot A (one CRIU, one kernel), restore in boot B (another), as a checkpoint moves between Kata nodes",
    usage:
      "cr-guest migrate [--from-criu A] [--to-criu B] [--from-kernel X --to-kernel Y] [--in-place] [--dry-run] [options]",
    flags: [
      ...CONFIG,
      "from-criu",
      "to-criu",
      "from-kernel",
      "to-kernel",
      "from-patch",
      "to-patch",
      "in-place",
      "criu",
      "kernel",
      "kernel-base",
      "fragment-set",
      "provider",
      "local-source",
      "criu-mirror",
      "git",
      "ref",
      "kernel-mirror",
      "jobs",
      "accel",
      "dry-run",
      "force",
      "json",
    ],
    json: "the pair: status, each case's dump and restore halves, the runs and the transfer disk (with --dry-run: the plan)",
    run: cmds.migrateCommand,
  },
  matrix: {
    summary: "run the version matrix (matrix.yaml): every cell built once per shared stage, booted, reported",
    usage:
      "cr-guest matrix [--matrix FILE] [--dry-run] [--criu V] [--kernel K] [--patches P] [--cell ID] [options]",
    flags: [
      ...CONFIG,
      "matrix",
      "local-source",
      "criu-mirror",
      "git",
      "ref",
      "kernel-mirror",
      "jobs",
      "out",
      "boots",
      "pairs",
      "force",
      "strict",
      "dry-run",
      "emit-github",
      "json",
    ],
    filters: ["criu", "kernel", "patches", "guest-suite", "cell"],
    aliases: { plan: "dry-run", suite: "guest-suite" },
    json: "the totals, each cell's status and the report files (with --dry-run: the cells)",
    run: cmds.matrixCommand,
  },
  report: {
    summary: "report merge: combine cell results from several machines (or CI jobs) into one report",
    usage: "cr-guest report merge INPUT... [--out DIR] [--name NAME]",
    flags: ["out", "name", "json"],
    positionals: {
      usage: "merge INPUT...",
      help: "cell.json files, directories holding them (any depth), or matrix.json reports",
    },
    json: "the merged totals and the report files",
    run: cmds.reportCommand,
  },
  bisect: {
    summary:
      "bisect a test's regression: bisect criu (to the first bad CRIU commit) or bisect config (to the kernel options that break it)",
    usage:
      "cr-guest bisect criu --git SOURCE --good REF --bad REF --test ID | bisect config --good A --bad B --test ID [--criu V] [--dry-run] [options]",
    flags: [
      ...CONFIG,
      ...KERNEL,
      "criu",
      "git",
      "patch",
      "link",
      "guest-suite",
      "jobs",
      "good",
      "bad",
      "test",
      "accel",
      "dry-run",
      "json",
    ],
    positionals: {
      usage: "criu|config",
      help: "what to bisect: criu (commits of --git: a URL, a checkout or a git bundle) or config (kernel options; each end a fragment set, fragment files, a Kata fragment tree or a .config, joined with '+')",
    },
    json: "for criu bisect.json (every step with its evidence, the answer), for config bisect-config.json (the symbols found, each round's answer); with --dry-run: the plan",
    run: async (ctx) => (await import("./bisect/command.js")).bisectCommand(ctx),
  },
  compare: {
    summary: "compare two matrix reports: regressions, fixes, new and removed cells (exit 1 on a regression)",
    usage: "cr-guest compare OLD NEW [--markdown]",
    flags: ["markdown", "json"],
    positionals: { usage: "OLD NEW", help: "matrix.json files (or directories of cell results)" },
    json: "the comparison",
    run: cmds.compareCommand,
  },
  ci: {
    summary:
      "CI over jobs: ci keys (the stage cache keys for the workflow), ci kernels (build the matrix's kernels once), ci cell --criu V (its cells on them), ci report (merge, baseline, summary, junit, exit code)",
    usage: `cr-guest ci ${Object.keys(cmds.CI_STEPS).join("|")} [--store DIR] [--matrix FILE] [--criu V] [--baseline PATH] [options]`,
    flags: [
      ...CONFIG,
      "matrix",
      "store",
      "baseline",
      "local-source",
      "criu-mirror",
      "git",
      "ref",
      "kernel-mirror",
      "jobs",
      "boots",
      "force",
      "json",
    ],
    filters: ["criu"],
    positionals: {
      usage: Object.keys(cmds.CI_STEPS).join("|"),
      help: "the CI step: the same command runs locally (make ci-local) and in the workflow",
    },
    json: "what the step made: the packed kernels, the cells, or the verdict and report files",
    run: cmds.ciCommand,
  },
  explain: {
    summary:
      "what the kernel requirements map says about a CRIU feature, check, start-up probe or Kconfig symbol: CRIU ranges, probes, needs, effect, sources, proof",
    usage:
      "cr-guest explain NAME [--criu V] [--json] | explain --prove [SYMBOL...] [--record] [--dry-run] [--criu V]",
    flags: [...CONFIG, "criu", "json", "prove", "record", "kept", "max-batch", "dry-run", "force"],
    positionals: {
      usage: "NAME | SYMBOL...",
      help: "a feature (uffd or feature/uffd), a check (check_fdinfo_ext or check/check_fdinfo_ext), a start-up probe (kerndat_uffd) or a Kconfig symbol (USERFAULTFD or CONFIG_USERFAULTFD); with --prove, the Kconfig symbols to prove",
    },
    json: "the entry (one per CRIU range) or, for a symbol, the entries that need it; with --prove, the proof report (batches, outcomes) or, with --dry-run, its plan",
    run: async (ctx) => (await import("./explain/command.js")).explainCommand(ctx),
  },
  config: {
    summary: "print the resolved configuration (default + --config + flags)",
    usage: "cr-guest config [--config FILE] [--set KEY=VALUE]",
    flags: [...CONFIG, "json"],
    json: "the configuration",
    run: cmds.configCommand,
  },
};

export const EXIT_CODES: [number, string][] = [
  [0, "done (for smoke and matrix: every cell ran, whatever CRIU's verdicts, unless --strict)"],
  [
    1,
    "a failure the run reports: verification failed, a build failed, a regression, a deciding test with --strict",
  ],
  [2, "bad input: the message names it and the fix"],
  [3, "an external command failed or ran past its deadline"],
  [4, "an infrastructure error: QEMU, boot timeout, kernel panic (never a CRIU result)"],
  [70, "a bug in cr-guest (printed with its stack)"],
  [130, "interrupted (SIGINT); 143: terminated (SIGTERM)"],
];

function withSets(ctx: cmds.CommandContext, extra: string[]): cmds.CommandContext {
  return { ...ctx, sets: [...ctx.sets, ...extra] };
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;
}

function flagLabel(name: FlagName): string {
  const f: Flag = FLAGS[name];
  return `${f.short ? `-${f.short}, ` : ""}--${name}${f.arg ? ` ${f.arg}` : ""}`;
}

function commandHelp(name: string, cmd: Command): string {
  const rows: [string, string][] = [
    ...(cmd.positionals ? [[cmd.positionals.usage, cmd.positionals.help] as [string, string]] : []),
    ...cmd.flags.map((f): [string, string] => [flagLabel(f), FLAGS[f].help]),
    ...(cmd.filters ?? []).map((f): [string, string] => [
      flagLabel(f),
      `only cells of this ${f === "cell" ? "id" : `${f} axis value`} (repeatable; for criu a version, 4.1 means 4.1.1)`,
    ]),
    ...Object.entries(cmd.aliases ?? {}).map(([old, now]): [string, string] => [
      `--${old}`,
      `deprecated: use --${now}`,
    ]),
    ["-h, --help", "this help"],
  ];
  const json = rows.findIndex(([k]) => k === "--json");
  if (json >= 0 && cmd.json)
    rows[json] = [
      "--json",
      `print ${cmd.json} as one JSON document on stdout (everything else goes to stderr)`,
    ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [
    cmd.usage,
    "",
    cmd.summary,
    "",
    "Options:",
    ...rows.map(([k, d]) => `  ${k.padEnd(width)}  ${d}`),
    "",
    "Exit codes:",
    ...EXIT_CODES.map(([c, d]) => `  ${String(c).padStart(3)}  ${d}`),
  ].join("\n");
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    "cr-guest: guest kernels and images in which CRIU works, for VM-based containers",
    "",
    "Usage: cr-guest <command> [options]     (cr-guest <command> --help for its options)",
    "       cr-guest --version",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`),
    "",
    "Exit codes:",
    ...EXIT_CODES.map(([c, d]) => `  ${String(c).padStart(3)}  ${d}`),
  ].join("\n");
}

/** Parses argv for one command: canonical flag names, deprecated aliases mapped (with a notice). */
export function parseCommandArgs(
  name: string,
  cmd: Command,
  args: string[],
): ParsedFlags & { help: boolean; positionals: string[]; notices: string[] } {
  const options: NonNullable<ParseArgsConfig["options"]> = { help: { type: "boolean", short: "h" } };
  for (const f of cmd.flags) {
    const flag: Flag = FLAGS[f];
    options[f] = {
      type: flag.type,
      ...(flag.multiple ? { multiple: true } : {}),
      ...(flag.short ? { short: flag.short } : {}),
    };
  }
  for (const f of cmd.filters ?? []) options[f] = { type: "string", multiple: true };
  for (const [old, now] of Object.entries(cmd.aliases ?? {})) options[old] = { ...options[now] };
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: Boolean(cmd.positionals) });
  } catch (err) {
    throw new UserError(`${name}: ${(err as Error).message}`, `see 'cr-guest ${name} --help'`);
  }
  const raw = { ...parsed.values };
  const notices: string[] = [];
  for (const [old, now] of Object.entries(cmd.aliases ?? {})) {
    if (raw[old] === undefined) continue;
    if (raw[now] !== undefined && JSON.stringify(raw[now]) !== JSON.stringify(raw[old]))
      throw new UserError(`--${old} ${raw[old]} and --${now} ${raw[now]} disagree`, `give --${now} once`);
    raw[now] = raw[old];
    delete raw[old];
    notices.push(`note: --${old} is deprecated in '${name}': use --${now}`);
  }
  const help = Boolean(raw.help);
  // --help wins over a bad argument: the parsers run only for a command that will run.
  const typed = help ? { values: {}, filters: {} } : typedFlags(raw, cmd.filters ?? []);
  return { ...typed, help, positionals: parsed.positionals, notices };
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--version" || name === "-V") {
    console.log(`cr-guest ${packageVersion()}`);
    return 0;
  }
  if (!name || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    console.log(topic && COMMANDS[topic] ? commandHelp(topic, COMMANDS[topic]) : mainHelp());
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd)
    throw new UserError(
      `unknown command '${name}'${didYouMean(name, Object.keys(COMMANDS))}`,
      `commands: ${Object.keys(COMMANDS).join(", ")}`,
    );
  const { values, filters, help, positionals, notices } = parseCommandArgs(name, cmd, rest);
  if (help) {
    console.log(commandHelp(name, cmd));
    return 0;
  }
  for (const n of notices) console.error(n);
  const json = Boolean(values.json);
  const stdout = console.log.bind(console);
  let emitted = false;
  const ctx: cmds.CommandContext = {
    values,
    filters,
    positionals,
    sets: [...(values.set ?? []), ...flagSets(values, cmd.flags)],
    json,
    say: json ? (l) => console.error(l) : (l) => stdout(l),
    emit: (doc) => {
      if (!json) return;
      if (emitted) throw new Error("a command emitted two JSON documents");
      emitted = true;
      process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    },
  };
  // With --json, stdout holds the document only: any stray console.log goes to stderr.
  if (json) console.log = (...a: unknown[]) => console.error(...a);
  try {
    return await cmd.run(ctx);
  } finally {
    console.log = stdout;
  }
}

const isMain = process.argv[1] && /cli\.[tj]s$/.test(process.argv[1]);
if (isMain) {
  interruptHandler.install();
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      if (interruptHandler.interrupted) return; // the handler exits with 130/143
      // UserError and CommandError (exit 3, its message holds the command's output tail).
      if (err instanceof UserError) {
        console.error(`error: ${err.message}`);
        if (err.hint) console.error(`fix: ${err.hint}`);
        process.exit(err.exitCode);
      }
      console.error(err);
      process.exit(70);
    },
  );
}
