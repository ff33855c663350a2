/**
 * Kernel source providers. Each turns a pinned version into an unpacked, verified tree in
 * the cache, or says why it cannot (then the next provider is tried). A tree already cached
 * by any configured provider is used before any network access.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { ArtifactCache } from "../lib/cache.js";
import type { KernelConfig, KernelProvider } from "../lib/config.js";
import { loadSuiteIndex } from "../lib/debian-mirror.js";
import { NotAvailableError, download } from "../lib/download.js";
import { UserError, errorMessage } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { requireHostTools } from "../lib/host-tools.js";
import type { KernelVersionEntry } from "../data/kernel-catalog.js";

export interface KernelSourceMetadata {
  version: string;
  provider: KernelProvider;
  /** What the tree came from: a tarball (with its sha256) or a local path. */
  origin: string;
  sha256: string;
  patches: string[];
  notes: string[];
}

export interface KernelSource {
  tree: string;
  metadata: KernelSourceMetadata;
  cached: boolean;
}

export interface SourceContext {
  cache: ArtifactCache;
  kernel: KernelConfig;
  mirror: string;
  log: (line: string) => void;
}

const STAGE = "sources";
const DOWNLOAD_TIMEOUT_MS = 20 * 60_000;
const UNPACK_TIMEOUT_MS = 10 * 60_000;

/** The cache key of one provider's tree (read by --dry-run, which only looks in the cache). */
export function sourceKey(version: string, provider: KernelProvider, kernel: KernelConfig): string {
  if (provider === "local-tree") return `linux-${version}-local-tree`;
  const patched = provider === "debian" && kernel.debian_patches ? "-dfsg" : "";
  return `linux-${version}-${provider}${patched}`;
}

/** Unpacks a tarball whose single top directory becomes `<dir>/tree`. */
async function unpack(tarball: string, dir: string): Promise<string> {
  const staging = join(dir, "unpack");
  await mkdir(staging);
  await run(["tar", "-xf", tarball, "-C", staging], { timeoutMs: UNPACK_TIMEOUT_MS });
  const entries = await readdir(staging);
  if (entries.length !== 1)
    throw new UserError(
      `${tarball}: expected one top directory, found ${entries.length}`,
      "is this a kernel source tarball?",
    );
  const tree = join(dir, "tree");
  await rename(join(staging, entries[0]), tree);
  await rm(staging, { recursive: true });
  return tree;
}

function makefileVersion(tree: string): string | undefined {
  const makefile = join(tree, "Makefile");
  if (!existsSync(makefile)) return undefined;
  const text = readFileSync(makefile, "utf8");
  const get = (k: string) => new RegExp(`^${k}\\s*=\\s*(\\S*)`, "m").exec(text)?.[1];
  const [v, p, s] = [get("VERSION"), get("PATCHLEVEL"), get("SUBLEVEL")];
  return v && p ? `${v}.${p}.${s || 0}` : undefined;
}

async function fromTarball(
  ctx: SourceContext,
  provider: KernelProvider,
  entry: KernelVersionEntry,
  tarball: string,
  sha256: string,
  /** Patches the unpacked tree; a failure is recorded as a note, not fatal. */
  patchTree?: (tree: string) => Promise<string[]>,
): Promise<KernelSource> {
  const art = await ctx.cache.getOrBuild<KernelSourceMetadata>(
    STAGE,
    sourceKey(entry.version, provider, ctx.kernel),
    async (dir) => {
      ctx.log(`unpacking ${basename(tarball)}`);
      const tree = await unpack(tarball, dir);
      const found = makefileVersion(tree);
      if (found !== entry.version)
        throw new UserError(
          `${tarball} holds linux ${found ?? "?"}, not ${entry.version}`,
          "check the tarball and the pin in kernel-versions.yaml",
        );
      const notes: string[] = [];
      let patches: string[] = [];
      if (patchTree) {
        try {
          patches = await patchTree(tree);
        } catch (err) {
          notes.push(errorMessage(err));
          ctx.log(errorMessage(err));
        }
      }
      return { version: entry.version, provider, origin: basename(tarball), sha256, patches, notes };
    },
  );
  return { tree: join(art.dir, "tree"), metadata: art.metadata, cached: art.cached };
}

/** Applies the dfsg patches listed in debian/patches/series to an unpacked Debian orig tree. */
async function applyDfsgPatches(debianTarball: string, tree: string): Promise<string[]> {
  const work = join(tree, "..", "debian-packaging");
  await mkdir(work, { recursive: true });
  await run(["tar", "-xf", debianTarball, "-C", work, "debian/patches"], { timeoutMs: UNPACK_TIMEOUT_MS });
  const series = readFileSync(join(work, "debian/patches/series"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("debian/dfsg/"));
  for (const patch of series)
    await run(["patch", "-p1", "--forward", "--batch", "-i", join(work, "debian/patches", patch)], {
      cwd: tree,
      timeoutMs: 60_000,
    });
  await rm(work, { recursive: true });
  return series;
}

type Provide = (ctx: SourceContext, entry: KernelVersionEntry) => Promise<KernelSource>;

const PROVIDERS: Record<KernelProvider, Provide> = {
  "kernel.org": async (ctx, entry) => {
    const pin = entry.kernel_org;
    if (!pin?.url) throw new NotAvailableError("", `no kernel.org URL pinned for ${entry.version}`);
    if (!pin.sha256)
      throw new NotAvailableError(
        pin.url,
        `no sha256 pinned for it in kernel-versions.yaml (copy it from kernel.org's sha256sums.asc)`,
      );
    const dest = join(ctx.cache.root, "downloads", basename(pin.url));
    await mkdir(join(ctx.cache.root, "downloads"), { recursive: true });
    ctx.log(`downloading ${pin.url}`);
    await download({ url: pin.url, dest, sha256: pin.sha256, timeoutMs: DOWNLOAD_TIMEOUT_MS });
    return fromTarball(ctx, "kernel.org", entry, dest, pin.sha256);
  },

  debian: async (ctx, entry) => {
    const pin = entry.debian;
    if (!pin) throw new NotAvailableError("", `no Debian source package pinned for ${entry.version}`);
    const tried: string[] = [];
    for (const suite of pin.suites) {
      const index = await loadSuiteIndex({
        mirror: ctx.mirror,
        suite,
        cacheDir: join(ctx.cache.root, "debian-index"),
        kind: "source",
      });
      const pkg = index.sources("linux").find((p) => p.version === pin.version);
      if (!pkg) {
        tried.push(`${suite}: no linux ${pin.version} in the index`);
        continue;
      }
      const orig = pkg.files.find((f) => f.name.endsWith(".orig.tar.xz"));
      if (!orig) {
        tried.push(`${suite}: linux ${pin.version} lists no orig tarball`);
        continue;
      }
      if (orig.sha256 !== pin.orig_sha256)
        throw new UserError(
          `checksum mismatch for ${orig.name}: the signed ${suite} index says ${orig.sha256}, kernel-versions.yaml pins ${pin.orig_sha256}`,
          "the pin or the mirror is wrong; check kernel-versions.yaml against the Debian archive",
        );
      const downloads = join(ctx.cache.root, "downloads");
      await mkdir(downloads, { recursive: true });
      const dest = join(downloads, orig.name);
      ctx.log(`downloading ${orig.url}`);
      await download({
        url: orig.url,
        dest,
        sha256: orig.sha256,
        size: orig.size,
        timeoutMs: DOWNLOAD_TIMEOUT_MS,
      });
      const debianTar = pkg.files.find((f) => f.name.endsWith(".debian.tar.xz"));
      const patchTree = ctx.kernel.debian_patches
        ? async (tree: string) => {
            if (!debianTar)
              throw new Error(
                `dfsg patches not applied: ${suite} lists no debian.tar.xz for linux ${pin.version}`,
              );
            const debDest = join(downloads, debianTar.name);
            try {
              await download({
                url: debianTar.url,
                dest: debDest,
                sha256: debianTar.sha256,
                timeoutMs: DOWNLOAD_TIMEOUT_MS,
              });
            } catch (err) {
              throw new Error(
                `dfsg patches not applied: ${debianTar.name} is not downloadable (${errorMessage(err)})`,
              );
            }
            ctx.log("applying Debian dfsg patches");
            return applyDfsgPatches(debDest, tree);
          }
        : undefined;
      return fromTarball(ctx, "debian", entry, dest, orig.sha256, patchTree);
    }
    throw new NotAvailableError(ctx.mirror, tried.join("; "));
  },

  "local-tree": async (ctx, entry) => {
    const tree = ctx.kernel.local_tree;
    if (!tree) throw new NotAvailableError("", "kernel.local_tree is not set");
    const found = makefileVersion(tree);
    if (!found)
      throw new UserError(
        `kernel.local_tree ${tree} is not a kernel source tree (no Makefile with VERSION)`,
        "point it at the top of a kernel tree",
      );
    if (found !== entry.version)
      throw new NotAvailableError(tree, `local tree is linux ${found}, wanted ${entry.version}`);
    // Built in place with O=: identify it by git commit when it is a checkout.
    const head = existsSync(join(tree, ".git"))
      ? (
          await run(["git", "-C", tree, "describe", "--always", "--dirty"], {
            timeoutMs: 30_000,
            allowFailure: true,
          })
        ).stdout.trim()
      : "";
    return {
      tree,
      cached: true,
      metadata: {
        version: found,
        provider: "local-tree",
        origin: tree,
        sha256: head ? `git:${head}` : `path:${tree}`,
        patches: [],
        notes: [],
      },
    };
  },

  "local-mirror": async (ctx, entry) => {
    const dir = ctx.kernel.local_mirror;
    if (!dir) throw new NotAvailableError("", "kernel.local_mirror is not set");
    const candidates = [
      { name: `linux-${entry.version}.tar.xz`, sha256: entry.kernel_org?.sha256 },
      { name: `linux_${entry.version}.orig.tar.xz`, sha256: entry.debian?.orig_sha256 },
    ];
    for (const c of candidates) {
      const path = join(dir, c.name);
      if (!existsSync(path)) continue;
      if (!c.sha256)
        throw new UserError(
          `${path} has no sha256 pin in kernel-versions.yaml`,
          "add the pin before using it",
        );
      const dest = join(ctx.cache.root, "downloads", c.name);
      await mkdir(join(ctx.cache.root, "downloads"), { recursive: true });
      await download({ url: path, dest, sha256: c.sha256, timeoutMs: DOWNLOAD_TIMEOUT_MS });
      return fromTarball(ctx, "local-mirror", entry, dest, c.sha256);
    }
    throw new NotAvailableError(dir, `neither ${candidates.map((c) => c.name).join(" nor ")} is there`);
  },
};

export interface ProviderAttempt {
  provider: KernelProvider;
  outcome: string;
}

/**
 * The first provider (in config order) whose tree is already cached, else the first that can
 * fetch it. Errors other than "not available" (a checksum mismatch, a bad tarball) stop the
 * chain: they must be fixed, not papered over by another provider.
 */
export async function obtainKernelSource(
  ctx: SourceContext,
  entry: KernelVersionEntry,
): Promise<KernelSource & { attempts: ProviderAttempt[] }> {
  requireHostTools(["tar", "xz", "patch", "gpgv"], [], "kernel sources");
  const attempts: ProviderAttempt[] = [];
  for (const provider of ctx.kernel.providers) {
    if (provider === "local-tree") continue;
    const hit = await ctx.cache.lookup<KernelSourceMetadata>(
      STAGE,
      sourceKey(entry.version, provider, ctx.kernel),
    );
    if (hit) return { tree: join(hit.dir, "tree"), metadata: hit.metadata, cached: true, attempts };
  }
  for (const provider of ctx.kernel.providers) {
    try {
      const source = await PROVIDERS[provider](ctx, entry);
      return { ...source, attempts };
    } catch (err) {
      if (!(err instanceof NotAvailableError)) throw err;
      attempts.push({ provider, outcome: err.message });
      ctx.log(`${provider}: ${err.message}`);
    }
  }
  throw new UserError(
    `no provider could supply linux ${entry.version}:\n${attempts.map((a) => `  - ${a.provider}: ${a.outcome}`).join("\n")}`,
    "check the network to the Debian mirror, or set kernel.local_tree / kernel.local_mirror in the config",
  );
}
