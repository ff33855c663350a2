/**
 * The real Debian mirror: signed indexes fetched, verified with gpgv, parsed and cached.
 * With CI=true an unreachable mirror or a missing gpgv/keyring fails the file; elsewhere the
 * tests are skipped with the reason printed.
 */
import { afterAll, describe, expect, it } from "vitest";
import { existsSync, rmSync } from "node:fs";
import { DEBIAN_KEYRING, loadSuiteIndex } from "../../scripts/lib/debian-mirror.js";
import { errorMessage } from "../../scripts/lib/errors.js";
import { missingTools, unavailable } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";

// Overridable to point the test at another mirror (or to check the CI failure path).
const MIRROR = process.env.CR_GUEST_TEST_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";

async function mirrorUnavailable(): Promise<string | undefined> {
  const tools = missingTools(["gpgv", "xz"]); // throws in CI
  if (tools) return tools;
  let reason: string | undefined;
  if (!existsSync(DEBIAN_KEYRING))
    reason = `missing ${DEBIAN_KEYRING} (Debian package debian-archive-keyring)`;
  else {
    try {
      const res = await fetch(`${MIRROR}/dists/trixie/InRelease`, {
        method: "HEAD",
        signal: AbortSignal.timeout(15_000),
      });
      if (!res.ok) reason = `${MIRROR} answered HTTP ${res.status}`;
    } catch (err) {
      reason = `${MIRROR} is unreachable: ${errorMessage(err)}${(err as { cause?: unknown }).cause ? ` (${errorMessage((err as { cause: unknown }).cause)})` : ""}`;
    }
  }
  return reason === undefined ? undefined : unavailable(`the Debian mirror tests: ${reason}`);
}

const skip = await mirrorUnavailable();
const cacheDir = tempDir("crg-debidx-");
afterAll(() => rmSync(cacheDir, { recursive: true, force: true })); // ~130 MB of indexes

describe.skipIf(skip)("Debian mirror indexes (integration)", () => {
  it(
    "trixie sources: linux 6.12.x with a pinned orig tarball, and criu 4.1.1",
    { timeout: 5 * 60_000 },
    async () => {
      const t0 = Date.now();
      const index = await loadSuiteIndex({ mirror: MIRROR, suite: "trixie", cacheDir, kind: "source" });
      const cold = Date.now() - t0;
      expect(index.fromCache).toBe(false);
      expect(index.indexSha256).toMatch(/^[0-9a-f]{64}$/);

      const linux = index.sources("linux").filter((p) => p.version.startsWith("6.12."));
      expect(linux.length).toBeGreaterThan(0);
      for (const pkg of linux) {
        const upstream = pkg.version.replace(/-[^-]+$/, "");
        const orig = pkg.files.find((f) => f.name === `linux_${upstream}.orig.tar.xz`);
        expect(orig, `linux ${pkg.version} files: ${pkg.files.map((f) => f.name).join(", ")}`).toBeDefined();
        expect(orig!.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(orig!.size).toBeGreaterThan(100_000_000);
        expect(orig!.url).toBe(`${MIRROR}/pool/main/l/linux/${orig!.name}`);
      }
      expect(index.sources("criu").map((p) => p.version)).toContainEqual(
        expect.stringMatching(/^4\.1\.1(-|$)/),
      );
      expect(index.sources("no-such-package-here")).toEqual([]);

      // Warm: served from the parsed cache, no network.
      const t1 = Date.now();
      const warm = await loadSuiteIndex({ mirror: MIRROR, suite: "trixie", cacheDir, kind: "source" });
      const warmMs = Date.now() - t1;
      // fromCache is the point (no network); the time is printed, not judged.
      expect(warm.fromCache).toBe(true);
      expect(warm.sources("linux")).toEqual(index.sources("linux"));
      console.log(`trixie source index: cold ${cold} ms, warm ${warmMs} ms`);
    },
  );

  it("bookworm amd64 binaries: criu 3.17.1", { timeout: 5 * 60_000 }, async () => {
    const index = await loadSuiteIndex({
      mirror: MIRROR,
      suite: "bookworm",
      cacheDir,
      kind: { binaryArch: "amd64" },
    });
    const criu = index.binaries("criu");
    expect(criu.map((p) => p.version)).toContainEqual(expect.stringMatching(/^3\.17\.1/));
    const pkg = criu.find((p) => p.version.startsWith("3.17.1"))!;
    expect(pkg.architecture).toBe("amd64");
    expect(pkg.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(pkg.url).toBe(`${MIRROR}/${pkg.filename}`);
    expect(pkg.depends).toContain("libc6");
  });

  it("sid verifies although its InRelease may be past Valid-Until", { timeout: 5 * 60_000 }, async () => {
    const index = await loadSuiteIndex({ mirror: MIRROR, suite: "sid", cacheDir, kind: "source" });
    expect(index.sources("criu").length).toBeGreaterThan(0);
  });

  it("names an unknown suite", { timeout: 60_000 }, async () => {
    await expect(
      loadSuiteIndex({ mirror: MIRROR, suite: "no-such-suite", cacheDir, kind: "source" }),
    ).rejects.toThrow(/unknown Debian suite no-such-suite/);
  });
});
