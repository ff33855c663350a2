/**
 * The baseline fetch against a loopback server that plays GitHub's REST API in the shapes it
 * answers with (repos/{repo}, workflow runs, run artifacts, a 302 to the zip's blob URL):
 * no successful run yet, a run without the artifact, a good run. Then the same through
 * `cr-guest ci report`, which compares with that baseline.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { zipSync, strToU8 } from "fflate";
import { fetchBaseline, githubContext, unzipInto } from "../../scripts/lib/github-baseline.js";
import { tempDir } from "../helpers/temp.js";

type State = "no-run" | "no-artifact" | "good";

const REPO = "acme/cr-guest";
const seen: { url: string; auth?: string }[] = [];
let state: State = "no-run";
let server: Server;
let base = "";
const zip = zipSync({
  "matrix.json": strToU8('{"schema":2}\n'),
  "cells/4.1.1_6.12_unpatched_native/cell.json": strToU8("{}\n"),
});

function answer(req: IncomingMessage): {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  raw?: Uint8Array;
} {
  const url = new URL(req.url!, base);
  if (url.pathname === `/repos/${REPO}`)
    return { status: 200, body: { id: 1, full_name: REPO, default_branch: "main", private: false } };
  if (url.pathname === `/repos/${REPO}/actions/workflows/cr-guest-matrix.yml/runs`) {
    expect(url.searchParams.get("branch")).toBe("main");
    expect(url.searchParams.get("status")).toBe("success");
    const run = {
      id: 4242,
      name: "cr-guest matrix",
      head_branch: "main",
      head_sha: "ab12",
      event: "push",
      status: "completed",
      conclusion: "success",
      workflow_id: 7,
      run_number: 12,
    };
    return {
      status: 200,
      body: { total_count: state === "no-run" ? 0 : 1, workflow_runs: state === "no-run" ? [] : [run] },
    };
  }
  if (url.pathname === `/repos/${REPO}/actions/runs/4242/artifacts`) {
    const art = {
      id: 99,
      node_id: "x",
      name: "matrix-report",
      size_in_bytes: zip.length,
      url: `${base}/repos/${REPO}/actions/artifacts/99`,
      archive_download_url: `${base}/repos/${REPO}/actions/artifacts/99/zip`,
      expired: false,
      created_at: "2026-11-29T10:00:00Z",
      expires_at: "2027-02-27T10:00:00Z",
      workflow_run: { id: 4242, head_branch: "main" },
    };
    const arts = state === "good" ? [art] : [{ ...art, name: "cells-4.1.1" }];
    return { status: 200, body: { total_count: arts.length, artifacts: arts } };
  }
  // GitHub answers the download with a redirect to a signed blob URL.
  if (url.pathname === `/repos/${REPO}/actions/artifacts/99/zip`)
    return { status: 302, headers: { Location: `${base}/blob/99.zip?sig=abc` } };
  if (url.pathname === "/blob/99.zip")
    return { status: 200, raw: zip, headers: { "Content-Type": "application/zip" } };
  return { status: 404, body: { message: "Not Found" } };
}

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url!, auth: req.headers.authorization });
    const a = answer(req);
    res.writeHead(a.status, { "Content-Type": "application/json", ...a.headers });
    res.end(a.raw ? Buffer.from(a.raw) : a.body === undefined ? "" : JSON.stringify(a.body));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const env = () => ({
  GITHUB_API_URL: base,
  GITHUB_REPOSITORY: REPO,
  GITHUB_TOKEN: "t0ken",
  GITHUB_WORKFLOW_REF: `${REPO}/.github/workflows/cr-guest-matrix.yml@refs/pull/3/merge`,
});

describe("the baseline from GitHub's REST API", () => {
  it("is not asked for off GitHub; on GitHub the workflow file comes from GITHUB_WORKFLOW_REF", () => {
    expect(githubContext({}, "cr-guest-matrix.yml")).toBeUndefined();
    expect(githubContext({ GITHUB_REPOSITORY: REPO }, "x.yml")).toBeUndefined();
    expect(githubContext(env(), "other.yml")).toMatchObject({
      api: base,
      repo: REPO,
      workflow: "cr-guest-matrix.yml",
      artifact: "matrix-report",
    });
  });

  it("no successful run yet: says so", async () => {
    state = "no-run";
    const got = await fetchBaseline(githubContext(env(), "x")!, tempDir("crg-bl-"));
    expect(got).toMatchObject({ status: "no-run", branch: "main" });
  });

  it("a run without the artifact: says which run", async () => {
    state = "no-artifact";
    const got = await fetchBaseline(githubContext(env(), "x")!, tempDir("crg-bl-"));
    expect(got).toMatchObject({ status: "no-artifact", runId: 4242 });
    if (got.status === "no-artifact") expect(got.note).toContain("no unexpired 'matrix-report' artifact");
  });

  it("a good run: follows the redirect, unzips the report; the token goes to the API only", async () => {
    state = "good";
    seen.length = 0;
    const dir = tempDir("crg-bl-");
    const got = await fetchBaseline(githubContext(env(), "x")!, dir);
    expect(got).toMatchObject({
      status: "ok",
      runId: 4242,
      files: ["cells/4.1.1_6.12_unpatched_native/cell.json", "matrix.json"],
    });
    expect(readFileSync(join(dir, "matrix.json"), "utf8")).toBe('{"schema":2}\n');
    expect(seen.filter((s) => !s.url.startsWith("/blob/")).every((s) => s.auth === "Bearer t0ken")).toBe(
      true,
    );
    expect(seen.map((s) => s.url.split("?")[0])).toContain("/blob/99.zip");
  });

  it("an HTTP error names the URL and the fix; a zip entry outside its directory is refused", async () => {
    const ctx = { ...githubContext(env(), "x")!, repo: "acme/nope" };
    await expect(fetchBaseline(ctx, tempDir("crg-bl-"))).rejects.toThrow(
      /GitHub API .*\/repos\/acme\/nope: HTTP 404/,
    );
    const dir = tempDir("crg-bl-");
    await expect(unzipInto(zipSync({ "../evil": strToU8("x") }), dir)).rejects.toThrow(
      /outside its directory/,
    );
    expect(existsSync(join(dir, "..", "evil"))).toBe(false);
  });
});
