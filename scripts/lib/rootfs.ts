/**
 * Guest root filesystems: a minbase bootstrap (debian.bootstrap) of the guest suite with what the tests need
 * and CRIU's runtime packages. The same chroot serves as the place where a CRIU binary proves
 * it starts in that userland (`criu --version`) and as the content of a fresh image, so one
 * bootstrap per suite and package set does both.
 */
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { ArtifactCache } from "./cache.js";
import { ensureChroot, runInChroot, type ChrootMetadata, type DebianSource } from "./chroot.js";

/**
 * Always in a guest: strace and procps for the ptrace checks and hang diagnostics,
 * util-linux for setsid/unshare/nsenter, iproute2 for `lo`, iptables for CRIU's network lock
 * (--tcp-established), kmod for modules, systemd so the kata-agent unit means what it does
 * in a Kata image.
 */
export const GUEST_BASE_PACKAGES = [
  "strace",
  "procps",
  "util-linux",
  "iproute2",
  "iptables",
  "kmod",
  "systemd",
];

export function guestPackages(runtimePackages: string[], extra: string[] = []): string[] {
  return [...new Set([...GUEST_BASE_PACKAGES, ...runtimePackages, ...extra])].sort();
}

export async function ensureGuestRootfs(opts: {
  cache: ArtifactCache;
  suite: string;
  runtimePackages: string[];
  extraPackages?: string[];
  debian: DebianSource;
  log?: (l: string) => void;
}): Promise<{ dir: string; cached: boolean; metadata: ChrootMetadata }> {
  return ensureChroot({
    cache: opts.cache,
    suite: opts.suite,
    packages: guestPackages(opts.runtimePackages, opts.extraPackages),
    debian: opts.debian,
    log: opts.log,
  });
}

/**
 * `criu --version` of a binary inside a chroot. The binary is copied to a unique path under
 * /tmp and removed afterwards: cached chroots are shared and must stay as the bootstrap left them.
 */
export async function criuVersionIn(chrootDir: string, binary: string, timeoutMs = 60_000): Promise<string> {
  const name = `/tmp/cr-guest-criu-${randomBytes(4).toString("hex")}`;
  const inside = join(chrootDir, name);
  await copyFile(binary, inside);
  await chmod(inside, 0o755);
  try {
    const out = await runInChroot(chrootDir, [name, "--version"], { timeoutMs });
    return out.stdout.trim();
  } finally {
    await rm(inside, { force: true });
  }
}

/** `ldd` lines -> library names and resolved paths (absolute in the chroot; the vdso has none). */
export function parseLdd(text: string): { name: string; path: string }[] {
  const out: { name: string; path: string }[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*(\S+)\s+=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) out.push({ name: m[1].split("/").pop()!, path: m[2] ?? m[1] });
  }
  return out;
}

/** The wrapper runs strace through the bundled loader, so the guest's own libc never matters. */
export const STRACE_WRAPPER = `#!/bin/sh
# strace with its own libraries (cr-guest bundle for images that lack strace).
here=$(dirname "$0")
exec "$here/ld-linux-x86-64.so.2" --library-path "$here" "$here/strace.bin" "$@"
`;

/**
 * strace and every library it loads, copied out of a chroot, plus a wrapper: a strace that
 * runs in any x86_64 guest userland, for existing images that have none.
 */
export async function bundleStrace(
  chrootDir: string,
  outDir: string,
): Promise<{ dir: string; files: string[] }> {
  await mkdir(outDir, { recursive: true });
  const ldd = await runInChroot(chrootDir, ["ldd", "/usr/bin/strace"], { timeoutMs: 30_000 });
  const libs = parseLdd(ldd.stdout).map((l) => l.path);
  // Resolved inside the chroot: an absolute symlink followed on the host would reach the host's file.
  const real = (await runInChroot(chrootDir, ["readlink", "-f", ...libs], { timeoutMs: 30_000 })).stdout
    .trim()
    .split("\n");
  const files: string[] = [];
  for (const [i, lib] of libs.entries()) {
    const name = basename(lib);
    await copyFile(join(chrootDir, real[i]), join(outDir, name));
    files.push(name);
  }
  if (!files.includes("ld-linux-x86-64.so.2"))
    throw new Error(`ldd of strace named no loader:\n${ldd.stdout}`);
  await copyFile(join(chrootDir, "usr/bin/strace"), join(outDir, "strace.bin"));
  await writeFile(join(outDir, "strace"), STRACE_WRAPPER, { mode: 0o755 });
  return { dir: outDir, files: [...files, "strace.bin", "strace"] };
}
