/**
 * Every command-line flag, once: its meaning, its argument, and the config keys it sets. The
 * parser options and `--help` are generated from this table, so a name means one thing in
 * every command. Old spellings are per-command aliases that print a deprecation notice.
 */
import { UserError } from "./lib/errors.js";

export interface Flag {
  type: "string" | "boolean";
  /** Repeatable (a list). Commands may make a flag repeatable (matrix filters). */
  multiple?: boolean;
  short?: string;
  /** The argument's name in --help. */
  arg?: string;
  help: string;
  /**
   * The value a command gets from the argument, checked once for every command that takes the
   * flag (a bad one is refused at parse time, exit 2, naming the flag and the fix).
   */
  parse?: (value: string, name: string) => unknown;
  /** The pipeline config overrides (`--set` form) this flag stands for. */
  sets?: (value: never) => string[];
}

const j = (v: unknown) => JSON.stringify(v);

/** A count such as --jobs or --boots: a whole number of at least 1. */
export function positiveInt(v: string, flag: string): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1)
    throw new UserError(`--${flag} ${v} is not a positive whole number`, `pass --${flag} 1 or more`);
  return n;
}

export const FLAGS = {
  config: { type: "string", arg: "FILE", help: "a pipeline.yaml on top of the embedded default" },
  set: {
    type: "string",
    multiple: true,
    arg: "KEY=VALUE",
    help: "override one config key, e.g. --set kernel.base=tinyconfig (repeatable)",
  },
  "cache-dir": {
    type: "string",
    arg: "DIR",
    help: "where artifacts are cached (default: images/)",
    sets: (v: string) => [`cache_dir=${j(v)}`],
  },
  json: { type: "boolean", help: "print one JSON document on stdout (everything else goes to stderr)" },
  "dry-run": { type: "boolean", help: "resolve and plan, build nothing" },
  prove: {
    type: "boolean",
    help: "prove the kernel requirements map by experiment: the default kernel built again without each SYMBOL given (default: every symbol the map names that the default kernel has), booted beside it; exactly the predicted checks and features must fail",
  },
  record: {
    type: "boolean",
    help: "with --prove: write each outcome into criu-builds/kernel-proofs.yaml, the proven entries of criu-builds/kernel-requirements.yaml and docs/kernel-proofs.md",
  },
  kept: {
    type: "boolean",
    help: "with --prove: judge (and with --record, record) only the outcomes the cache keeps, with the current map; build and boot nothing",
  },
  "max-batch": {
    type: "string",
    arg: "N",
    help: "with --prove: at most N symbols off in one kernel variant (default 6; symbols batch only when their predicted failures are disjoint)",
    parse: positiveInt,
  },
  force: {
    type: "boolean",
    help: "build or run again even when a cached result exists, or despite a predicted failure",
  },
  jobs: {
    type: "string",
    short: "j",
    arg: "N",
    help: "parallel make jobs for kernel and CRIU builds (default: number of CPUs)",
    parse: positiveInt,
    sets: (v: number) => [`kernel.jobs=${v}`, `criu.jobs=${v}`],
  },

  // CRIU
  criu: {
    type: "string",
    arg: "V",
    help: "the CRIU version: 3.17.1, 3.19, 4.1 (newest 4.1.x), 4.2.1, latest",
    sets: (v: string) => [`criu.version=${j(v)}`],
  },
  patch: {
    type: "string",
    multiple: true,
    arg: "NAME",
    help: "apply a patch from criu-builds/patches (repeatable), e.g. membarrier-probe-nonfatal",
    sets: (v: string[]) => [`criu.patches=${j(v)}`],
  },
  provider: {
    type: "string",
    multiple: true,
    arg: "P",
    help: "use only these CRIU providers, in this order (repeatable): local-source, git, local-mirror, debian-source, upstream, debian-binary",
    sets: (v: string[]) => [`criu.providers=${j(v)}`],
  },
  link: {
    type: "string",
    arg: "MODE",
    help: "static (default: only libc dynamic, runs in every suite) or dynamic",
    sets: (v: string) => [`criu.link=${j(v)}`],
  },
  "guest-suite": {
    type: "string",
    arg: "S",
    help: "the guest userland suite (bookworm, trixie, sid; default: criu.static_guest_suite (trixie) for a static build, else the CRIU version's min_suite)",
    sets: (v: string) => [`criu.guest_suite=${j(v)}`],
  },
  "local-source": {
    type: "string",
    arg: "PATH",
    help: "a CRIU source directory, git checkout (tracked files, commit recorded) or tarball",
    sets: (v: string) => [`criu.local_source=${j(v)}`],
  },
  "criu-mirror": {
    type: "string",
    arg: "DIR",
    help: "a directory of CRIU tarballs (criu-X.tar.gz, vX.tar.gz, criu_X.orig.tar.xz), checked against the pins",
    sets: (v: string) => [`criu.local_mirror=${j(v)}`],
  },
  git: {
    type: "string",
    arg: "URL",
    help: "build a CRIU git commit (with --ref): fetched into the cache and recorded",
  },
  ref: { type: "string", arg: "REF", help: "the branch, tag or commit of --git (e.g. criu-dev)" },

  // migration pairs
  "from-criu": { type: "string", arg: "V", help: "migrate: the CRIU that dumps (default: criu.version)" },
  "to-criu": { type: "string", arg: "V", help: "migrate: the CRIU that restores (default: the dumping one)" },
  "from-kernel": {
    type: "string",
    arg: "K",
    help: "migrate: the kernel of boot A, which dumps (default: kernel.version)",
  },
  "to-kernel": {
    type: "string",
    arg: "K",
    help: "migrate: the kernel of boot B, which restores (default: boot A's)",
  },
  "from-patch": {
    type: "string",
    multiple: true,
    arg: "NAME",
    help: "migrate: a patch of the dumping CRIU (repeatable)",
  },
  "to-patch": {
    type: "string",
    multiple: true,
    arg: "NAME",
    help: "migrate: a patch of the restoring CRIU (repeatable)",
  },
  pairs: {
    type: "boolean",
    help: "matrix: run only its migration pairs (matrix.yaml `migrate:`); without filters a matrix runs its cells, then its pairs",
  },
  "in-place": {
    type: "boolean",
    help: "migrate: one boot, one image with both CRIUs: dump with one, restore with the other (an upgrade inside the guest)",
  },

  // kernel
  kernel: {
    type: "string",
    arg: "K",
    help: "the kernel version: 6.12 (newest pinned 6.12.x), 6.1, 6.12.107, latest",
    sets: (v: string) => [`kernel.version=${j(v)}`],
  },
  "kernel-base": {
    type: "string",
    arg: "MODE",
    help: "allnoconfig (default, Kata's method), tinyconfig, defconfig (+ kvm_guest.config)",
    sets: (v: string) => [`kernel.base=${j(v)}`],
  },
  "kernel-mirror": {
    type: "string",
    arg: "DIR",
    help: "a directory holding linux-X.tar.xz or linux_X.orig.tar.xz",
    sets: (v: string) => [`kernel.local_mirror=${j(v)}`],
  },
  "fragment-set": {
    type: "string",
    arg: "NAME",
    help: "a kernel fragment set from the config (default, debug, minimal)",
    sets: (v: string) => [`kernel.fragment_set=${j(v)}`],
  },
  "kata-fragments": {
    type: "string",
    arg: "DIR",
    help: "a Kata fragments tree (tools/packaging/kernel/configs/fragments) instead of the fragment set; its whitelist.conf is honoured",
    sets: (v: string) => [`kernel.kata_fragments=${j(v)}`],
  },
  "kata-build-type": {
    type: "string",
    arg: "T",
    help: "also the Kata tree's build-type/T/ fragments",
    sets: (v: string) => [`kernel.kata_build_type=${j(v)}`],
  },
  "kata-confidential": {
    type: "boolean",
    help: "keep the Kata tree's !confidential fragments",
    sets: () => ["kernel.kata_confidential=true"],
  },
  fragment: {
    type: "string",
    multiple: true,
    arg: "FILE",
    help: "one more kernel fragment on top of the set (repeatable)",
  },
  "check-config": {
    type: "boolean",
    help: "configure and verify the kernel config for real, no build (seconds once the source is cached)",
  },
  "config-out": {
    type: "string",
    arg: "FILE",
    help: "keep the final kernel .config in FILE (also for --check-config)",
  },
  "verify-config": {
    type: "string",
    arg: "FILE",
    help: "verify an existing .config against the fragments (no source needed)",
  },
  prebuilt: {
    type: "boolean",
    help: "take Debian's cloud kernel (kernel.kind=debian-cloud) and verify it",
    sets: () => ["kernel.kind=debian-cloud"],
  },
  "cloud-suite": {
    type: "string",
    arg: "S",
    help: "the Debian suite of --prebuilt's cloud kernel (default trixie)",
    sets: (v: string) => [`kernel.debian_cloud_suite=${j(v)}`],
  },
  "boot-check": {
    type: "boolean",
    help: "boot the built kernel under QEMU and check /proc/config.gz in the guest",
  },
  "kernel-config": { type: "string", arg: "FILE", help: "check CRIU against this kernel .config" },
  "debian-kernel": {
    type: "string",
    arg: "SUITE",
    help: "check CRIU against Debian's cloud kernel of that suite",
  },

  // image, agent, boot
  "image-base": {
    type: "string",
    arg: "FILE",
    help: "an existing raw Kata image to add CRIU to (copied; the original is never changed)",
    sets: (v: string) => [`image.base=${j(v)}`],
  },
  name: {
    type: "string",
    arg: "N",
    help: "the image is images/<N>.img (default cr-guest); for report merge: the report's title",
  },
  agent: {
    type: "string",
    arg: "FILE",
    help: "a prebuilt kata-agent binary",
    sets: (v: string) => [`agent.binary=${j(v)}`],
  },
  "kata-src": {
    type: "string",
    arg: "DIR",
    help: "a kata-containers tree: patched for setsid() (on a copy) and built with its musl target",
    sets: (v: string) => [`agent.kata_src=${j(v)}`],
  },
  check: {
    type: "boolean",
    help: "only say whether the Kata tree calls setsid() for every container process and which patch applies",
  },
  accel: {
    type: "string",
    arg: "A",
    help: "auto (KVM only if a probe boot works), kvm or tcg",
    sets: (v: string) => [`boot.accel=${j(v)}`],
  },
  test: {
    type: "string",
    arg: "ID",
    help: "run one test and the gate it needs: a test id (criu-check, feature/uffd, pidns-init/setsid) or a scenario (all its cases)",
  },
  good: {
    type: "string",
    arg: "X",
    help: "bisect: the good end (criu: a ref that passes; config: a .config, fragment file, fragment set or Kata fragment tree)",
  },
  bad: {
    type: "string",
    arg: "X",
    help: "bisect: the bad end (criu: a later ref that fails; config: the config in which the test fails)",
  },
  "bisect-exit": {
    type: "boolean",
    help: "with --test: exit as `git bisect run` expects, on the test's raw status: 0 PASS, 1 FAIL, 125 cannot be tested (CRIU or the image does not build, the test SKIPped), 128 an infrastructure error after the retry",
  },
  strict: {
    type: "boolean",
    help: "exit 1 when a deciding test fails unexpectedly (criu check --all, --feature, observing cases and failures the doctor predicted never decide)",
  },

  // matrix, report
  matrix: { type: "string", arg: "FILE", help: "the matrix (default: matrix.yaml)" },
  patches: {
    type: "string",
    arg: "P",
    help: "only cells of this patch axis value, e.g. unpatched (repeatable)",
  },
  cell: { type: "string", arg: "ID", help: "only this cell (repeatable)" },
  out: { type: "string", arg: "DIR", help: "where results and reports go" },
  store: {
    type: "string",
    arg: "DIR",
    help: "the directory standing for CI's artifact store: kernels/, cells-<V>/, report/ (default: ci-store)",
  },
  baseline: {
    type: "string",
    arg: "PATH",
    help: "the report to compare with (matrix.json or a directory of cells); on GitHub, the last successful run of main's matrix-report by default",
  },
  boots: {
    type: "string",
    arg: "N",
    help: "guest boots at once (default: as many as the cores allow)",
    parse: positiveInt,
  },
  "emit-github": {
    type: "boolean",
    help: "deprecated: the workflow (.github/workflows/cr-guest-matrix.yml) is checked in and reads matrix.yaml at run time; says so, writes nothing",
  },
  markdown: { type: "boolean", help: "print Markdown (for a CI job summary or a pull request comment)" },
} satisfies Record<string, Flag>;

export type FlagName = keyof typeof FLAGS;

/** The value of one flag: what its parser returns, else its argument (a list when repeatable). */
type ValueOf<F> = F extends { type: "boolean" }
  ? boolean
  : F extends { parse: (value: string, name: string) => infer T }
    ? F extends { multiple: true }
      ? T[]
      : T
    : F extends { multiple: true }
      ? string[]
      : string;

/** The flags given on a command line, each typed from its row of FLAGS; absent when not given. */
export type FlagValues = { [K in FlagName]?: ValueOf<(typeof FLAGS)[K]> };

/** The matrix filters: flags a command makes repeatable to pick cells, never config keys. */
export type FilterName = "criu" | "kernel" | "patches" | "guest-suite" | "cell";
export type FilterValues = { [K in FilterName]?: string[] };

/** What the command line says, parsed: each flag by its canonical name, the filters apart. */
export interface ParsedFlags {
  values: FlagValues;
  filters: FilterValues;
}

/**
 * Turns node's parseArgs values (already checked against the command's option table) into
 * typed flag values: each flag's parser runs here, once, so every command that takes a flag
 * refuses the same bad argument with the same message.
 */
export function typedFlags(
  raw: Record<string, string | boolean | (string | boolean)[] | undefined>,
  filterNames: readonly FilterName[],
): ParsedFlags {
  const values: Record<string, unknown> = {};
  const filters: FilterValues = {};
  for (const [name, v] of Object.entries(raw)) {
    if (v === undefined || name === "help") continue;
    if ((filterNames as readonly string[]).includes(name)) {
      filters[name as FilterName] = (Array.isArray(v) ? v : [v]).map(String);
      continue;
    }
    if (!(name in FLAGS)) throw new Error(`parseArgs gave '${name}', which is no flag of FLAGS`);
    const flag: Flag = FLAGS[name as FlagName];
    if (flag.type === "boolean" || !flag.parse) values[name] = v;
    else {
      const parse = flag.parse;
      values[name] = Array.isArray(v) ? v.map((x) => parse(String(x), name)) : parse(String(v), name);
    }
  }
  // The shapes follow FLAGS: parseArgs took each flag with its own type and multiplicity.
  return { values: values as FlagValues, filters };
}

/** The config overrides the given flag values stand for, in table order. */
export function flagSets(values: FlagValues, names: readonly FlagName[]): string[] {
  const sets: string[] = [];
  for (const name of names) {
    const flag: Flag = FLAGS[name];
    const v = values[name];
    if (v === undefined || v === false || !flag.sets) continue;
    // Each row's `sets` takes the type its own parse (or argument) gives: ValueOf of that row.
    sets.push(...flag.sets(v as never));
  }
  // A CRIU source given without a version: build the version the source declares.
  if (!values.criu && (values["local-source"] || values.git) && names.includes("criu"))
    sets.push(`criu.version=""`);
  if (values.ref && !values.git)
    throw new UserError("--ref without --git", "give the repository: --git URL --ref REF");
  if (values.git) sets.push(`criu.git={url: ${j(values.git)}, ref: ${j(values.ref ?? "")}}`);
  return sets;
}
