/**
 * Building CRIU inside a Debian chroot. Two link modes:
 *  - static ("mostly static"): protobuf-c, nl-3, net, uuid, bsd (+ md) come from their .a
 *    files, gnutls and nftables are left out, only glibc stays dynamic. Built in the oldest
 *    supported suite, one binary runs in every guest suite. Lost: TLS for the page server and
 *    the nftables network lock (iptables still works).
 *  - dynamic: built in the guest's own suite with every feature.
 * Only `make criu` runs: compel, the parasite and criu/criu; no docs, no plugins.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import semver from "semver";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { runInChroot } from "../lib/chroot.js";
import { parseLdd } from "../lib/rootfs.js";
import { semverOf } from "../data/criu-catalog.js";

export type LinkMode = "static" | "dynamic";

const COMMON_DEPS = [
  "gcc",
  "make",
  "libc6-dev",
  "pkg-config",
  "python3",
  "python3-protobuf",
  "protobuf-c-compiler",
  "protobuf-compiler",
  "libprotobuf-dev",
  "libprotobuf-c-dev",
  "libnl-3-dev",
  "libnet1-dev",
  "libcap-dev",
  "libbsd-dev",
  "libmd-dev",
  "uuid-dev",
];

/** Build dependencies per link mode: the static chroot lacks gnutls and nftables on purpose. */
export function criuBuildDeps(mode: LinkMode): string[] {
  return mode === "static" ? COMMON_DEPS : [...COMMON_DEPS, "libgnutls28-dev", "libnftables-dev"];
}

/**
 * The build conditions of the kernel requirements map that a binary meets. libnftables: a
 * dynamic build installs libnftables-dev (criuBuildDeps), and Debian's binary is taken to be
 * linked with it; the static build leaves it out ("Building without nftables support" in its
 * log). compat: CRIU's Makefile.config turns CONFIG_COMPAT on when the compiler assembles its
 * x86 compat test (.code32 code, no -m32), which an amd64 gcc does without multilib: every
 * build here has it (its log compiles sigaction_compat_pie.o), Debian's is taken to as well.
 */
export function buildConditionsOf(
  kind: "static" | "dynamic" | "debian-binary",
): ("libnftables" | "compat")[] {
  return kind === "static" ? ["compat"] : ["libnftables", "compat"];
}

/** Static archives linked in place of their shared libraries (a -L directory holding only .a). */
export const STATIC_LIBS = ["protobuf-c", "nl-3", "net", "uuid"];

/**
 * The environment and make arguments for a build. LDFLAGS goes through the environment: on the
 * make command line it would also reach the parasite link and break it.
 */
export function buildFlags(
  mode: LinkMode,
  version: string,
  gccMajor: number,
): { env: Record<string, string>; makeArgs: string[] } {
  const v = semverOf(version);
  const makeArgs: string[] = [];
  const ld: string[] = [];
  if (mode === "static") {
    makeArgs.push("NO_GNUTLS=1");
    ld.push("-L/cr-guest-static");
  }
  // 3.17.1's libnetlink.c duplicates nla_get_s32 from libnl: only a static link sees both.
  // Written as gcc's own `-z muldefs`: CRIU's nmk build.mk filters `-Wl,%` out of LDFLAGS.
  if (mode === "static" && semver.lt(v, "3.18.0")) ld.push("-z", "muldefs");
  if (gccMajor >= 14 && semver.lt(v, "3.18.0")) makeArgs.push("WERROR=0");
  return { env: ld.length ? { LDFLAGS: ld.join(" ") } : {}, makeArgs };
}

async function prepareStaticLibDir(chrootDir: string): Promise<void> {
  const dir = join(chrootDir, "cr-guest-static");
  await mkdir(dir, { recursive: true });
  const libdir = "/usr/lib/x86_64-linux-gnu";
  for (const lib of STATIC_LIBS) {
    const a = join(chrootDir, libdir, `lib${lib}.a`);
    if (!existsSync(a))
      throw new UserError(
        `lib${lib}.a is missing in the build chroot`,
        "the static build needs the -dev package that ships it",
      );
    await run(["ln", "-sf", `${libdir}/lib${lib}.a`, join(dir, `lib${lib}.a`)], { timeoutMs: 10_000 });
  }
  // libbsd.a needs libmd after it: a linker script stands in for the archive (as libc.so does).
  await writeFile(join(dir, "libbsd.a"), `GROUP ( ${libdir}/libbsd.a ${libdir}/libmd.a )\n`);
}

export interface CriuBuild {
  binary: string;
  seconds: number;
  versionOutput: string;
  neededLibs: string[];
  runtimePackages: string[];
}

export async function buildCriuInChroot(opts: {
  chrootDir: string;
  sourceDir: string;
  linkMode: LinkMode;
  version: string;
  jobs: number;
  logFile: string;
  timeoutMs: number;
  onLine?: (l: string) => void;
}): Promise<CriuBuild> {
  const inside = `/build/criu-${opts.version}`;
  const target = join(opts.chrootDir, inside);
  await run(["rm", "-rf", target], { timeoutMs: 60_000 });
  await mkdir(join(opts.chrootDir, "build"), { recursive: true });
  await run(["cp", "-a", opts.sourceDir, target], { timeoutMs: 5 * 60_000 });
  if (opts.linkMode === "static") await prepareStaticLibDir(opts.chrootDir);
  const gcc = await runInChroot(opts.chrootDir, ["gcc", "-dumpversion"], { timeoutMs: 30_000 });
  const { env, makeArgs } = buildFlags(opts.linkMode, opts.version, Number(gcc.stdout.trim().split(".")[0]));
  const t0 = Date.now();
  await runInChroot(opts.chrootDir, ["make", `-j${opts.jobs}`, ...makeArgs, "criu"], {
    cwd: inside,
    env,
    timeoutMs: opts.timeoutMs,
    logFile: opts.logFile,
    onLine: opts.onLine,
  });
  const seconds = (Date.now() - t0) / 1000;
  await runInChroot(opts.chrootDir, ["strip", "criu/criu"], { cwd: inside, timeoutMs: 60_000 });
  const version = await runInChroot(opts.chrootDir, [`${inside}/criu/criu`, "--version"], {
    timeoutMs: 60_000,
  });
  const ldd = await runInChroot(opts.chrootDir, ["ldd", `${inside}/criu/criu`], { timeoutMs: 60_000 });
  const libs = parseLdd(ldd.stdout);
  const runtimePackages: string[] = [];
  if (opts.linkMode === "dynamic")
    for (const lib of libs) {
      const owner = await runInChroot(
        opts.chrootDir,
        ["dpkg", "-S", lib.path.replace(/^\/lib\//, "/usr/lib/")],
        { timeoutMs: 30_000, allowFailure: true },
      );
      const fallback =
        owner.exitCode === 0
          ? owner
          : await runInChroot(opts.chrootDir, ["dpkg", "-S", lib.path], {
              timeoutMs: 30_000,
              allowFailure: true,
            });
      const pkg = fallback.stdout.split(":")[0].trim();
      if (fallback.exitCode === 0 && pkg && !runtimePackages.includes(pkg)) runtimePackages.push(pkg);
    }
  return {
    binary: join(target, "criu/criu"),
    seconds,
    versionOutput: version.stdout.trim(),
    neededLibs: libs.map((l) => l.name),
    runtimePackages,
  };
}
