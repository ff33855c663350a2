/**
 * Debian chroots for builds and guest root filesystems: `debootstrap --variant=minbase` with
 * the packages included (debootstrap resolves their dependencies), cached per suite and
 * package set. Commands run inside with /proc and /dev mounted in a private mount namespace,
 * so nothing leaks into the host even when a command is killed at its deadline.
 * The host's apt sources and packages are never touched.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ArtifactCache } from "./cache.js";
import { run, type RunResult } from "./exec.js";
import { cacheKey } from "./hash.js";
import { requireHostTools } from "./host-tools.js";

export const CHROOT_RECIPE_VERSION = 1;
const DEBOOTSTRAP_TIMEOUT_MS = 20 * 60_000;

export interface ChrootMetadata {
  suite: string;
  packages: string[];
  mirror: string;
  debootstrap_seconds: number;
  glibc: string;
  versions: Record<string, string>;
  created: string;
}

export function chrootKey(suite: string, packages: string[], mirror: string): string {
  return cacheKey({ suite, packages: [...new Set(packages)].sort(), mirror, variant: "minbase", recipe: CHROOT_RECIPE_VERSION });
}

export function debootstrapArgs(suite: string, root: string, packages: string[], mirror: string): string[] {
  const include = [...new Set(packages)].sort();
  return ["debootstrap", "--variant=minbase", ...(include.length ? [`--include=${include.join(",")}`] : []), suite, root, mirror];
}

/**
 * Runs `argv` inside `root`: a private mount namespace with /proc and /dev mounted, then
 * chroot. The script is fixed text; paths and argv travel as positional parameters.
 */
const ENTER = 'set -e; root=$1; dir=$2; shift 2; mount -t proc proc "$root/proc"; mount --rbind /dev "$root/dev"; exec chroot "$root" env -C "$dir" "$@"';

export function chrootArgv(root: string, argv: string[], cwd = "/"): string[] {
  return ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", ENTER, "cr-guest-chroot", root, cwd, ...argv];
}

export async function runInChroot(
  root: string,
  argv: string[],
  opts: { timeoutMs: number; cwd?: string; env?: Record<string, string>; logFile?: string; onLine?: (l: string) => void; allowFailure?: boolean },
): Promise<RunResult> {
  return run(chrootArgv(root, argv, opts.cwd), {
    timeoutMs: opts.timeoutMs,
    logFile: opts.logFile,
    onLine: opts.onLine,
    allowFailure: opts.allowFailure,
    env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C", HOME: "/root", DEBIAN_FRONTEND: "noninteractive", ...opts.env },
  });
}

export async function ensureChroot(opts: { cache: ArtifactCache; suite: string; packages: string[]; mirror: string; log?: (l: string) => void }): Promise<{ dir: string; cached: boolean; metadata: ChrootMetadata }> {
  const key = chrootKey(opts.suite, opts.packages, opts.mirror);
  const art = await opts.cache.getOrBuild<ChrootMetadata>("chroots", key, async (tmp) => {
    requireHostTools(["debootstrap", "unshare", "chroot"], [], "making a Debian chroot");
    const root = join(tmp, "root");
    opts.log?.(`debootstrap ${opts.suite} (${opts.packages.length} extra packages)`);
    const t0 = Date.now();
    await run(debootstrapArgs(opts.suite, root, opts.packages, opts.mirror), { timeoutMs: DEBOOTSTRAP_TIMEOUT_MS, logFile: join(tmp, "debootstrap.log"), onLine: opts.log });
    const seconds = (Date.now() - t0) / 1000;
    const query = await runInChroot(root, ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"], { timeoutMs: 60_000 });
    const versions = Object.fromEntries(query.stdout.trim().split("\n").map((l) => l.split(" ") as [string, string]));
    // Package caches are not part of the artifact.
    await run(["rm", "-rf", join(root, "var/cache/apt/archives"), join(root, "var/lib/apt/lists")], { timeoutMs: 60_000 });
    return {
      suite: opts.suite,
      packages: [...new Set(opts.packages)].sort(),
      mirror: opts.mirror,
      debootstrap_seconds: seconds,
      glibc: versions.libc6 ?? "?",
      versions,
      created: new Date().toISOString(),
    };
  });
  const dir = join(art.dir, "root");
  if (!existsSync(join(dir, "bin"))) throw new Error(`chroot ${dir} is incomplete`);
  return { dir, cached: art.cached, metadata: art.metadata };
}
