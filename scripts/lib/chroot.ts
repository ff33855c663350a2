/**
 * Debian chroots for builds and guest root filesystems: a minbase bootstrap of the suite with
 * the packages included (dependencies resolved by the bootstrapper), cached per suite,
 * package set and bootstrapper. mmdebstrap by default: the same Debian minbase as debootstrap
 * from the same mirror, in half the CPU time (here: bookworm with CRIU's build deps 47 s of
 * CPU against 95 s, the trixie guest rootfs 29 s against about 50), which matters because it
 * runs beside the kernel compile and gets only the CPU the compile leaves. Both run in a
 * private mount namespace, as every command inside does (/proc and /dev mounted there), so
 * nothing stays mounted on the host when one is killed at its deadline.
 * The host's apt sources and packages are never touched.
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { ArtifactCache } from "./cache.js";
import { CommandError } from "./errors.js";
import { run, type RunResult } from "./exec.js";
import { cacheKey } from "./hash.js";
import { requireHostTools } from "./host-tools.js";

export const CHROOT_RECIPE_VERSION = 2;
const BOOTSTRAP_TIMEOUT_MS = 20 * 60_000;

export const BOOTSTRAPPERS = ["mmdebstrap", "debootstrap"] as const;
export type Bootstrapper = (typeof BOOTSTRAPPERS)[number];

/** Where chroots come from: the `debian:` section of the config. */
export interface DebianSource {
  mirror: string;
  bootstrap: Bootstrapper;
  /** debian.accept_expired_release: bootstrap from a mirror whose Release is past Valid-Until. */
  accept_expired_release?: boolean;
}

/** The apt option that accepts an expired Release; mmdebstrap keeps it in this file. */
export const ACCEPT_EXPIRED_APTOPT = 'Acquire::Check-Valid-Until "false"';
const MMDEBSTRAP_APT_CONF = "etc/apt/apt.conf.d/99mmdebstrap";

/** apt's words for a Release past its Valid-Until ("... is expired (invalid since 29d 16h)"). */
export function isExpiredReleaseError(output: string): boolean {
  return /Release file for \S+ is expired|is expired \(invalid since/.test(output);
}

export const EXPIRED_RELEASE_FIX =
  "the mirror's Release file is past its Valid-Until: use a current mirror (debian.mirror), or accept it with --set debian.accept_expired_release=true";

export interface ChrootMetadata {
  suite: string;
  packages: string[];
  mirror: string;
  bootstrap: Bootstrapper;
  bootstrap_seconds: number;
  glibc: string;
  versions: Record<string, string>;
  created: string;
}

/**
 * Not debian.accept_expired_release: it changes whether a bootstrap succeeds, never what it
 * installs (the mirror's indexes decide that), and the apt option is removed afterwards.
 */
export function chrootKey(suite: string, packages: string[], debian: DebianSource): string {
  return cacheKey({
    suite,
    packages: [...new Set(packages)].sort(),
    mirror: debian.mirror,
    bootstrap: debian.bootstrap,
    variant: "minbase",
    recipe: CHROOT_RECIPE_VERSION,
  });
}

/**
 * The bootstrap command, run in a private mount namespace: both tools mount /proc (and more)
 * inside the target while packages configure. mmdebstrap in root mode, as debootstrap runs.
 */
export function bootstrapArgs(
  suite: string,
  root: string,
  packages: string[],
  debian: DebianSource,
): string[] {
  const include = [...new Set(packages)].sort();
  const includeArg = include.length ? [`--include=${include.join(",")}`] : [];
  // debootstrap reads the Release file without checking Valid-Until: it needs no option.
  const tool =
    debian.bootstrap === "mmdebstrap"
      ? [
          "mmdebstrap",
          "--mode=root",
          "--variant=minbase",
          "--dpkgopt=force-unsafe-io",
          ...(debian.accept_expired_release ? [`--aptopt=${ACCEPT_EXPIRED_APTOPT}`] : []),
        ]
      : ["debootstrap", "--variant=minbase"];
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--fork",
    ...tool,
    ...includeArg,
    suite,
    root,
    debian.mirror,
  ];
}

/**
 * Runs `argv` inside `root`: a private mount namespace with /proc and /dev mounted, then
 * chroot. The script is fixed text; paths and argv travel as positional parameters.
 */
const ENTER =
  'set -e; root=$1; dir=$2; shift 2; mount -t proc proc "$root/proc"; mount --rbind /dev "$root/dev"; exec chroot "$root" env -C "$dir" "$@"';

export function chrootArgv(root: string, argv: string[], cwd = "/"): string[] {
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--fork",
    "sh",
    "-c",
    ENTER,
    "cr-guest-chroot",
    root,
    cwd,
    ...argv,
  ];
}

export async function runInChroot(
  root: string,
  argv: string[],
  opts: {
    timeoutMs: number;
    cwd?: string;
    env?: Record<string, string>;
    logFile?: string;
    onLine?: (l: string) => void;
    allowFailure?: boolean;
  },
): Promise<RunResult> {
  return run(chrootArgv(root, argv, opts.cwd), {
    timeoutMs: opts.timeoutMs,
    logFile: opts.logFile,
    onLine: opts.onLine,
    allowFailure: opts.allowFailure,
    env: {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      LC_ALL: "C",
      HOME: "/root",
      DEBIAN_FRONTEND: "noninteractive",
      ...opts.env,
    },
  });
}

export async function ensureChroot(opts: {
  cache: ArtifactCache;
  suite: string;
  packages: string[];
  debian: DebianSource;
  log?: (l: string) => void;
}): Promise<{ dir: string; cached: boolean; metadata: ChrootMetadata }> {
  const { debian } = opts;
  const key = chrootKey(opts.suite, opts.packages, debian);
  const art = await opts.cache.getOrBuild<ChrootMetadata>("chroots", key, async (tmp) => {
    requireHostTools(
      [debian.bootstrap, "unshare", "chroot"],
      [],
      `making a Debian chroot (debian.bootstrap: ${debian.bootstrap})`,
    );
    const root = join(tmp, "root");
    opts.log?.(`${debian.bootstrap} ${opts.suite} (${opts.packages.length} extra packages)`);
    const t0 = Date.now();
    try {
      await run(bootstrapArgs(opts.suite, root, opts.packages, debian), {
        timeoutMs: BOOTSTRAP_TIMEOUT_MS,
        logFile: join(tmp, `${debian.bootstrap}.log`),
        onLine: opts.log,
      });
    } catch (err) {
      throw withExpiredReleaseFix(err, debian);
    }
    const seconds = (Date.now() - t0) / 1000;
    await dropBootstrapAptOptions(root, debian);
    const query = await runInChroot(root, ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"], {
      timeoutMs: 60_000,
    });
    const versions = Object.fromEntries(
      query.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(" ") as [string, string]),
    );
    // Package caches are not part of the artifact.
    await run(["rm", "-rf", join(root, "var/cache/apt/archives"), join(root, "var/lib/apt/lists")], {
      timeoutMs: 60_000,
    });
    return {
      suite: opts.suite,
      packages: [...new Set(opts.packages)].sort(),
      mirror: debian.mirror,
      bootstrap: debian.bootstrap,
      bootstrap_seconds: seconds,
      glibc: versions.libc6 ?? "?",
      versions,
      created: new Date().toISOString(),
    };
  });
  const dir = join(art.dir, "root");
  if (!existsSync(join(dir, "bin"))) throw new Error(`chroot ${dir} is incomplete`);
  return { dir, cached: art.cached, metadata: art.metadata };
}

/**
 * mmdebstrap keeps --aptopt in the chroot (etc/apt/apt.conf.d/99mmdebstrap, written only when
 * options are given): removed, so the chroot (and an image made of it) is what it is without
 * debian.accept_expired_release, and apt in it never accepts an expired Release.
 */
export async function dropBootstrapAptOptions(root: string, debian: DebianSource): Promise<void> {
  if (debian.bootstrap === "mmdebstrap" && debian.accept_expired_release)
    await rm(join(root, MMDEBSTRAP_APT_CONF), { force: true });
}

/** A bootstrap that failed on an expired Release says which setting accepts it. */
export function withExpiredReleaseFix(err: unknown, debian: DebianSource): unknown {
  if (!(err instanceof CommandError) || debian.accept_expired_release || !isExpiredReleaseError(err.output))
    return err;
  return new CommandError(err.message, err.argv, err.code, err.timedOut, err.output, EXPIRED_RELEASE_FIX);
}
