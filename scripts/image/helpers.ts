/**
 * The guest's small C helpers (guest/helpers/*.c: membarrier registration, a seccomp filter
 * that hides membarrier, a loopback TCP pair), compiled statically in the static-build chroot
 * so they run in any guest userland. Cached by the hash of their sources (the .c files and the
 * headers they share) and that chroot.
 */
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { chmod, copyFile, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { criuBuildDeps } from "../criu/build-recipe.js";
import type { ArtifactCache } from "../lib/cache.js";
import { chrootKey, ensureChroot, runInChroot, type DebianSource } from "../lib/chroot.js";
import { cacheKey, sha256File } from "../lib/hash.js";
import { REPO_ROOT } from "../lib/paths.js";

export const HELPERS_DIR = join(REPO_ROOT, "guest", "helpers");

export interface HelpersMetadata {
  suite: string;
  helpers: { name: string; source_sha256: string; sha256: string }[];
  created: string;
}

/** The files in `dir` ending in `ext`, sorted, each with its hash. */
async function hashedFiles(
  dir: string,
  ext: string,
): Promise<{ base: string; file: string; sha256: string }[]> {
  const out = [];
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith(ext))
    .sort())
    out.push({ base: f, file: join(dir, f), sha256: await sha256File(join(dir, f)) });
  return out;
}

/** The helpers' C sources, named by the program each builds. */
export async function helperSources(
  dir = HELPERS_DIR,
): Promise<{ name: string; file: string; sha256: string }[]> {
  return (await hashedFiles(dir, ".c")).map((f) => ({
    name: f.base.slice(0, -2),
    file: f.file,
    sha256: f.sha256,
  }));
}

/** The headers the helpers share (guest/helpers/*.h), by file name. */
export async function helperHeaders(
  dir = HELPERS_DIR,
): Promise<{ name: string; file: string; sha256: string }[]> {
  return (await hashedFiles(dir, ".h")).map((f) => ({ name: f.base, file: f.file, sha256: f.sha256 }));
}

export async function ensureGuestHelpers(opts: {
  cache: ArtifactCache;
  suite: string;
  debian: DebianSource;
  log?: (l: string) => void;
}): Promise<{ dir: string; names: string[]; cached: boolean }> {
  const sources = await helperSources();
  const headers = await helperHeaders();
  const packages = criuBuildDeps("static");
  const key = cacheKey({
    sources: sources.map((s) => [s.name, s.sha256]),
    headers: headers.map((h) => [h.name, h.sha256]),
    chroot: chrootKey(opts.suite, packages, opts.debian),
    flags: "-O2 -static",
  });
  const art = await opts.cache.getOrBuild<HelpersMetadata>("helpers", key, async (tmp) => {
    const chroot = await ensureChroot({
      cache: opts.cache,
      suite: opts.suite,
      packages,
      debian: opts.debian,
      log: opts.log,
    });
    const inside = `/tmp/crg-helpers-${randomBytes(4).toString("hex")}`;
    await mkdir(join(chroot.dir, inside), { recursive: true });
    try {
      const helpers = [];
      for (const h of headers) await copyFile(h.file, join(chroot.dir, inside, h.name));
      for (const s of sources) {
        await copyFile(s.file, join(chroot.dir, inside, `${s.name}.c`));
        await runInChroot(
          chroot.dir,
          ["gcc", "-O2", "-Wall", "-Werror", "-static", "-o", s.name, `${s.name}.c`],
          { timeoutMs: 5 * 60_000, cwd: inside },
        );
        await copyFile(join(chroot.dir, inside, s.name), join(tmp, s.name));
        await chmod(join(tmp, s.name), 0o755);
        helpers.push({ name: s.name, source_sha256: s.sha256, sha256: await sha256File(join(tmp, s.name)) });
      }
      return { suite: opts.suite, helpers, created: new Date().toISOString() };
    } finally {
      await rm(join(chroot.dir, inside), { recursive: true, force: true });
    }
  });
  return { dir: art.dir, names: art.metadata.helpers.map((h) => h.name), cached: art.cached };
}
