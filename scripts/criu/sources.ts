/**
 * Where a CRIU source comes from, in two steps:
 *  - resolve (may read the disk and, for git, the network): each provider's answer for one
 *    version, as a plain value: the content identity it would deliver (a tarball's sha256, a
 *    tree hash, a git commit) or why it cannot serve. Nothing is built or unpacked.
 *  - obtain: fetch and unpack what was resolved into a build directory, verified again.
 * The identity names the content, not the provider: the same tag archive from a local
 * mirror or from upstream is one build.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { basename, join, relative, resolve as resolvePath } from "node:path";
import type { CriuProvider, PipelineConfig } from "../lib/config.js";
import { loadSuiteIndex } from "../lib/debian-mirror.js";
import { NotAvailableError, download } from "../lib/download.js";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { sha256, sha256File } from "../lib/hash.js";
import {
  entryForSourceVersion,
  providerOrderFor,
  resolveCriuVersion,
  type CriuCatalog,
  type CriuVersionEntry,
} from "../data/criu-catalog.js";

export type SourceProvider = Exclude<CriuProvider, "debian-binary">;

/** A local source, inspected: its kind, the version it declares, and its content identity. */
export interface LocalSource {
  path: string;
  kind: "directory" | "git" | "tarball";
  version: string;
  identity: string;
  /** git checkouts: HEAD, and whether tracked files differ from it. */
  commit?: string;
  dirty?: boolean;
}

/** A git provider source, fetched into the cache: the commit the ref named, and its version. */
export interface GitSource {
  url: string;
  ref: string;
  repo: string;
  commit: string;
  version: string;
}

/** One provider's answer for one version. */
export interface ResolvedProvider {
  provider: CriuProvider;
  /** The content it would deliver; undefined when it cannot serve (`skip` says why). */
  identity?: string;
  skip?: string;
  /** What it would read: a path, URL or package. */
  from?: string;
  /** The tarball a tarball provider reads (local mirror, local tarball). */
  file?: string;
  commit?: string;
}

/** Debian's patches a source build of this version applies, from the pinned debian.tar.xz. */
export interface DebianPatchSet {
  archive: string;
  sha256: string;
  names: string[];
  suite: string;
  packageVersion: string;
}

export interface ResolvedCriu {
  entry: CriuVersionEntry;
  /** How the version was chosen: asked for, or declared by the source. */
  versionFrom: "config" | "local-source" | "git";
  providers: ResolvedProvider[];
  debianPatches?: DebianPatchSet;
  local?: LocalSource;
  git?: GitSource;
}

export interface ResolveOptions {
  cacheRoot: string;
  /**
   * A single command: a source of another version than asked for is an error. A matrix gives
   * one source to every cell, so there it only means that provider cannot serve that cell.
   */
  strict: boolean;
}

const GIT_TIMEOUT_MS = 10 * 60_000;
const DOWNLOAD_TIMEOUT_MS = 10 * 60_000;

/** Runs a command synchronously with a deadline (resolve is synchronous so planning stays so). */
function runSync(
  argv: string[],
  opts: { cwd?: string; timeoutMs: number; env?: Record<string, string> },
): { code: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(argv[0], argv.slice(1), {
    cwd: opts.cwd,
    timeout: opts.timeoutMs,
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, ...opts.env },
  });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT")
    throw new UserError(`${argv[0]} is not installed`, `install it (apt-get install ${argv[0]})`);
  const timedOut = r.signal === "SIGTERM" && r.status === null;
  return {
    code: timedOut ? null : r.status,
    stdout: r.stdout ?? Buffer.alloc(0),
    stderr: `${r.stderr?.toString() ?? ""}${timedOut ? `\n(killed after ${opts.timeoutMs / 1000}s)` : ""}`,
  };
}

/** CRIU's own idea of its version, from the text of Makefile.versions. */
export function versionFromMakefile(text: string, where: string): string {
  const get = (k: string) => new RegExp(`^${k}[ \\t]*:?=[ \\t]*(\\S*)`, "m").exec(text)?.[1];
  const [maj, min, sub] = ["CRIU_VERSION_MAJOR", "CRIU_VERSION_MINOR", "CRIU_VERSION_SUBLEVEL"].map(get);
  if (!maj || !min)
    throw new UserError(`${where} names no CRIU version`, "point it at the top of a CRIU source tree");
  return sub && sub !== "0" ? `${maj}.${min}.${sub}` : `${maj}.${min}`;
}

/**
 * A tree's content hash. Symlinks are hashed as their target text and never followed: CRIU
 * trees hold a dangling `compel/include/uapi/asm` and a self-loop `compel/include/uapi/compel`.
 */
export function treeIdentity(dir: string): string {
  const hash = createHash("sha256");
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      if (d === dir && name === ".git") continue;
      const p = join(d, name);
      const rel = relative(dir, p);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) hash.update(`L\0${rel}\0${readlinkSync(p)}\0`);
      else if (st.isDirectory()) {
        hash.update(`D\0${rel}\0`);
        walk(p);
      } else if (st.isFile())
        hash
          .update(`F\0${rel}\0${st.mode & 0o111 ? "x" : "-"}\0`)
          .update(readFileSync(p))
          .update("\0");
    }
  };
  walk(dir);
  return `tree:${hash.digest("hex")}`;
}

/** The single top directory of a tarball; anything else is refused, naming the file. */
export function tarballTopDir(file: string, what: string): string {
  const r = runSync(["tar", "-tf", file], { timeoutMs: 5 * 60_000 });
  if (r.code !== 0)
    throw new UserError(
      `${what} ${file} is not a readable tarball: ${r.stderr.trim().split("\n").slice(-2).join("; ")}`,
      "replace it with a complete CRIU source tarball",
    );
  const tops = new Set(
    r.stdout
      .toString()
      .split("\n")
      .map((l) => l.replace(/^\.\//, "").split("/")[0])
      .filter(Boolean),
  );
  if (tops.size !== 1)
    throw new UserError(
      `${what} ${file} has ${tops.size} top directories (${[...tops].slice(0, 4).join(", ")}), not one`,
      "a CRIU source tarball holds one directory, e.g. criu-3.19/",
    );
  return [...tops][0];
}

export function gitOut(
  args: string[],
  cwd: string,
  timeoutMs = 60_000,
): { code: number | null; out: string; err: string } {
  const r = runSync(["git", ...args], { cwd, timeoutMs, env: { GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" } });
  return { code: r.code, out: r.stdout.toString(), err: r.stderr };
}

/** A directory, a git checkout (its top) or a tarball: what it is, its version and identity. */
export function inspectLocalSource(path: string): LocalSource {
  const what = "criu.local_source";
  if (!existsSync(path))
    throw new UserError(
      `${what} ${path} does not exist`,
      "pass a CRIU source directory, git checkout or tarball",
    );
  if (statSync(path).isFile()) {
    const top = tarballTopDir(path, what);
    const r = runSync(["tar", "-xOf", path, `${top}/Makefile.versions`], { timeoutMs: 5 * 60_000 });
    if (r.code !== 0)
      throw new UserError(
        `${what} ${path} is not a CRIU source tarball (no ${top}/Makefile.versions)`,
        "pass a CRIU release tarball, e.g. criu-3.19.tar.gz",
      );
    const digest = createHash("sha256").update(readFileSync(path)).digest("hex");
    return {
      path,
      kind: "tarball",
      version: versionFromMakefile(r.stdout.toString(), `${path}:${top}/Makefile.versions`),
      identity: `sha256:${digest}`,
    };
  }
  if (!existsSync(join(path, "Makefile.versions")) || !existsSync(join(path, "criu")))
    throw new UserError(
      `${what} ${path} is not a CRIU source tree (no Makefile.versions and criu/ at its top)`,
      "point it at the top of a CRIU checkout or release tree",
    );
  const version = versionFromMakefile(
    readFileSync(join(path, "Makefile.versions"), "utf8"),
    join(path, "Makefile.versions"),
  );
  const top = existsSync(join(path, ".git")) ? gitOut(["rev-parse", "--show-toplevel"], path) : undefined;
  if (top?.code === 0 && realpathSync(top.out.trim()) === realpathSync(path)) {
    const head = gitOut(["rev-parse", "HEAD^{commit}"], path);
    if (head.code !== 0)
      throw new UserError(
        `${what} ${path} is a git checkout without a commit`,
        "commit the tree first, or pass a plain directory",
      );
    const commit = head.out.trim();
    // Tracked files only: staged and unstaged changes against HEAD; untracked files do not count.
    const diff = runSync(["git", "diff", "HEAD", "--binary", "--no-textconv", "--no-ext-diff"], {
      cwd: path,
      timeoutMs: 60_000,
    });
    if (diff.code !== 0)
      throw new UserError(
        `git diff failed in ${path}: ${diff.stderr.trim()}`,
        "is it a healthy git checkout?",
      );
    const dirty = diff.stdout.length > 0;
    return {
      path,
      kind: "git",
      version,
      commit,
      dirty,
      identity: `git:${commit}${dirty ? `+${sha256(diff.stdout).slice(0, 16)}` : ""}`,
    };
  }
  return { path, kind: "directory", version, identity: treeIdentity(path) };
}

function gitFailure(err: string, url: string, ref: string): UserError {
  if (
    /couldn't find remote ref|not our ref|no such remote ref|invalid refspec|unadvertised object|bad object|not a valid object/i.test(
      err,
    )
  )
    return new UserError(
      `git ref '${ref}' does not exist in ${url}`,
      "name a branch, tag or commit that the repository has (e.g. --ref criu-dev or --ref v4.1)",
    );
  return new UserError(
    `cannot fetch from git URL ${url}: ${err.trim().split("\n").slice(-2).join("; ")}`,
    "check the URL and the network (file:///path/to/repo works for a local repository)",
  );
}

/** Resolves a ref to a commit in a cache repository (fetching what is missing) and reads its version. */
export function resolveGitSource(cacheRoot: string, url: string, ref: string): GitSource {
  if (!ref)
    throw new UserError(
      `criu.git.url is ${url} but criu.git.ref is empty`,
      "name a ref: --ref criu-dev, --ref v4.1 or a commit",
    );
  // One object store for every URL: commits are content-addressed, so a commit fetched once
  // from anywhere resolves again without the network.
  const repo = join(resolvePath(cacheRoot), "git", "criu.git");
  if (!existsSync(join(repo, "HEAD"))) {
    const tmp = `${repo}.tmp-${process.pid}`;
    const init = runSync(["git", "init", "--quiet", "--bare", tmp], { timeoutMs: 60_000 });
    if (init.code !== 0)
      throw new UserError(
        `git init ${tmp} failed: ${init.stderr.trim()}`,
        "is the cache directory writable?",
      );
    runSync(["mv", "-T", tmp, repo], { timeoutMs: 60_000 });
  }
  let commit: string | undefined;
  if (/^[0-9a-f]{40}$/.test(ref) && gitOut(["cat-file", "-e", `${ref}^{commit}`], repo).code === 0)
    commit = ref;
  else {
    const fetched = gitOut(["fetch", "--quiet", "--no-tags", "--force", url, ref], repo, GIT_TIMEOUT_MS);
    if (fetched.code !== 0) throw gitFailure(fetched.err, url, ref);
    commit = gitOut(["rev-parse", "FETCH_HEAD^{commit}"], repo).out.trim();
    // Keep what was fetched reachable, so a later offline run of the same commit needs no network.
    gitOut(["update-ref", `refs/cr-guest/${commit}`, commit], repo);
  }
  const makefile = gitOut(["show", `${commit}:Makefile.versions`], repo);
  if (makefile.code !== 0)
    throw new UserError(
      `${url} at ${ref} (${commit.slice(0, 12)}) is not a CRIU tree: no Makefile.versions`,
      "point --git at a CRIU repository",
    );
  return {
    url,
    ref,
    repo,
    commit,
    version: versionFromMakefile(makefile.out, `${url}@${commit.slice(0, 12)}:Makefile.versions`),
  };
}

/** Tarball names a local mirror may hold for a version, with the pin each is checked against. */
export function mirrorNames(
  entry: CriuVersionEntry,
): { name: string; sha256?: string; kind: "tag archive" | "Debian orig tarball" }[] {
  const v = entry.version;
  const upstreamOfDebian = entry.debian?.version.replace(/^\d+:/, "").replace(/-[^-]*$/, "");
  return [
    { name: `criu-${v}.tar.gz`, sha256: entry.upstream?.sha256, kind: "tag archive" as const },
    { name: `v${v}.tar.gz`, sha256: entry.upstream?.sha256, kind: "tag archive" as const },
    ...(upstreamOfDebian
      ? ["xz", "gz"].map((ext) => ({
          name: `criu_${upstreamOfDebian}.orig.tar.${ext}`,
          sha256: entry.debian?.orig_sha256,
          kind: "Debian orig tarball" as const,
        }))
      : []),
  ];
}

/** The local mirror's tarball for a version, checked against its pin: a mismatch is refused. */
export function resolveMirror(dir: string, entry: CriuVersionEntry): ResolvedProvider {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new UserError(
      `criu.local_mirror ${dir} is not a directory`,
      "pass a directory holding CRIU tarballs (criu-X.tar.gz, vX.tar.gz or criu_X.orig.tar.xz)",
    );
  const names = mirrorNames(entry);
  for (const n of names) {
    const file = join(dir, n.name);
    if (!existsSync(file)) continue;
    if (!n.sha256)
      return {
        provider: "local-mirror",
        skip: `${n.name} is there but CRIU ${entry.version} has no pin for its ${n.kind} in criu-builds/versions.yaml`,
      };
    const got = createHash("sha256").update(readFileSync(file)).digest("hex");
    if (got !== n.sha256)
      throw new UserError(
        `checksum mismatch for ${file}: it has sha256 ${got}, criu-builds/versions.yaml pins ${n.sha256} for CRIU ${entry.version}'s ${n.kind}`,
        "replace the file with the real release tarball (a truncated or repacked file is refused), or remove it",
      );
    return { provider: "local-mirror", identity: `sha256:${got}`, from: file, file };
  }
  return { provider: "local-mirror", skip: `${dir} has none of ${names.map((n) => n.name).join(", ")}` };
}

export function upstreamUrl(base: string, version: string): string {
  return `${base.replace(/\/+$/, "")}/v${version}.tar.gz`;
}

function debianPatchSet(entry: CriuVersionEntry): DebianPatchSet | undefined {
  if (!entry.debian_patches?.length || !entry.debian) return undefined;
  const pkg = entry.debian.version.replace(/^\d+:/, "");
  return {
    archive: `criu_${pkg}.debian.tar.xz`,
    sha256: entry.debian.debian_tar_sha256 ?? "",
    names: entry.debian_patches,
    suite: entry.debian.suite,
    packageVersion: entry.debian.version,
  };
}

/**
 * Resolves the version and each provider's answer. The version is the config's, or the one the
 * local source or git tree declares when the config leaves it empty.
 */
export function resolveCriuSource(
  config: PipelineConfig,
  catalog: CriuCatalog,
  opts: ResolveOptions,
  memo: Map<string, unknown> = new Map(),
): ResolvedCriu {
  const c = config.criu;
  const once = <T>(key: string, f: () => T): T => {
    if (!memo.has(key)) memo.set(key, f());
    return memo.get(key) as T;
  };
  const local = c.local_source
    ? once(`local:${c.local_source}`, () => inspectLocalSource(c.local_source))
    : undefined;
  const git = c.git.url
    ? once(`git:${c.git.url}@${c.git.ref}`, () => resolveGitSource(opts.cacheRoot, c.git.url, c.git.ref))
    : undefined;
  const { entry, versionFrom } = criuVersionFor(c.version, catalog, local, git);
  const sources: ProviderSources = { config, entry, strict: opts.strict, local, git, once };
  const providers = providerOrderFor(entry, catalog, c.providers).map((p) => providerAnswer(p, sources));
  return { entry, versionFrom, providers, debianPatches: debianPatchSet(entry), local, git };
}

/** The catalog entry of the config's version, else of the version the local or git tree declares. */
function criuVersionFor(
  version: string | undefined,
  catalog: CriuCatalog,
  local: ResolvedCriu["local"],
  git: ResolvedCriu["git"],
): { entry: CriuVersionEntry; versionFrom: ResolvedCriu["versionFrom"] } {
  if (version) return { entry: resolveCriuVersion(version, catalog), versionFrom: "config" };
  if (local) return { entry: entryForSourceVersion(local.version, catalog), versionFrom: "local-source" };
  if (git) return { entry: entryForSourceVersion(git.version, catalog), versionFrom: "git" };
  throw new UserError(
    "criu.version is empty and no source names a version",
    "give --criu V, or --local-source DIR / --git URL",
  );
}

/** What resolveCriuSource knows when it asks each provider. */
interface ProviderSources {
  config: PipelineConfig;
  entry: CriuVersionEntry;
  strict?: boolean;
  local: ResolvedCriu["local"];
  git: ResolvedCriu["git"];
  once: <T>(key: string, f: () => T) => T;
}

/** A source of another version: refused when strict, else a provider skipped with the reason. */
function versionMismatch(s: ProviderSources, what: string, found: string): string {
  const text = `${what} is CRIU ${found}, not ${s.entry.version}`;
  if (s.strict)
    throw new UserError(
      `${text}`,
      `ask for --criu ${found}, leave --criu out to take the source's version, or give a source of ${s.entry.version}`,
    );
  return text;
}

/** One provider's answer for this version: what it would serve (its identity), or why it cannot. */
function providerAnswer(provider: CriuProvider, s: ProviderSources): ResolvedProvider {
  const { entry, local, git } = s;
  const c = s.config.criu;
  switch (provider) {
    case "local-source":
      if (!local) return { provider, skip: "criu.local_source is not set (--local-source)" };
      if (local.version !== entry.version)
        return { provider, skip: versionMismatch(s, `the local ${local.kind} ${local.path}`, local.version) };
      return {
        provider,
        identity: local.identity,
        from: local.path,
        commit: local.commit,
        ...(local.kind === "tarball" ? { file: local.path } : {}),
      };
    case "git":
      if (!git) return { provider, skip: "criu.git is not set (--git URL --ref REF)" };
      if (git.version !== entry.version)
        return {
          provider,
          skip: versionMismatch(s, `${git.url} at ${git.ref} (${git.commit.slice(0, 12)})`, git.version),
        };
      return { provider, identity: `git:${git.commit}`, from: `${git.url}@${git.ref}`, commit: git.commit };
    case "local-mirror":
      if (!c.local_mirror) return { provider, skip: "criu.local_mirror is not set (--criu-mirror DIR)" };
      return s.once(`mirror:${c.local_mirror}:${entry.version}`, () => resolveMirror(c.local_mirror, entry));
    case "debian-source":
      if (!entry.debian) return { provider, skip: `Debian does not package CRIU ${entry.version}` };
      return {
        provider,
        identity: `sha256:${entry.debian.orig_sha256}`,
        from: `Debian ${entry.debian.suite} criu ${entry.debian.version} orig tarball`,
      };
    case "upstream":
      if (!entry.upstream)
        return {
          provider,
          skip: `no sha256 pinned for CRIU ${entry.version}'s tag archive (an unverified download is refused)`,
        };
      return {
        provider,
        identity: `sha256:${entry.upstream.sha256}`,
        from: upstreamUrl(c.upstream_url_base, entry.version),
      };
    case "debian-binary":
      if (!entry.binary) return { provider, skip: `Debian has no binary package of CRIU ${entry.version}` };
      return {
        provider,
        identity: `deb:${entry.binary.suite}:${entry.binary.version}`,
        from: `Debian ${entry.binary.suite} package criu ${entry.binary.version}`,
      };
  }
}

export interface ProviderContext {
  cacheRoot: string;
  mirror: string;
  log: (line: string) => void;
}

export interface CriuOrigin {
  provider: CriuProvider;
  /** The content identity (tarball sha256, tree hash, git commit). */
  identity: string;
  /** Human-readable: the tarball, URL, package or directory. */
  from: string;
  commit?: string;
  /** Debian quilt patches applied from the package's debian.tar.xz. */
  debianPatches?: string[];
}

async function unpackInto(tarball: string, dest: string, what: string): Promise<string> {
  tarballTopDir(tarball, what);
  const staging = join(dest, "unpack");
  await mkdir(staging, { recursive: true });
  await run(["tar", "-xf", tarball, "-C", staging], { timeoutMs: 5 * 60_000 });
  const [top, ...more] = await readdir(staging);
  if (!top || more.length)
    throw new UserError(`${what} ${tarball}: expected one top directory`, "is this a CRIU source tarball?");
  const tree = join(dest, "src");
  await rename(join(staging, top), tree);
  await rm(staging, { recursive: true });
  return tree;
}

async function verified(file: string, identity: string, what: string): Promise<void> {
  const got = `sha256:${await sha256File(file)}`;
  if (got !== identity)
    throw new UserError(
      `${what} ${file} changed since it was resolved: ${got}, expected ${identity}`,
      "run again; do not change sources during a build",
    );
}

/** Copies a local tree for the build: a git checkout's tracked files only (with their changes). */
async function copyLocalTree(local: LocalSource, tree: string, dest: string): Promise<void> {
  if (local.kind === "git") {
    const tracked = gitOut(["ls-files", "-z", "--cached"], local.path).out.split("\0").filter(Boolean);
    const deleted = new Set(
      gitOut(["ls-files", "-z", "--deleted"], local.path).out.split("\0").filter(Boolean),
    );
    const list = join(dest, "tracked-files");
    writeFileSync(list, tracked.filter((f) => !deleted.has(f)).join("\0"));
    await run(["rsync", "-a", "--from0", `--files-from=${list}`, `${local.path}/`, `${tree}/`], {
      timeoutMs: 5 * 60_000,
    });
  } else {
    await run(["rsync", "-a", "--exclude", "/.git", `${local.path}/`, `${tree}/`], { timeoutMs: 5 * 60_000 });
  }
}

/** Fetches and unpacks a resolved source into `dest/src`. Throws NotAvailableError to pass on. */
export async function obtainCriuSource(
  p: ResolvedProvider & { provider: SourceProvider },
  resolved: ResolvedCriu,
  ctx: ProviderContext,
  dest: string,
  upstreamBase: string,
): Promise<{ tree: string; origin: CriuOrigin }> {
  const entry = resolved.entry;
  const identity = p.identity!;
  const tree = await unpackSource(p, resolved, ctx, dest, upstreamBase);
  const found = versionFromMakefile(
    readFileSync(join(tree, "Makefile.versions"), "utf8"),
    `${p.from}: Makefile.versions`,
  );
  if (found !== entry.version)
    throw new UserError(
      `${p.from} holds CRIU ${found}, not ${entry.version}`,
      "give a source of the version asked for",
    );
  const debianPatches = resolved.debianPatches
    ? await applyDebianPatches(resolved.debianPatches, ctx, tree, dest)
    : [];
  return {
    tree,
    origin: { provider: p.provider, identity, from: p.from ?? "", commit: p.commit, debianPatches },
  };
}

/** The provider's source, checked against its identity and unpacked under `dest`: the tree. */
async function unpackSource(
  p: ResolvedProvider & { provider: SourceProvider },
  resolved: ResolvedCriu,
  ctx: ProviderContext,
  dest: string,
  upstreamBase: string,
): Promise<string> {
  const entry = resolved.entry;
  const downloads = join(ctx.cacheRoot, "downloads");
  await mkdir(downloads, { recursive: true });
  const identity = p.identity!;
  switch (p.provider) {
    case "local-source": {
      const local = resolved.local!;
      if (local.kind === "tarball") {
        await verified(local.path, identity, "criu.local_source");
        return unpackInto(local.path, dest, "criu.local_source");
      }
      const tree = join(dest, "src");
      await mkdir(tree, { recursive: true });
      // A copy: patches and build products never touch the user's tree.
      await copyLocalTree(local, tree, dest);
      return tree;
    }
    case "git": {
      const git = resolved.git!;
      const tar = join(dest, "git-archive.tar");
      const argv = ["git", "-C", git.repo, "archive", "--format=tar", `--prefix=criu-${git.version}/`];
      await run([...argv, "-o", tar, git.commit], { timeoutMs: 5 * 60_000 });
      const tree = await unpackInto(tar, dest, "git archive of");
      await rm(tar);
      return tree;
    }
    case "local-mirror":
      await verified(p.file!, identity, "criu.local_mirror");
      return unpackInto(p.file!, dest, "criu.local_mirror");
    case "upstream": {
      const url = upstreamUrl(upstreamBase, entry.version);
      const file = join(downloads, `criu-${entry.version}.tar.gz`);
      ctx.log(`downloading ${url}`);
      await download({
        url,
        dest: file,
        sha256: entry.upstream!.sha256,
        size: entry.upstream!.size,
        timeoutMs: DOWNLOAD_TIMEOUT_MS,
        pinnedIn: "criu-builds/versions.yaml",
      });
      return unpackInto(file, dest, "upstream tarball");
    }
    case "debian-source":
      return unpackInto(await downloadDebianOrig(entry.debian!, ctx, downloads), dest, "Debian orig tarball");
  }
}

/** Debian's orig tarball of the pinned version, found in the suite's signed index: its path. */
async function downloadDebianOrig(
  pin: NonNullable<CriuVersionEntry["debian"]>,
  ctx: ProviderContext,
  downloads: string,
): Promise<string> {
  const index = await loadSuiteIndex({
    mirror: ctx.mirror,
    suite: pin.suite,
    cacheDir: join(ctx.cacheRoot, "debian-index"),
    kind: "source",
  });
  const pkg = index.sources("criu").find((x) => x.version === pin.version);
  if (!pkg)
    throw new NotAvailableError(
      ctx.mirror,
      `${pin.suite} has no criu ${pin.version} (it has ${
        index
          .sources("criu")
          .map((x) => x.version)
          .join(", ") || "none"
      })`,
    );
  const orig = pkg.files.find((f) => /\.orig\.tar\.(xz|gz)$/.test(f.name));
  if (!orig) throw new NotAvailableError(ctx.mirror, `criu ${pin.version} lists no orig tarball`);
  if (orig.sha256 !== pin.orig_sha256)
    throw new UserError(
      `checksum mismatch for ${orig.name}: the signed ${pin.suite} index says ${orig.sha256}, criu-builds/versions.yaml pins ${pin.orig_sha256}`,
      "check the pin against the Debian archive",
    );
  ctx.log(`downloading ${orig.url}`);
  const file = join(downloads, orig.name);
  await download({
    url: orig.url,
    dest: file,
    sha256: orig.sha256,
    size: orig.size,
    timeoutMs: DOWNLOAD_TIMEOUT_MS,
  });
  return file;
}

/** Debian's quilt patches, from the pinned debian.tar.xz (checked against the signed index too). */
async function applyDebianPatches(
  set: DebianPatchSet,
  ctx: ProviderContext,
  tree: string,
  dest: string,
): Promise<string[]> {
  const downloads = join(ctx.cacheRoot, "downloads");
  const file = join(downloads, set.archive);
  if (!existsSync(file) || `sha256:${await sha256File(file)}` !== `sha256:${set.sha256}`) {
    let url: string;
    try {
      const index = await loadSuiteIndex({
        mirror: ctx.mirror,
        suite: set.suite,
        cacheDir: join(ctx.cacheRoot, "debian-index"),
        kind: "source",
      });
      const listed = index
        .sources("criu")
        .find((x) => x.version === set.packageVersion)
        ?.files.find((f) => f.name === set.archive);
      if (!listed) throw new NotAvailableError(ctx.mirror, `${set.suite} no longer lists ${set.archive}`);
      if (set.sha256 && listed.sha256 !== set.sha256)
        throw new UserError(
          `checksum mismatch for ${set.archive}: the signed ${set.suite} index says ${listed.sha256}, criu-builds/versions.yaml pins ${set.sha256}`,
          "check the pin against the Debian archive",
        );
      url = listed.url;
    } catch (err) {
      if (err instanceof NotAvailableError)
        throw new NotAvailableError(
          err.url,
          `this version needs Debian's patches ${set.names.join(", ")} from ${set.archive}, which cannot be had: ${err.reason}`,
        );
      throw err;
    }
    ctx.log(`downloading ${url}`);
    await download({
      url,
      dest: file,
      sha256: set.sha256 || undefined,
      timeoutMs: DOWNLOAD_TIMEOUT_MS,
      pinnedIn: "criu-builds/versions.yaml",
    });
  }
  await run(["tar", "-xf", file, "-C", dest, "debian/patches"], { timeoutMs: 60_000 });
  const applied: string[] = [];
  for (const name of set.names) {
    const patch = readdirSync(join(dest, "debian/patches")).find(
      (f) => f.replace(/\.(patch|diff)$/, "") === name,
    );
    if (!patch)
      throw new UserError(
        `Debian patch ${name} is not in ${set.archive}`,
        "fix debian_patches in criu-builds/versions.yaml",
      );
    ctx.log(`applying Debian patch ${patch}`);
    await run(["patch", "-p1", "--batch", "--forward", "-i", join(dest, "debian/patches", patch)], {
      cwd: tree,
      timeoutMs: 60_000,
    });
    applied.push(patch);
  }
  return applied;
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
    .map(
      (d) =>
        d
          .trim()
          .split("|")[0]
          .trim()
          .split(/[\s(:]/)[0],
    )
    .filter(Boolean);
}

/** The Debian binary package, extracted (never installed on the host). */
export async function obtainCriuBinary(
  entry: CriuVersionEntry,
  ctx: ProviderContext,
  dest: string,
): Promise<CriuBinary> {
  const pin = entry.binary;
  if (!pin) throw new NotAvailableError("", `CRIU ${entry.version} has no Debian binary package`);
  const index = await loadSuiteIndex({
    mirror: ctx.mirror,
    suite: pin.suite,
    cacheDir: join(ctx.cacheRoot, "debian-index"),
    kind: { binaryArch: "amd64" },
  });
  const pkg = index.binaries("criu").find((p) => p.version === pin.version);
  if (!pkg)
    throw new NotAvailableError(
      ctx.mirror,
      `${pin.suite} has no criu ${pin.version} binary (it has ${
        index
          .binaries("criu")
          .map((p) => p.version)
          .join(", ") || "none"
      })`,
    );
  const downloads = join(ctx.cacheRoot, "downloads");
  await mkdir(downloads, { recursive: true });
  const deb = join(downloads, basename(pkg.filename));
  ctx.log(`downloading ${pkg.url}`);
  await download({
    url: pkg.url,
    dest: deb,
    sha256: pkg.sha256,
    size: pkg.size,
    timeoutMs: DOWNLOAD_TIMEOUT_MS,
  });
  const x = join(dest, "extract");
  await run(["dpkg-deb", "-x", deb, x], { timeoutMs: 5 * 60_000 });
  const candidates = ["usr/sbin/criu", "sbin/criu", "usr/bin/criu"].map((p) => join(x, p));
  const binary = candidates.find((p) => existsSync(p));
  if (!binary) throw new UserError(`${basename(deb)} contains no criu binary`, "is this the criu package?");
  return {
    binary,
    origin: {
      provider: "debian-binary",
      identity: `deb:${pin.suite}:${pkg.version}:${pkg.sha256}`,
      from: pkg.url,
    },
    // Only the criu binary is shipped, not crit: its python dependencies are left out.
    runtimePackages: dependsNames(pkg.depends).filter((name) => !name.startsWith("python3")),
  };
}
