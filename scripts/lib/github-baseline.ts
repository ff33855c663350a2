/**
 * The baseline of a CI run: the `matrix-report` artifact of the latest successful run of this
 * workflow on the repository's default branch, fetched with GitHub's REST API from Node
 * (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN; no `gh`, whose Debian version lacks the
 * flags). The artifact comes as a zip (GitHub redirects the download to its blob store).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, normalize } from "node:path";
import { unzipSync } from "fflate";
import { UserError } from "./errors.js";

export interface GithubContext {
  api: string;
  repo: string;
  token: string;
  /** The workflow file name (cr-guest-matrix.yml) or id. */
  workflow: string;
  artifact: string;
}

/** The context from GitHub Actions' environment; undefined when not on GitHub (or no token). */
export function githubContext(
  env: NodeJS.ProcessEnv,
  workflowFile: string,
  artifact = "matrix-report",
): GithubContext | undefined {
  if (!env.GITHUB_REPOSITORY || !env.GITHUB_TOKEN) return undefined;
  // GITHUB_WORKFLOW_REF: owner/repo/.github/workflows/<file>@<ref>
  const fromRef = /\/\.github\/workflows\/([^@]+)@/.exec(env.GITHUB_WORKFLOW_REF ?? "")?.[1];
  return {
    api: (env.GITHUB_API_URL ?? "https://api.github.com").replace(/\/$/, ""),
    repo: env.GITHUB_REPOSITORY,
    token: env.GITHUB_TOKEN,
    workflow: fromRef ?? workflowFile,
    artifact,
  };
}

export type BaselineResult =
  | { status: "ok"; runId: number; branch: string; dir: string; files: string[] }
  | { status: "no-run"; branch: string; note: string }
  | { status: "no-artifact"; runId: number; branch: string; note: string };

async function api<T>(ctx: GithubContext, path: string, timeoutMs: number): Promise<T> {
  const url = `${ctx.api}${path}`;
  const res = await fetch(url, {
    headers: {
      Authorization: `Bearer ${ctx.token}`,
      Accept: "application/vnd.github+json",
      "X-GitHub-Api-Version": "2022-11-28",
      "User-Agent": "cr-guest",
    },
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok)
    throw new UserError(
      `GitHub API ${url}: HTTP ${res.status} ${res.statusText}`,
      "check GITHUB_TOKEN and the workflow's permissions (actions: read)",
      3,
    );
  return (await res.json()) as T;
}

/** Unpacks a zip into dir, refusing entries that would land outside it. */
export async function unzipInto(zip: Uint8Array, dir: string): Promise<string[]> {
  const files = unzipSync(zip);
  const written: string[] = [];
  for (const [name, data] of Object.entries(files)) {
    if (name.endsWith("/")) continue;
    const rel = normalize(name);
    if (rel.startsWith("..") || rel.startsWith("/"))
      throw new UserError(
        `the artifact holds '${name}', a path outside its directory`,
        "refusing it: the baseline is not used",
      );
    const dest = join(dir, rel);
    await mkdir(dirname(dest), { recursive: true });
    await writeFile(dest, data);
    written.push(rel);
  }
  return written.sort();
}

/** Fetches the baseline report into dir; what there was to fetch is the result, never a throw for "none yet". */
export async function fetchBaseline(
  ctx: GithubContext,
  dir: string,
  timeoutMs = 60_000,
): Promise<BaselineResult> {
  const repo = await api<{ default_branch: string }>(ctx, `/repos/${ctx.repo}`, timeoutMs);
  const branch = repo.default_branch;
  const runs = await api<{
    total_count: number;
    workflow_runs: { id: number; head_branch: string; conclusion: string | null }[];
  }>(
    ctx,
    `/repos/${ctx.repo}/actions/workflows/${encodeURIComponent(ctx.workflow)}/runs?branch=${encodeURIComponent(branch)}&status=success&per_page=1`,
    timeoutMs,
  );
  const run = runs.workflow_runs[0];
  if (!run)
    return { status: "no-run", branch, note: `no successful run of ${ctx.workflow} on ${branch} yet` };
  const arts = await api<{
    total_count: number;
    artifacts: { name: string; expired: boolean; archive_download_url: string }[];
  }>(
    ctx,
    `/repos/${ctx.repo}/actions/runs/${run.id}/artifacts?name=${encodeURIComponent(ctx.artifact)}`,
    timeoutMs,
  );
  const art = arts.artifacts.find((a) => a.name === ctx.artifact && !a.expired);
  if (!art)
    return {
      status: "no-artifact",
      runId: run.id,
      branch,
      note: `run ${run.id} on ${branch} has no unexpired '${ctx.artifact}' artifact`,
    };
  // The download answers 302 to a signed blob URL; fetch follows it and drops the token there.
  const res = await fetch(art.archive_download_url, {
    headers: { Authorization: `Bearer ${ctx.token}`, "User-Agent": "cr-guest" },
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok)
    throw new UserError(
      `downloading ${art.archive_download_url}: HTTP ${res.status}`,
      "the artifact may have expired; the next run of main makes a new one",
      3,
    );
  const files = await unzipInto(new Uint8Array(await res.arrayBuffer()), dir);
  return { status: "ok", runId: run.id, branch, dir, files };
}
