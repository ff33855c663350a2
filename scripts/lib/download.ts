/**
 * Downloads one file to a path, resumably and verified: bytes go to `<dest>.part`, which is
 * renamed to `dest` only once its size and sha256 match. `file://` URLs and absolute paths
 * are copied the same way, so a local mirror directory can stand in for a server.
 */
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { mkdir, rename, rm, stat, truncate } from "node:fs/promises";
import { dirname, isAbsolute } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { errorMessage, UserError } from "./errors.js";
import { sha256File } from "./hash.js";
import { currentBranch } from "./exec.js";
import { KeyedQueue } from "./keyed-queue.js";

/** The provider cannot serve this file (404/410, unknown host, connection refused): try the next one. */
export class NotAvailableError extends UserError {
  constructor(
    readonly url: string,
    readonly reason: string,
    /** The HTTP status when the server answered (404, 410, or 5xx after retries). */
    readonly status?: number,
  ) {
    super(
      `${url} is not available: ${reason}`,
      "another mirror or provider may have it; check the URL and the network",
    );
    this.name = "NotAvailableError";
  }
}

export interface DownloadOptions {
  url: string;
  dest: string;
  sha256?: string;
  size?: number;
  /** Deadline for the whole download, retries included. */
  timeoutMs: number;
  /** Extra attempts after a network error or a truncated body (default 3). */
  retries?: number;
  onProgress?: (bytes: number, total?: number) => void;
  /** Where the sha256 pin comes from, named in the mismatch hint. */
  pinnedIn?: string;
}

export interface DownloadResult {
  path: string;
  sha256: string;
  bytes: number;
  /** Some bytes came from an earlier, interrupted attempt. */
  resumed: boolean;
}

/** Error codes meaning the host cannot be reached at all: retrying the same host is pointless. */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_NONAME",
]);

/** A failure worth another attempt (with resume): a dropped connection, a 5xx, a short body. */
class Retryable extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

const byDestination = new KeyedQueue();

/**
 * Fetches `opts.url` to `opts.dest` (verified, then renamed into place). Calls for the same
 * destination run one after another: they share the `.part` file (the cold pipeline's side
 * work and the kernel stage both read a suite's index).
 */
export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  return byDestination.run(opts.dest, () => downloadOnce(opts));
}

async function downloadOnce(opts: DownloadOptions): Promise<DownloadResult> {
  const expected = opts.sha256?.toLowerCase();
  if (expected && existsSync(opts.dest)) {
    const size = (await stat(opts.dest)).size;
    if ((opts.size === undefined || size === opts.size) && (await sha256File(opts.dest)) === expected) {
      return { path: opts.dest, sha256: expected, bytes: size, resumed: false };
    }
    await rm(opts.dest, { force: true }); // stale or corrupt: nothing may mistake it for the pinned file
  }
  await mkdir(dirname(opts.dest), { recursive: true });
  const part = `${opts.dest}.part`;
  const branch = currentBranch();
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  // A download of a branch of work stops with it (the other branch failed).
  const signal = branch ? AbortSignal.any([deadline, branch.signal]) : deadline;
  const local = localPath(opts.url);
  try {
    if (local !== undefined) {
      await copyLocal(local, part, opts, signal);
      return await verifyAndRename(part, opts, false);
    }
    if (!/^https?:\/\//i.test(opts.url)) {
      throw new UserError(
        `cannot download ${opts.url}: only http(s)://, file:// and absolute paths are supported`,
      );
    }
    // A .part left by an earlier run is resumed only when a sha256 can catch a bad splice
    // (the file may have changed on the server since).
    if (!expected) await rm(part, { force: true });
    const hadPart = existsSync(part);
    let resumed = await fetchWithRetries(part, opts, signal);
    try {
      return await verifyAndRename(part, opts, resumed);
    } catch (err) {
      if (!hadPart || !(err instanceof UserError)) throw err;
      // The old .part may belong to another version of the file: one clean try from zero.
      await rm(part, { force: true });
      resumed = await fetchWithRetries(part, opts, signal);
      return await verifyAndRename(part, opts, resumed);
    }
  } catch (err) {
    if (branch?.signal.aborted) throw branch.signal.reason;
    if (signal.aborted) {
      throw new UserError(
        `download of ${opts.url} did not finish within ${seconds(opts.timeoutMs)} s`,
        `the partial file ${part} is kept and resumed next time; a slow mirror may need a longer deadline`,
      );
    }
    throw err;
  }
}

function localPath(url: string): string | undefined {
  if (url.startsWith("file://")) return fileURLToPath(url);
  if (isAbsolute(url)) return url;
  return undefined;
}

async function copyLocal(
  src: string,
  part: string,
  opts: DownloadOptions,
  signal: AbortSignal,
): Promise<void> {
  let total: number;
  try {
    total = (await stat(src)).size;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new NotAvailableError(opts.url, "no such file");
    throw err;
  }
  let bytes = 0;
  await pipeline(
    createReadStream(src),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        bytes += chunk.length;
        opts.onProgress?.(bytes, total);
        yield chunk;
      }
    },
    createWriteStream(part),
    { signal },
  );
}

/** Fetches into `part`, resuming after failures; returns whether any attempt resumed. */
async function fetchWithRetries(part: string, opts: DownloadOptions, signal: AbortSignal): Promise<boolean> {
  const retries = opts.retries ?? 3;
  let resumed = false;
  for (let attempt = 0; ; attempt++) {
    try {
      if (await fetchOnce(part, opts, signal)) resumed = true;
      return resumed;
    } catch (err) {
      if (signal.aborted || !(err instanceof Retryable)) throw err;
      if (attempt >= retries) {
        throw new NotAvailableError(
          opts.url,
          `${err.message} (gave up after ${attempt + 1} attempts)`,
          err.status,
        );
      }
      await sleep(Math.min(250 * 2 ** attempt, 4000), signal);
    }
  }
}

/** One HTTP request appending to `part`. Returns true if it continued an existing .part. */
async function fetchOnce(part: string, opts: DownloadOptions, signal: AbortSignal): Promise<boolean> {
  let offset = existsSync(part) ? (await stat(part)).size : 0;
  if (opts.size !== undefined && offset > opts.size) {
    await rm(part, { force: true });
    offset = 0;
  }
  if (opts.size !== undefined && offset === opts.size && offset > 0) return true; // complete: verify it

  // identity: a transparently decompressed body would break byte offsets and sizes.
  const headers: Record<string, string> = { "accept-encoding": "identity" };
  if (offset > 0) headers.range = `bytes=${offset}-`;
  let res: Response;
  try {
    res = await fetch(opts.url, { headers, signal, redirect: "follow" });
  } catch (err) {
    throw classifyNetworkError(opts.url, err, signal);
  }

  if (res.status === 404 || res.status === 410) {
    await res.body?.cancel();
    throw new NotAvailableError(opts.url, `HTTP ${res.status}`, res.status);
  }
  if (res.status === 416 && offset > 0) {
    // The .part is not a prefix the server can continue (usually already complete or stale).
    await res.body?.cancel();
    await rm(part, { force: true });
    throw new Retryable(`HTTP 416 for a resume at byte ${offset}; restarting from zero`);
  }
  if (res.status >= 500 || res.status === 429 || res.status === 408) {
    await res.body?.cancel();
    throw new Retryable(`HTTP ${res.status}`, res.status);
  }
  if (res.status !== 200 && res.status !== 206) {
    await res.body?.cancel();
    throw new UserError(`download of ${opts.url} failed: HTTP ${res.status} ${res.statusText}`);
  }

  let start = 0;
  if (res.status === 206) {
    const range = /^bytes (\d+)-\d+\/(\d+|\*)/.exec(res.headers.get("content-range") ?? "");
    start = range ? Number(range[1]) : -1;
    if (start !== offset) {
      await res.body?.cancel();
      await rm(part, { force: true });
      throw new Retryable(
        `server answered a resume at byte ${offset} with range "${res.headers.get("content-range")}"`,
      );
    }
  }
  // 200 to a Range request: the server ignores Range, so start over (truncate, then write).
  if (start === 0 && offset > 0) await truncate(part, 0);

  const length = res.headers.get("content-length");
  const bodyBytes = length !== null ? Number(length) : undefined;
  const total = bodyBytes !== undefined ? start + bodyBytes : opts.size;
  let bytes = start;
  if (!res.body) throw new Retryable("response without a body");
  try {
    await pipeline(
      res.body as unknown as AsyncIterable<Uint8Array>,
      async function* (source: AsyncIterable<Uint8Array>) {
        for await (const chunk of source) {
          bytes += chunk.length;
          opts.onProgress?.(bytes, total);
          yield chunk;
        }
      },
      createWriteStream(part, { flags: start > 0 ? "a" : "w" }),
    );
  } catch (err) {
    if (signal.aborted) throw err;
    throw new Retryable(`connection lost after ${bytes} bytes: ${describeCause(err)}`);
  }
  if (total !== undefined && bytes < total)
    throw new Retryable(`connection closed after ${bytes} of ${total} bytes`);
  return start > 0;
}

function classifyNetworkError(url: string, err: unknown, signal: AbortSignal): Error {
  if (signal.aborted) return err as Error;
  const code = causeCode(err);
  if (code && UNREACHABLE.has(code)) return new NotAvailableError(url, `${code} (host unreachable)`);
  return new Retryable(describeCause(err));
}

function causeCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/** undici reports "fetch failed"/"terminated"; the useful part is in `cause`. */
function describeCause(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  return cause ? `${errorMessage(err)} (${errorMessage(cause)})` : errorMessage(err);
}

async function verifyAndRename(
  part: string,
  opts: DownloadOptions,
  resumed: boolean,
): Promise<DownloadResult> {
  const bytes = (await stat(part)).size;
  if (opts.size !== undefined && bytes !== opts.size) {
    await rm(part, { force: true });
    throw new UserError(
      `size mismatch for ${opts.url}: expected ${opts.size} bytes, got ${bytes}`,
      mismatchHint(opts),
    );
  }
  const actual = await sha256File(part);
  const expected = opts.sha256?.toLowerCase();
  if (expected && actual !== expected) {
    await rm(part, { force: true });
    throw new UserError(
      `sha256 mismatch for ${opts.url}:\n  expected ${expected}\n  actual   ${actual}`,
      mismatchHint(opts),
    );
  }
  await rename(part, opts.dest);
  return { path: opts.dest, sha256: actual, bytes, resumed };
}

function mismatchHint(opts: DownloadOptions): string {
  return (
    `the mirror copy is corrupt or the pin is wrong; the partial download was deleted, so retrying ` +
    `fetches it afresh (delete ${opts.dest} too if it persists) / check the pin in ${opts.pinnedIn ?? "the file that pins it"}`
  );
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function seconds(ms: number): string {
  return ms >= 10_000 ? String(Math.round(ms / 1000)) : (ms / 1000).toFixed(1);
}
