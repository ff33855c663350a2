/**
 * The agent stage: a kata-agent for the image, either a prebuilt binary (--agent FILE) or a
 * kata-containers tree patched for setsid() and built (--kata-src DIR). The user's tree is
 * never changed: it is copied first. Output: images/agent/<key>/{kata-agent, metadata.json}.
 * No agent configured is a valid outcome: the image says "no agent".
 */
import { repoData } from "../data/repo-data.js";
import { existsSync, readFileSync } from "node:fs";
import { chmod, copyFile, open, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ArtifactCache } from "../lib/cache.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { cacheKey, sha256, sha256File } from "../lib/hash.js";
import { kataVersion, patchAgentSource, setsidState, buildAgent, type SetsidState } from "./agent.js";
import { selectAgentPatch } from "../data/agent-patches.js";

export const AGENT_RECIPE_VERSION = 1;

export interface AgentMetadata {
  source: "prebuilt" | "kata-src";
  from: string;
  kata_version: string | null;
  /** setsid() for container processes before and after cr-guest's patch; null for a prebuilt binary. */
  setsid_before: SetsidState | null;
  setsid_after: SetsidState | null;
  patch: { name: string; sha256: string } | null;
  message: string;
  agent: { bytes: number; sha256: string };
  created: string;
}

export interface AgentArtifact {
  dir: string;
  binary: string;
  cached: boolean;
  metadata: AgentMetadata;
}

async function requireElf(file: string, what: string): Promise<void> {
  if (!existsSync(file))
    throw new UserError(`${what} ${file} does not exist`, "pass the path of a kata-agent binary");
  const fh = await open(file, "r");
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if (!head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])))
      throw new UserError(
        `${what} ${file} is not an ELF executable`,
        "pass the kata-agent binary itself (e.g. /usr/bin/kata-agent from a Kata image)",
      );
  } finally {
    await fh.close();
  }
}

/** What identifies a source tree's agent: its version, the rustjail file, the lock file and the patch. */
export function kataSourceIdentity(kataSrc: string): { version: string; state: SetsidState; key: string } {
  const catalog = repoData().agentPatches;
  const version = kataVersion(kataSrc);
  const rs = join(kataSrc, catalog.file);
  if (!existsSync(rs))
    throw new UserError(`${rs} is missing`, "pass the top of a kata-containers tree with src/agent");
  const text = readFileSync(rs, "utf8");
  const state = setsidState(text);
  const patch = state === "unconditional" ? undefined : selectAgentPatch(version, catalog);
  const lock = join(kataSrc, "src/agent/Cargo.lock");
  const key = cacheKey({
    version,
    container_rs: sha256(text),
    cargo_lock: existsSync(lock) ? sha256(readFileSync(lock)) : null,
    patch: patch?.sha256 ?? null,
    recipe: AGENT_RECIPE_VERSION,
  });
  return { version, state, key };
}

export async function runAgentStage(
  config: PipelineConfig,
  log: (l: string) => void = () => undefined,
): Promise<AgentArtifact | undefined> {
  const cache = new ArtifactCache(config.cache_dir);
  if (config.agent.binary) {
    const file = resolve(config.agent.binary);
    await requireElf(file, "agent binary");
    const digest = await sha256File(file);
    const art = await cache.getOrBuild<AgentMetadata>(
      "agent",
      cacheKey({ prebuilt: digest, recipe: AGENT_RECIPE_VERSION }),
      async (tmp) => {
        await copyFile(file, join(tmp, "kata-agent"));
        await chmod(join(tmp, "kata-agent"), 0o755);
        return {
          source: "prebuilt",
          from: file,
          kata_version: null,
          setsid_before: null,
          setsid_after: null,
          patch: null,
          message:
            "prebuilt agent: cr-guest cannot see whether it calls setsid() for every container process (the pidns scenario shows it)",
          agent: { bytes: (await stat(file)).size, sha256: digest },
          created: new Date().toISOString(),
        };
      },
    );
    return { dir: art.dir, binary: join(art.dir, "kata-agent"), cached: art.cached, metadata: art.metadata };
  }
  if (config.agent.kata_src) {
    const src = resolve(config.agent.kata_src);
    if (!existsSync(src))
      throw new UserError(
        `kata source tree ${src} does not exist`,
        "pass the top of a kata-containers checkout with --kata-src DIR",
      );
    const id = kataSourceIdentity(src);
    const art = await cache.getOrBuild<AgentMetadata>("agent", id.key, async (tmp) => {
      // Work on a copy: the user's tree stays as it was.
      const tree = join(tmp, "kata");
      log(`copying ${src} (without build outputs)`);
      await run(["rsync", "-a", "--exclude", "/.git", "--exclude", "target/", `${src}/`, `${tree}/`], {
        timeoutMs: 20 * 60_000,
      });
      const patched = await patchAgentSource(tree);
      log(patched.message);
      const built = await buildAgent(tree, {
        timeoutMs: config.agent.build_timeout_minutes * 60_000,
        logFile: join(tmp, "build.log"),
        onLine: log,
      });
      await copyFile(built, join(tmp, "kata-agent"));
      await chmod(join(tmp, "kata-agent"), 0o755);
      await run(["rm", "-rf", tree], { timeoutMs: 10 * 60_000 });
      const out = join(tmp, "kata-agent");
      return {
        source: "kata-src",
        from: src,
        kata_version: patched.version,
        setsid_before: patched.before,
        setsid_after: patched.after,
        patch: patched.patch ?? null,
        message: patched.message,
        agent: { bytes: (await stat(out)).size, sha256: await sha256File(out) },
        created: new Date().toISOString(),
      };
    });
    return { dir: art.dir, binary: join(art.dir, "kata-agent"), cached: art.cached, metadata: art.metadata };
  }
  return undefined;
}
