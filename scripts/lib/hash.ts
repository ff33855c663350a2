import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Stable JSON: object keys sorted, so equal inputs always hash equal. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/** A cache key: the first 16 hex digits of the sha256 of the canonical inputs. */
export function cacheKey(inputs: unknown): string {
  return sha256(canonicalJson(inputs)).slice(0, 16);
}
