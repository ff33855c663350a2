import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ArtifactCache } from "../../scripts/lib/cache.js";
import { cacheKey, canonicalJson } from "../../scripts/lib/hash.js";
import { tempDir } from "../helpers/temp.js";

describe("artifact cache", () => {
  it("builds once, then hits, with metadata.json", async () => {
    const cache = new ArtifactCache(tempDir("crg-cache-"));
    let builds = 0;
    const build = async (dir: string) => {
      builds++;
      writeFileSync(join(dir, "out"), "x");
      return { n: builds };
    };
    const first = await cache.getOrBuild("stage", "k1", build);
    const second = await cache.getOrBuild("stage", "k1", build);
    expect(first.cached).toBe(false);
    expect(second.cached).toBe(true);
    expect(second.metadata).toEqual({ n: 1, cache_key: "k1" });
    expect(existsSync(join(second.dir, "out"))).toBe(true);
    expect(builds).toBe(1);
  });

  it("leaves nothing that looks finished when a build fails", async () => {
    const root = tempDir("crg-cache-");
    const cache = new ArtifactCache(root);
    await expect(
      cache.getOrBuild("stage", "k2", async (dir) => {
        writeFileSync(join(dir, "half"), "x");
        throw new Error("interrupted");
      }),
    ).rejects.toThrow("interrupted");
    expect(await cache.lookup("stage", "k2")).toBeUndefined();
    expect(readdirSync(join(root, "stage"))).toEqual([]);
  });

  it("keys are canonical: key order does not matter, values do", () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: 3 } })).toBe('{"a":{"c":3,"d":2},"b":1}');
    expect(cacheKey({ a: 1, b: 2 })).toBe(cacheKey({ b: 2, a: 1 }));
    expect(cacheKey({ a: 1 })).not.toBe(cacheKey({ a: 2 }));
  });
});

describe("concurrent builds of one artifact", () => {
  it("take turns: the second finds the first's artifact and never builds", async () => {
    const cache = new ArtifactCache(tempDir("crg-cache-"));
    let builds = 0;
    const build = async () => {
      builds++;
      await new Promise((r) => setTimeout(r, 50));
      return { n: builds };
    };
    const [a, b] = await Promise.all([
      cache.getOrBuild("chroot", "k1", build),
      cache.getOrBuild("chroot", "k1", build),
    ]);
    expect(builds).toBe(1);
    expect([a.cached, b.cached]).toEqual([false, true]);
    expect(b.metadata).toMatchObject({ n: 1 });
  });
});
