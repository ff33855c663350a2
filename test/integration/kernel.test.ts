/**
 * The kernel stage end to end, as a user runs it: build the default kernel from the Debian
 * mirror source, verify it, boot it under QEMU to an init that checks /proc/config.gz, then
 * hit the cache. Real builds: this takes ~11 minutes cold, ~2 with a warm ccache.
 */
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crGuest, missingTools } from "../helpers/cli.js";

const skip = missingTools(["make", "gcc", "flex", "bison", "bc", "qemu-system-x86_64", "busybox", "cpio", "gpgv", "xz"]);

describe.skipIf(skip)("kernel stage (integration)", () => {
  it("builds, verifies and boots the default kernel, then hits the cache", { timeout: 75 * 60_000 }, async () => {
    const build = await crGuest(["kernel", "--boot-check"], 70 * 60_000);
    const out = build.stdout + build.stderr;
    expect(build.exitCode, out).toBe(0);
    expect(out).toMatch(/requested symbols landed in the final \.config/);
    expect(out).toContain("verification PASSED");
    const kernelPath = /kernel: (\S+vmlinuz)/.exec(out)![1];
    expect(statSync(kernelPath).size).toBeGreaterThan(1_000_000);
    const meta = JSON.parse(readFileSync(join(kernelPath, "..", "metadata.json"), "utf8"));
    expect(meta.version).toMatch(/^6\.12\.\d+$/);
    expect(meta.verify.passed).toBe(true);
    expect(meta.verify.ok).toBe(meta.verify.checked);
    expect(meta.source.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(meta.fragments.map((f: { name: string }) => f.name)).toEqual(["guest-base", "checkpoint-restore"]);
    const config = readFileSync(join(kernelPath, "..", "config"), "utf8");
    for (const sym of ["CONFIG_CHECKPOINT_RESTORE=y", "CONFIG_MEMBARRIER=y", "CONFIG_IKCONFIG_PROC=y"]) expect(config).toContain(sym);
    // The guest saw its own config: the boot check ran and matched (or a run before did, if cached).
    if (!/\(cached\)/.test(out)) expect(out).toMatch(/boot check: booted .* all requested symbols seen/);

    const again = await crGuest(["kernel"], 60_000);
    expect(again.exitCode, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain(`kernel: ${kernelPath} (cached)`);
  });

  it("--check-config reports a nonexistent symbol with a suggestion and exits 1", { timeout: 20 * 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "crg-frag-"));
    const bad = join(dir, "typo.conf");
    writeFileSync(bad, "CONFIG_MEMBARIER=y # typo of MEMBARRIER\n# CONFIG_PROC_FS is not set\n");
    const r = await crGuest(["kernel", "--check-config", "--fragment", bad], 15 * 60_000);
    const out = r.stdout + r.stderr;
    expect(r.exitCode, out).toBe(1);
    expect(out).toContain("CONFIG_MEMBARIER");
    expect(out).toContain("did you mean CONFIG_MEMBARRIER?");
    // Turning PROC_FS off drops CHECKPOINT_RESTORE, explained from Kconfig.
    expect(out).toMatch(/CONFIG_CHECKPOINT_RESTORE\s+y\s+n\s+unmet dependency \(init\/Kconfig:\d+\): depends on PROC_FS \[PROC_FS=n\]/);
    expect(existsSync(join(dir, "typo.conf"))).toBe(true);
  });
});
