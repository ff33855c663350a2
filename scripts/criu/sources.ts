/**
 * Where a CRIU comes from. Source providers yield an unpacked tree (to build), the binary
 * provider a ready `criu` plus the runtime packages it needs. Each provider can name its
 * identity without network (pins, versions), so a cached artifact is found before any download.
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { createHash } from "node:crypto";
import type { CriuProvider } from "../lib/config.js";
import { loadSuiteIndex } from "../lib/debian-mirror.js";
import { NotAvailableError, download } from "../lib/download.js";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import type { CriuVersionEntry } from "./catalog.js";

export interface CriuOrigin {
  provider: CriuProvider;
  /** What identifies the input: a pinned sha256, a Debian package version, a git commit. */
  identity: string;
  /** Human-readable: the tarball, package or directory. */
  from: string;
  /** Debian quilt patches applied from the package's debian.tar.xz. */
  debianPatches?: string[];
}

export interface ProviderContext {
  cacheRoot: string;
  mirror: string;
  localSource: string;
  log: (line: string) => void;
}

const DOWNLOAD_TIMEOUT_MS = 10 * 60_000;

/** The identity a provider would give this version, without network; undefined if it cannot serve it. */
export function providerIdentity(provider: CriuProvider, entry: CriuVersionEntry, ctx: ProviderContext): string | undefined {
  switch (provider) {
    case "upstream":
      return entry.upstream?.sha256;
    case "debian-source":
      return entry.debian ? `${entry.debian.version}:${entry.debian.orig_sha256}` : undefined;
    case "debian-binary":
      return entry.binary ? `${entry.binary.suite}:${entry.binary.version}` : undefined;
    case "local-source":
      // A tree of another version is no source for this one (the plan says so; a matrix
      // gives one tree to every cell).
      return ctx.localSource && localSourceVersion(ctx.localSource) === entry.version ? localSourceIdentity(ctx.localSource) : undefined;
  }
}

/** A local tree is identified by its content: every regular file outside .git, hashed. */
export function localSourceIdentity(dir: string): string {
  if (!existsSync(join(dir, "Makefile.versions")))
    throw new UserError(`criu.local_source ${dir} is not a CRIU source tree (no Makefile.versions)`, "point it at the top of a CRIU checkout");
  const hash = createHash("sha256");
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      if (name === ".git") continue;
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) hash.update(relative(dir, p)).update("\0").update(readFileSync(p));
    }
  };
  walk(dir);
  return `tree:${hash.digest("hex")}`;
}

/** CRIU's own idea of its version, from Makefile.versions. */
export function localSourceVersion(dir: string): string {
  const text = readFileSync(join(dir, "Makefile.versions"), "utf8");
  const get = (k: string) => new RegExp(`^${k}[ \\t]*:?=[ \\t]*(\\S*)`, "m").exec(text)?.[1];
  const [maj, min, sub] = ["CRIU_VERSION_MAJOR", "CRIU_VERSION_MINOR", "CRIU_VERSION_SUBLEVEL"].map(get);
  if (!maj || !min) throw new UserError(`${dir}/Makefile.versions names no CRIU version`, "point criu.local_source at a CRIU checkout");
  return sub && sub !== "0" ? `${maj}.${min}.${sub}` : `${maj}.${min}`;
}

async function unpackInto(tarball: string, dest: string): Promise<string> {
  const staging = join(dest, "unpack");
  await mkdir(staging, { recursive: true });
  await run(["tar", "-xf", tarball, "-C", staging], { timeoutMs: 5 * 60_000 });
  const [top, ...more] = await readdir(staging);
  if (!top || more.length) throw new UserError(`${tarball}: expected one top directory`, "is this a CRIU source tarball?");
  const tree = join(dest, "src");
  await rename(join(staging, top), tree);
  await rm(staging, { recursive: true });
  return tree;
}

/** Fetches and unpacks a source tree into `dest/src`. Throws NotAvailableError to pass on. */
export async function obtainCriuSource(provider: Exclude<CriuProvider, "debian-binary">, entry: CriuVersionEntry, ctx: ProviderContext, dest: string): Promise<{ tree: string; origin: CriuOrigin }> {
  const downloads = join(ctx.cacheRoot, "downloads");
  await mkdir(downloads, { recursive: true });
  switch (provider) {
    case "upstream": {
      const pin = entry.upstream;
      if (!pin?.url) throw new NotAvailableError("", `no upstream URL for CRIU ${entry.version}`);
      if (!pin.sha256) throw new NotAvailableError(pin.url, "no sha256 pinned in criu-builds/versions.yaml (an unverified download is refused)");
      const file = join(downloads, `criu-${entry.version}-${basename(pin.url)}`);
      ctx.log(`downloading ${pin.url}`);
      await download({ url: pin.url, dest: file, sha256: pin.sha256, timeoutMs: DOWNLOAD_TIMEOUT_MS, pinnedIn: "criu-builds/versions.yaml" });
      return { tree: await unpackInto(file, dest), origin: { provider, identity: pin.sha256, from: pin.url } };
    }
    case "debian-source": {
      const pin = entry.debian;
      if (!pin) throw new NotAvailableError("", `CRIU ${entry.version} is not packaged by Debian`);
      const index = await loadSuiteIndex({ mirror: ctx.mirror, suite: pin.suite, cacheDir: join(ctx.cacheRoot, "debian-index"), kind: "source" });
      const pkg = index.sources("criu").find((p) => p.version === pin.version);
      if (!pkg) throw new NotAvailableError(ctx.mirror, `${pin.suite} has no criu ${pin.version} (it has ${index.sources("criu").map((p) => p.version).join(", ") || "none"})`);
      const orig = pkg.files.find((f) => f.name.endsWith(".orig.tar.xz") || f.name.endsWith(".orig.tar.gz"));
      if (!orig) throw new NotAvailableError(ctx.mirror, `criu ${pin.version} lists no orig tarball`);
      if (orig.sha256 !== pin.orig_sha256)
        throw new UserError(`checksum mismatch for ${orig.name}: the signed ${pin.suite} index says ${orig.sha256}, criu-builds/versions.yaml pins ${pin.orig_sha256}`, "check the pin against the Debian archive");
      ctx.log(`downloading ${orig.url}`);
      const file = join(downloads, orig.name);
      await download({ url: orig.url, dest: file, sha256: orig.sha256, size: orig.size, timeoutMs: DOWNLOAD_TIMEOUT_MS });
      const tree = await unpackInto(file, dest);
      const debianPatches: string[] = [];
      for (const name of entry.debian_patches ?? []) {
        const debianTar = pkg.files.find((f) => f.name.endsWith(".debian.tar.xz"));
        if (!debianTar) throw new NotAvailableError(ctx.mirror, `criu ${pin.version} lists no debian.tar.xz, needed for patch ${name}`);
        const debFile = join(downloads, debianTar.name);
        await download({ url: debianTar.url, dest: debFile, sha256: debianTar.sha256, timeoutMs: DOWNLOAD_TIMEOUT_MS });
        await run(["tar", "-xf", debFile, "-C", dest, "debian/patches"], { timeoutMs: 60_000 });
        const patch = readdirSync(join(dest, "debian/patches")).find((f) => f.replace(/\.(patch|diff)$/, "") === name);
        if (!patch) throw new UserError(`Debian patch ${name} is not in ${debianTar.name}`, "fix debian_patches in criu-builds/versions.yaml");
        await run(["patch", "-p1", "--batch", "--forward", "-i", join(dest, "debian/patches", patch)], { cwd: tree, timeoutMs: 60_000 });
        debianPatches.push(patch);
      }
      return { tree, origin: { provider, identity: `${pin.version}:${orig.sha256}`, from: orig.url, debianPatches } };
    }
    case "local-source": {
      if (!ctx.localSource) throw new NotAvailableError("", "criu.local_source is not set");
      const found = localSourceVersion(ctx.localSource);
      if (found !== entry.version) throw new NotAvailableError(ctx.localSource, `the local tree is CRIU ${found}, wanted ${entry.version}`);
      const identity = localSourceIdentity(ctx.localSource);
      const tree = join(dest, "src");
      // A copy, so patches and build products never touch the user's tree.
      await run(["rsync", "-a", "--exclude", ".git", `${ctx.localSource}/`, `${tree}/`], { timeoutMs: 5 * 60_000 });
      return { tree, origin: { provider, identity, from: ctx.localSource } };
    }
  }
}

export interface CriuBinary {
  binary: string;
  origin: CriuOrigin;
  /** Debian packages the binary needs at run time (from the package's Depends). */
  runtimePackages: string[];
}

/** Names from a Debian Depends field, alternatives reduced to the first. */
export function dependsNames(depends: string): string[] {
  return depends
    .split(",")
    .map((d) => d.trim().split("|")[0].trim().split(/[\s(:]/)[0])
    .filter(Boolean);
}

/** The Debian binary package, extracted (never installed on the host). */
export async function obtainCriuBinary(entry: CriuVersionEntry, ctx: ProviderContext, dest: string): Promise<CriuBinary> {
  const pin = entry.binary;
  if (!pin) throw new NotAvailableError("", `CRIU ${entry.version} has no Debian binary package`);
  const index = await loadSuiteIndex({ mirror: ctx.mirror, suite: pin.suite, cacheDir: join(ctx.cacheRoot, "debian-index"), kind: { binaryArch: "amd64" } });
  const pkg = index.binaries("criu").find((p) => p.version === pin.version);
  if (!pkg) throw new NotAvailableError(ctx.mirror, `${pin.suite} has no criu ${pin.version} binary (it has ${index.binaries("criu").map((p) => p.version).join(", ") || "none"})`);
  const downloads = join(ctx.cacheRoot, "downloads");
  await mkdir(downloads, { recursive: true });
  const deb = join(downloads, basename(pkg.filename));
  ctx.log(`downloading ${pkg.url}`);
  await download({ url: pkg.url, dest: deb, sha256: pkg.sha256, size: pkg.size, timeoutMs: DOWNLOAD_TIMEOUT_MS });
  const x = join(dest, "extract");
  await run(["dpkg-deb", "-x", deb, x], { timeoutMs: 5 * 60_000 });
  const candidates = ["usr/sbin/criu", "sbin/criu", "usr/bin/criu"].map((p) => join(x, p));
  const binary = candidates.find((p) => existsSync(p));
  if (!binary) throw new UserError(`${basename(deb)} contains no criu binary`, "is this the criu package?");
  return {
    binary,
    origin: { provider: "debian-binary", identity: `${pin.suite}:${pkg.version}:${pkg.sha256}`, from: pkg.url },
    // Only the criu binary is shipped, not crit: its python dependencies are left out.
    runtimePackages: dependsNames(pkg.depends).filter((name) => !name.startsWith("python3")),
  };
}
