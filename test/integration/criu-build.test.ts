/**
 * The CRIU stage end to end, as a user runs it: 4.1.1 built from Debian's orig tarball in a
 * trixie chroot, without and with the membarrier patch; 3.17.1 through the default provider
 * chain (its orig tarball answers 404 on this mirror, so the chain moves on to Debian's
 * binary package); `criu --version` of each in its chroot; the doctor on real configs.
 */
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crGuest, missingTools } from "../helpers/cli.js";
import { chrootKey } from "../../scripts/lib/chroot.js";
import { criuBuildDeps } from "../../scripts/criu/build-recipe.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { criuVersionIn } from "../../scripts/lib/rootfs.js";

const skip = missingTools(["debootstrap", "unshare", "chroot", "gpgv", "xz", "patch", "dpkg-deb", "rsync"]);
const config = loadConfig();
const metadataOf = (out: string) => JSON.parse(readFileSync(/metadata: (\S+)/.exec(out)![1], "utf8"));

describe.skipIf(skip)("CRIU stage (integration)", () => {
  let unpatched: { criu: { sha256: string } } | undefined;

  it("builds 4.1.1 from the Debian orig tarball in a trixie chroot (dynamic)", { timeout: 40 * 60_000 }, async () => {
    const r = await crGuest(["criu", "--version", "4.1", "--suite", "trixie", "--link", "dynamic"], 40 * 60_000);
    const out = r.stdout + r.stderr;
    expect(r.exitCode, out).toBe(0);
    expect(out).toMatch(/Version: 4\.1\.1 \(debian-source, dynamic, runs in trixie\)/);
    const m = metadataOf(out);
    expect(m).toMatchObject({ version: "4.1.1", provider: "debian-source", build_suite: "trixie", link: "dynamic", patches: [] });
    expect(m.version_output).toMatch(/^Version: 4\.1\.1/);
    expect(m.identity).toContain("f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe");
    // Dynamic: the suite's shared libraries, recorded for the image stage.
    expect(m.runtime_packages).toEqual(expect.arrayContaining(["libprotobuf-c1", "libnl-3-200"]));
    unpatched = m;
  });

  it("builds it again with the membarrier patch: a different binary that still runs", { timeout: 40 * 60_000 }, async () => {
    const r = await crGuest(["criu", "--version", "4.1", "--suite", "trixie", "--link", "dynamic", "--patch", "membarrier-probe-nonfatal"], 40 * 60_000);
    const out = r.stdout + r.stderr;
    expect(r.exitCode, out).toBe(0);
    const m = metadataOf(out);
    expect(m.patches).toEqual([{ name: "membarrier-probe-nonfatal", sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
    expect(m.version_output).toMatch(/^Version: 4\.1\.1/);
    if (unpatched) expect(m.criu.sha256).not.toBe(unpatched.criu.sha256);
    // And it starts in its own chroot once more, run from the artifact itself.
    const chroot = join(config.cache_dir, "chroots", chrootKey("trixie", criuBuildDeps("dynamic"), config.debian.mirror), "root");
    expect(await criuVersionIn(chroot, join(/criu: (\S+)/.exec(out)![1]))).toMatch(/^Version: 4\.1\.1/);
  });

  it("3.17.1: the orig tarball is a 404, the chain says so and takes Debian's binary for bookworm", { timeout: 30 * 60_000 }, async () => {
    // Another test file (the image stage) may have made this artifact already: the chain is
    // only walked for an artifact that is not cached, so make it cold first.
    const before = await crGuest(["criu", "--version", "3.17.1", "--plan"], 60_000);
    const cachedDir = /debian-binary\s+cached: (\S+)/.exec(before.stdout)?.[1];
    if (cachedDir) rmSync(cachedDir, { recursive: true, force: true });
    const r = await crGuest(["criu", "--version", "3.17.1"], 30 * 60_000);
    const out = r.stdout + r.stderr;
    expect(r.exitCode, out).toBe(0);
    expect(out).toMatch(/note: debian-source: .*criu_3\.17\.1\.orig\.tar\.xz is not available: HTTP 404/);
    expect(out).toMatch(/Version: 3\.17\.1 \(Debian binary package, runs in bookworm\)/);
    const m = metadataOf(out);
    expect(m).toMatchObject({ version: "3.17.1", provider: "debian-binary", guest_suite: "bookworm" });
    expect(m.version_output).toBe("Version: 3.17.1");
    expect(m.runtime_packages).toContain("libprotobuf-c1");
    expect(m.runtime_packages.some((p: string) => p.startsWith("python3"))).toBe(false);

    const again = await crGuest(["criu", "--version", "3.17.1"], 60_000);
    expect(again.stdout).toMatch(/\(cached\)/);
    const plan = await crGuest(["criu", "--version", "3.17.1", "--plan"], 60_000);
    expect(plan.exitCode).toBe(0);
    expect(plan.stdout).toMatch(/debian-binary\s+cached: /);
    expect(plan.stdout).toMatch(/upstream\s+skipped: no sha256 pinned/);
  });

  it("the doctor fails CRIU 4.1 on a kernel without MEMBARRIER and passes the patched build", { timeout: 5 * 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "crg-doctor-"));
    const cfg = join(dir, "config");
    const ours = (await crGuest(["kernel", "--check-config"], 5 * 60_000)).stdout;
    expect(ours).toContain("verification PASSED");
    writeFileSync(cfg, "CONFIG_CHECKPOINT_RESTORE=y\n# CONFIG_MEMBARRIER is not set\n");
    const bad = await crGuest(["doctor", "--criu", "4.1", "--kernel-config", cfg]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toContain("kerndat_has_membarrier_get_registrations failed");
    const patched = await crGuest(["doctor", "--criu", "4.1", "--kernel-config", cfg, "--patch", "membarrier-probe-nonfatal"]);
    expect(patched.stdout).not.toContain("kerndat_has_membarrier_get_registrations failed");
    // The configured kernel (our fragments): nothing that will fail.
    const good = await crGuest(["doctor", "--criu", "4.1"], 5 * 60_000);
    expect(good.exitCode, good.stdout + good.stderr).toBe(0);
  });
});
