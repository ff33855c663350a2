/**
 * The setsid-patched kata-agent. Kata 3.0-4.0's rustjail calls setsid() for a container
 * process only when it has a terminal; CRIU then refuses the pid namespace ("A session leader
 * of X(1) is outside of its pid namespace"). Kata 4.1.0 calls it unconditionally.
 * Detection and patch selection are pure; applying and building run commands.
 */
import { repoData } from "../data/repo-data.js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import semver from "semver";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { findInPath } from "../lib/host-tools.js";
import { selectAgentPatch } from "../data/agent-patches.js";

export type SetsidState = "unconditional" | "terminal-only" | "absent";

/**
 * unconditional: a setsid() call at the child function's top level (4-space indent), as in
 * Kata 4.1.0 or after our patch; terminal-only: setsid() only nested inside the terminal branch.
 */
export function setsidState(containerRs: string): SetsidState {
  if (/^ {4}unistd::setsid\(\)/m.test(containerRs)) return "unconditional";
  if (/^\s+unistd::setsid\(\)/m.test(containerRs)) return "terminal-only";
  return "absent";
}

export function kataVersion(kataSrc: string): string {
  const file = join(kataSrc, "VERSION");
  if (!existsSync(file))
    throw new UserError(
      `${kataSrc} has no VERSION file: is it a kata-containers checkout?`,
      "pass the top of a kata-containers source tree",
    );
  const v = semver.coerce(readFileSync(file, "utf8").trim());
  if (!v) throw new UserError(`${file} does not hold a version`, "pass a kata-containers release tree");
  return v.version;
}

export interface AgentPatchResult {
  version: string;
  before: SetsidState;
  after: SetsidState;
  patch?: { name: string; sha256: string };
  message: string;
}

/** Patches a kata source tree in place (callers pass a copy), dry run first. */
export async function patchAgentSource(
  kataSrc: string,
  catalog = repoData().agentPatches,
): Promise<AgentPatchResult> {
  const version = kataVersion(kataSrc);
  const file = join(kataSrc, catalog.file);
  if (!existsSync(file))
    throw new UserError(`${file} is missing`, "pass a kata-containers tree with src/agent");
  const before = setsidState(readFileSync(file, "utf8"));
  if (before === "unconditional")
    return {
      version,
      before,
      after: before,
      message: `Kata ${version} already calls setsid() for every container process: no patch needed`,
    };
  const patch = selectAgentPatch(version, catalog);
  if (!patch)
    throw new UserError(
      `Kata ${version} should call setsid() unconditionally, but ${catalog.file} does not`,
      "check the tree; it may be modified",
    );
  const dry = await run(["patch", "-p1", "--dry-run", "--batch", "--forward", "-i", patch.path], {
    cwd: kataSrc,
    timeoutMs: 60_000,
    allowFailure: true,
  });
  if (dry.exitCode !== 0)
    throw new UserError(
      `${patch.name} does not apply to Kata ${version}:\n${(dry.stdout + dry.stderr).trim()}`,
      "add a variant to agent-patches/ for this source layout",
    );
  await run(["patch", "-p1", "--batch", "--forward", "-i", patch.path], { cwd: kataSrc, timeoutMs: 60_000 });
  const after = setsidState(readFileSync(file, "utf8"));
  if (after !== "unconditional") throw new Error(`${patch.name} applied but setsid() is still ${after}`);
  return {
    version,
    before,
    after,
    patch: { name: patch.name, sha256: patch.sha256 },
    message: `Kata ${version}: applied ${patch.name}`,
  };
}

/**
 * Builds the agent as Kata does (`make -C src/agent`, musl). Offline, the crates must already
 * be vendored or in cargo's cache: checked first so the failure says what is missing.
 */
export async function buildAgent(
  kataSrc: string,
  opts: { timeoutMs: number; logFile: string; onLine?: (l: string) => void },
): Promise<string> {
  const missing: string[] = [];
  if (!findInPath("cargo")) missing.push("a Rust toolchain (cargo; Kata pins its version in versions.yaml)");
  if (!findInPath("make")) missing.push("make");
  if (missing.length)
    throw new UserError(
      `cannot build the kata-agent: missing ${missing.join(", ")}`,
      "install rustup with the musl target, or pass a prebuilt agent with --agent FILE",
    );
  const targets = await run(["rustup", "target", "list", "--installed"], {
    timeoutMs: 60_000,
    allowFailure: true,
  });
  if (targets.exitCode !== 0 || !/x86_64-unknown-linux-musl/.test(targets.stdout))
    missing.push("the x86_64-unknown-linux-musl Rust target (rustup target add x86_64-unknown-linux-musl)");
  const fetch = await run(
    ["cargo", "fetch", "--offline", "--manifest-path", join(kataSrc, "src/agent/Cargo.toml")],
    { timeoutMs: 5 * 60_000, allowFailure: true },
  );
  if (fetch.exitCode !== 0)
    missing.push(
      `the agent's crates offline (cargo fetch --offline: ${fetch.stderr.trim().split("\n").at(-1) ?? "failed"}); vendor them with 'cargo vendor' where crates.io is reachable`,
    );
  if (missing.length)
    throw new UserError(
      `cannot build the kata-agent here: missing ${missing.join("; ")}`,
      "or pass a prebuilt agent with --agent FILE",
    );
  await run(["make", "-C", join(kataSrc, "src/agent"), "LIBC=musl"], {
    timeoutMs: opts.timeoutMs,
    logFile: opts.logFile,
    onLine: opts.onLine,
    env: { CARGO_NET_OFFLINE: "true" },
  });
  const built = join(kataSrc, "src/agent/target/x86_64-unknown-linux-musl/release/kata-agent");
  if (!existsSync(built))
    throw new UserError(`the agent build finished but ${built} is missing`, `read ${opts.logFile}`);
  return built;
}

/** The systemd unit Kata's osbuilder installs with the agent. */
export const KATA_AGENT_UNIT = `[Unit]
Description=Kata Containers Agent
Documentation=https://github.com/kata-containers/kata-containers
Wants=kata-containers.target

[Service]
# Send agent output to tty to allow capture debug logs
# from a VM vsock port
StandardOutput=tty
Type=simple
ExecStart=/usr/bin/kata-agent
LimitNOFILE=1048576
# ExecStop is required for static agent tracing; in all other scenarios
# the runtime handles shutting down the VM.
ExecStop=/bin/sync ; /usr/bin/systemctl --force poweroff
FailureAction=poweroff
# Discourage OOM-killer from touching the agent
OOMScoreAdjust=-997
`;

/** The target Kata's osbuilder enables from basic.target; it pulls in the agent. */
export const KATA_CONTAINERS_TARGET = `[Unit]
Description=Kata Containers Agent Target
Requires=basic.target
Requires=tmp.mount
Wants=chronyd.service
Requires=kata-agent.service
Conflicts=rescue.service rescue.target
After=basic.target rescue.service rescue.target
AllowIsolate=yes
`;
