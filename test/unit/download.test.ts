/** download() against a real HTTP server on 127.0.0.1 that can truncate, stall, ignore Range or lie. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { AddressInfo } from "node:net";
import { download, NotAvailableError } from "../../scripts/lib/download.js";
import { UserError } from "../../scripts/lib/errors.js";
import { sha256 } from "../../scripts/lib/hash.js";
import { tempDir } from "../helpers/temp.js";

const PAYLOAD = randomBytes(1024 * 1024 + 123);
const SHA = sha256(PAYLOAD);

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;
let server: Server;
let base: string;
let handler: Handler;
let requests: { url?: string; range?: string }[] = [];

/** Serves PAYLOAD, honouring `Range: bytes=N-` with a 206. */
const serveRange: Handler = (req, res) => {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  const start = m ? Number(m[1]) : 0;
  if (m) {
    res.writeHead(206, {
      "content-length": PAYLOAD.length - start,
      "content-range": `bytes ${start}-${PAYLOAD.length - 1}/${PAYLOAD.length}`,
    });
  } else {
    res.writeHead(200, { "content-length": PAYLOAD.length });
  }
  res.end(PAYLOAD.subarray(start));
};

/** Sends the full Content-Length header, half the bytes, then drops the connection. */
function truncateHalf(res: ServerResponse): void {
  res.writeHead(200, { "content-length": PAYLOAD.length });
  res.write(PAYLOAD.subarray(0, PAYLOAD.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
}

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push({ url: req.url, range: req.headers.range });
    handler(req, res, requests.length);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

const dirs: string[] = [];

afterAll(async () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  requests = [];
  handler = serveRange;
});

const tmp = () => {
  const d = tempDir("crg-dl-");
  dirs.push(d);
  return d;
};

describe("download", () => {
  it("downloads and verifies sha256 and size", async () => {
    const dest = join(tmp(), "sub", "file.bin");
    const seen: number[] = [];
    const r = await download({
      url: `${base}/f`,
      dest,
      sha256: SHA,
      size: PAYLOAD.length,
      timeoutMs: 10_000,
      onProgress: (b) => seen.push(b),
    });
    expect(r).toEqual({ path: dest, sha256: SHA, bytes: PAYLOAD.length, resumed: false });
    expect(readFileSync(dest).equals(PAYLOAD)).toBe(true);
    expect(existsSync(`${dest}.part`)).toBe(false);
    expect(seen.at(-1)).toBe(PAYLOAD.length);
  });

  it("rejects corrupt bytes, naming url and both hashes, and leaves no dest or .part", async () => {
    const other = randomBytes(PAYLOAD.length);
    handler = (_req, res) => {
      res.writeHead(200, { "content-length": other.length });
      res.end(other);
    };
    const dest = join(tmp(), "file.bin");
    const err = await download({
      url: `${base}/corrupt`,
      dest,
      sha256: SHA,
      timeoutMs: 10_000,
      pinnedIn: "kernel-versions.yaml",
    }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err).not.toBeInstanceOf(NotAvailableError);
    expect(err.message).toContain(`${base}/corrupt`);
    expect(err.message).toContain(SHA);
    expect(err.message).toContain(sha256(other));
    expect(err.hint).toContain("kernel-versions.yaml");
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.part`)).toBe(false);
  });

  it("resumes with Range after the connection drops halfway", async () => {
    handler = (req, res, n) => (n === 1 ? truncateHalf(res) : serveRange(req, res, n));
    const dest = join(tmp(), "file.bin");
    const r = await download({ url: `${base}/trunc`, dest, sha256: SHA, timeoutMs: 10_000 });
    expect(r.resumed).toBe(true);
    expect(requests).toHaveLength(2);
    expect(requests[0].range).toBeUndefined();
    expect(requests[1].range).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(requests[1].range!)![0])).toBeGreaterThan(0);
    expect(readFileSync(dest).equals(PAYLOAD)).toBe(true);
  });

  it("restarts from zero when the server ignores Range", async () => {
    handler = (_req, res, n) => {
      if (n === 1) return truncateHalf(res);
      res.writeHead(200, { "content-length": PAYLOAD.length });
      res.end(PAYLOAD);
    };
    const dest = join(tmp(), "file.bin");
    const r = await download({ url: `${base}/norange`, dest, sha256: SHA, timeoutMs: 10_000 });
    expect(requests).toHaveLength(2);
    expect(requests[1].range).toBeDefined();
    expect(r.resumed).toBe(false);
    expect(readFileSync(dest).equals(PAYLOAD)).toBe(true);
  });

  it("resumes a .part left by an earlier run", async () => {
    const dest = join(tmp(), "file.bin");
    writeFileSync(`${dest}.part`, PAYLOAD.subarray(0, 300_000));
    const r = await download({ url: `${base}/f`, dest, sha256: SHA, timeoutMs: 10_000 });
    expect(r.resumed).toBe(true);
    expect(requests).toEqual([{ url: "/f", range: "bytes=300000-" }]);
    expect(readFileSync(dest).equals(PAYLOAD)).toBe(true);
  });

  it("retries 5xx answers", async () => {
    handler = (req, res, n) => {
      if (n === 1) {
        res.writeHead(503);
        return res.end();
      }
      serveRange(req, res, n);
    };
    const dest = join(tmp(), "file.bin");
    await download({ url: `${base}/busy`, dest, sha256: SHA, timeoutMs: 10_000 });
    expect(requests).toHaveLength(2);
  });

  it("throws NotAvailableError on 404 without retrying", async () => {
    handler = (_req, res) => {
      res.writeHead(404);
      res.end("no");
    };
    const dest = join(tmp(), "file.bin");
    const err = await download({ url: `${base}/missing`, dest, timeoutMs: 10_000 }).catch((e) => e);
    expect(err).toBeInstanceOf(NotAvailableError);
    expect(err.url).toBe(`${base}/missing`);
    expect(err.reason).toContain("404");
    expect(requests).toHaveLength(1);
    expect(existsSync(dest)).toBe(false);
  });

  it("returns an existing verified dest without a request", async () => {
    const dest = join(tmp(), "file.bin");
    await download({ url: `${base}/f`, dest, sha256: SHA, timeoutMs: 10_000 });
    expect(requests).toHaveLength(1);
    const again = await download({ url: `${base}/f`, dest, sha256: SHA, timeoutMs: 10_000 });
    expect(requests).toHaveLength(1);
    expect(again).toEqual({ path: dest, sha256: SHA, bytes: PAYLOAD.length, resumed: false });
  });

  it("two concurrent downloads of one destination take turns (no shared .part), unverified too", async () => {
    const dest = join(tmp(), "InRelease");
    const both = await Promise.all([
      download({ url: `${base}/f`, dest, timeoutMs: 10_000 }),
      download({ url: `${base}/f`, dest, timeoutMs: 10_000 }),
    ]);
    expect(both.map((r) => r.sha256)).toEqual([SHA, SHA]);
    expect(readFileSync(dest).equals(PAYLOAD)).toBe(true);
    expect(requests.every((r) => r.range === undefined)).toBe(true);
    const verified = join(tmp(), "orig.tar.xz");
    requests = [];
    await Promise.all([
      download({ url: `${base}/f`, dest: verified, sha256: SHA, timeoutMs: 10_000 }),
      download({ url: `${base}/f`, dest: verified, sha256: SHA, timeoutMs: 10_000 }),
    ]);
    expect(requests).toHaveLength(1); // the second found the first's verified file
  });

  it("throws NotAvailableError when the connection is refused", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const err = await download({
      url: `http://127.0.0.1:${port}/f`,
      dest: join(tmp(), "f"),
      timeoutMs: 10_000,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(NotAvailableError);
    expect(err.reason).toContain("ECONNREFUSED");
  });

  it("gives up at the deadline when the server stalls", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-length": PAYLOAD.length });
      res.write(PAYLOAD.subarray(0, 1000)); // then nothing, forever
    };
    const dest = join(tmp(), "file.bin");
    const started = Date.now();
    const err = await download({ url: `${base}/stall`, dest, sha256: SHA, timeoutMs: 600 }).catch((e) => e);
    const took = Date.now() - started;
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/did not finish within 0\.6 s/);
    // Ended by its deadline, not by the stalled server (which never ends): a generous bound.
    expect(took).toBeLessThan(5000);
    expect(existsSync(dest)).toBe(false);
    server.closeAllConnections();
  });

  it("gives up at the deadline when no response headers arrive", async () => {
    handler = () => undefined;
    const started = Date.now();
    const err = await download({ url: `${base}/silent`, dest: join(tmp(), "f"), timeoutMs: 500 }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect(Date.now() - started).toBeLessThan(5000);
    server.closeAllConnections();
  });

  it("copies and verifies file:// URLs and absolute paths; a missing one is NotAvailableError", async () => {
    const dir = tmp();
    const src = join(dir, "mirror.bin");
    writeFileSync(src, PAYLOAD);
    const a = await download({
      url: pathToFileURL(src).href,
      dest: join(dir, "a"),
      sha256: SHA,
      timeoutMs: 10_000,
    });
    const b = await download({
      url: src,
      dest: join(dir, "b"),
      sha256: SHA,
      size: PAYLOAD.length,
      timeoutMs: 10_000,
    });
    expect(a.sha256).toBe(SHA);
    expect(readFileSync(b.path).equals(PAYLOAD)).toBe(true);
    await expect(
      download({ url: src, dest: join(dir, "c"), sha256: "0".repeat(64), timeoutMs: 10_000 }),
    ).rejects.toThrow(/sha256 mismatch/);
    expect(existsSync(join(dir, "c.part"))).toBe(false);
    await expect(
      download({ url: join(dir, "nope"), dest: join(dir, "d"), timeoutMs: 10_000 }),
    ).rejects.toBeInstanceOf(NotAvailableError);
    expect(requests).toHaveLength(0);
  });
});
