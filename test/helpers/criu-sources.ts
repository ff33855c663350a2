/**
 * Real CRIU source inputs for tests: the upstream tag archives in ../shared/criu-tarballs
 * (byte-identical to GitHub's), unpacked into release trees and made into git checkouts.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { unavailable } from "./cli.js";
import { tempDir } from "./temp.js";

// An empty value (a `$(cd ...)` that failed) is no mirror: the default, then the error below.
export const CRIU_TARBALLS =
  process.env.CR_GUEST_CRIU_MIRROR || join(REPO_ROOT, "..", "shared", "criu-tarballs");

/** Why tests on the real tarballs cannot run here; in CI their absence is a failure. */
export function missingTarballs(): string | undefined {
  if (existsSync(join(CRIU_TARBALLS, "criu-3.19.tar.gz"))) return undefined;
  return unavailable(`no CRIU tag archives in ${CRIU_TARBALLS} (set CR_GUEST_CRIU_MIRROR)`);
}

/** The v<version> release tree, unpacked from its tag archive into a fresh directory. */
export function unpackRelease(version: string): string {
  const dir = tempDir(`crg-criu-${version}-`);
  execFileSync("tar", ["-xzf", join(CRIU_TARBALLS, `criu-${version}.tar.gz`), "-C", dir]);
  return join(dir, `criu-${version}`);
}

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@example.org",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@example.org",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, env: GIT_ENV }).toString().trim();
}

/**
 * A git checkout of a release: the tag's tree as the first commit (tagged v<version>), and one
 * local commit on top, as a CRIU developer's checkout looks.
 */
export function gitCheckoutOf(version: string): { dir: string; tagged: string; head: string } {
  const dir = unpackRelease(version);
  git(dir, "init", "--quiet", "-b", "criu-dev");
  // -f: the release tree holds files that CRIU's .gitignore patterns match (tracked upstream).
  git(dir, "add", "-A", "-f");
  git(dir, "commit", "--quiet", "-m", `v${version}`);
  git(dir, "tag", `v${version}`);
  const tagged = git(dir, "rev-parse", "HEAD");
  execFileSync("sh", ["-c", 'echo "/* local work */" >> criu/cr-check.c'], { cwd: dir });
  git(dir, "commit", "--quiet", "-am", "local: a comment in cr-check.c");
  return { dir, tagged, head: git(dir, "rev-parse", "HEAD") };
}
