/**
 * The CRIU stage end to end, as a user runs it: 4.1.1 built from Debian's orig tarball in a
 * trixie chroot, without and with the membarrier patch; 3.17.1 through its catalog order
 * (Debian's binary first), and its orig tarball, named as the only provider, a 404 and an
 * error; `criu --version` of each in its chroot; the doctor on real configs.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crGuest, missingTools } from "../helpers/cli.js";
import { chrootKey } from "../../scripts/lib/chroot.js";
import { criuBuildDeps } from "../../scripts/criu/build-recipe.js";
import { criuVersionIn } from "../../scripts/lib/rootfs.js";
import { tempDir } from "../helpers/temp.js";
import { testConfig } from "../helpers/test-cache.js";
import type { RunResult } from "../../scripts/lib/exec.js";

const skip = missingTools(["debootstrap", "unshare", "chroot", "gpgv", "xz", "patch", "dpkg-deb", "rsync"]);
const config = testConfig();
const metadataOf = (out: string) => JSON.parse(readFileSync(/metadata: (\S+)/.exec(out)![1], "utf8"));

describe.skipIf(skip)("CRIU stage (integration)", () => {
  describe("4.1.1 from the Debian orig tarball in a trixie chroot (dynamic)", () => {
    const args = ["criu", "--criu", "4.1", "--guest-suite", "trixie", "--link", "dynamic"];
    // The unpatched build, which the patched one is compared with (built here or cached).
    let unpatched: RunResult;
    beforeAll(async () => {
      unpatched = await crGuest(args, 40 * 60_000);
    }, 45 * 60_000);

    it("builds it unpatched", async () => {
      const out = unpatched.stdout + unpatched.stderr;
      expect(unpatched.exitCode, out).toBe(0);
      expect(out).toMatch(/Version: 4\.1\.1 \(debian-source, dynamic, runs in trixie\)/);
      const m = metadataOf(out);
      expect(m).toMatchObject({
        version: "4.1.1",
        provider: "debian-source",
        build_suite: "trixie",
        link: "dynamic",
        patches: [],
      });
      expect(m.version_output).toMatch(/^Version: 4\.1\.1/);
      expect(m.identity).toContain("f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe");
      // Dynamic: the suite's shared libraries, recorded for the image stage.
      expect(m.runtime_packages).toEqual(expect.arrayContaining(["libprotobuf-c1", "libnl-3-200"]));
    });

    it(
      "builds it again with the membarrier patch: a different binary that still runs",
      { timeout: 40 * 60_000 },
      async () => {
        const r = await crGuest([...args, "--patch", "membarrier-probe-nonfatal"], 40 * 60_000);
        const out = r.stdout + r.stderr;
        expect(r.exitCode, out).toBe(0);
        const m = metadataOf(out);
        expect(m.patches).toEqual([
          { name: "membarrier-probe-nonfatal", sha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
        ]);
        expect(m.version_output).toMatch(/^Version: 4\.1\.1/);
        expect(unpatched.exitCode, unpatched.stderr).toBe(0);
        expect(m.criu.sha256).not.toBe(metadataOf(unpatched.stdout + unpatched.stderr).criu.sha256);
        // And it starts in its own chroot once more, run from the artifact itself.
        const chroot = join(
          config.cache_dir,
          "chroots",
          chrootKey("trixie", criuBuildDeps("dynamic"), config.debian),
          "root",
        );
        expect(await criuVersionIn(chroot, join(/criu: (\S+)/.exec(out)![1]))).toMatch(/^Version: 4\.1\.1/);
      },
    );
  });

  it(
    "3.17.1: Debian's binary first (catalog order); the orig tarball, asked for by name, is a 404 and an error",
    { timeout: 30 * 60_000 },
    async () => {
      // Another test file of the run (the image stage) may have made it already: make it cold.
      const before = await crGuest(["criu", "--criu", "3.17.1", "--dry-run"], 60_000);
      const cachedKey = /debian-binary\s+cached \(key (\w+)/.exec(before.stdout)?.[1];
      if (cachedKey) rmSync(join(config.cache_dir, "criu", cachedKey), { recursive: true, force: true });
      const r = await crGuest(["criu", "--criu", "3.17.1"], 30 * 60_000);
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(0);
      expect(out).toMatch(/Version: 3\.17\.1 \(Debian binary package, runs in bookworm\)/);
      const m = metadataOf(out);
      expect(m).toMatchObject({ version: "3.17.1", provider: "debian-binary", guest_suite: "bookworm" });
      expect(m.version_output).toBe("Version: 3.17.1");
      expect(m.runtime_packages).toContain("libprotobuf-c1");
      expect(m.runtime_packages.some((p: string) => p.startsWith("python3"))).toBe(false);

      const again = await crGuest(["criu", "--criu", "3.17.1"], 60_000);
      expect(again.stdout).toMatch(/\(cached\)/);
      const plan = await crGuest(["criu", "--criu", "3.17.1", "--dry-run"], 60_000);
      expect(plan.exitCode).toBe(0);
      expect(plan.stdout).toMatch(/served by: debian-binary/);
      expect(plan.stdout).toMatch(/debian-binary\s+cached \(key /);
      expect(plan.stdout).toMatch(
        /source builds apply Debian's criu-fix-conflicting-headers, mount-add-definition-for-FSOPEN_CLOEXEC/,
      );
      // A provider the user names is the only one: its 404 is the error, never a fallback.
      const named = await crGuest(["criu", "--criu", "3.17.1", "--provider", "debian-source"], 10 * 60_000);
      expect(named.exitCode, named.stdout + named.stderr).toBe(2);
      expect(named.stderr).toMatch(
        /no provider could supply CRIU 3\.17\.1[\s\S]*criu_3\.17\.1\.orig\.tar\.xz is not available: HTTP 404/,
      );
      expect(named.stderr).toMatch(/fix: give a source: --criu-mirror DIR/);
    },
  );

  it(
    "the doctor fails CRIU 4.1 on a kernel without MEMBARRIER and passes the patched build",
    { timeout: 5 * 60_000 },
    async () => {
      const dir = tempDir("crg-doctor-");
      const cfg = join(dir, "config");
      const ours = (await crGuest(["kernel", "--check-config"], 5 * 60_000)).stdout;
      expect(ours).toContain("verification PASSED");
      writeFileSync(cfg, "CONFIG_CHECKPOINT_RESTORE=y\n# CONFIG_MEMBARRIER is not set\n");
      const bad = await crGuest(["doctor", "--criu", "4.1", "--kernel-config", cfg]);
      expect(bad.exitCode).toBe(1);
      expect(bad.stdout).toContain("kerndat_has_membarrier_get_registrations failed");
      const patched = await crGuest([
        "doctor",
        "--criu",
        "4.1",
        "--kernel-config",
        cfg,
        "--patch",
        "membarrier-probe-nonfatal",
      ]);
      expect(patched.stdout).not.toContain("kerndat_has_membarrier_get_registrations failed");
      // The configured kernel (our fragments): nothing that will fail.
      const good = await crGuest(["doctor", "--criu", "4.1"], 5 * 60_000);
      expect(good.exitCode, good.stdout + good.stderr).toBe(0);
    },
  );
});
