/**
 * The KVM probe a cold run starts beside the kernel compile boots the host's kernel, as no
 * kernel of ours exists yet. Real QEMU, the real /boot kernel, the real probe initramfs.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { accelProbeDue, chooseAccel, hostProbeKernel } from "../../scripts/boot/accel.js";
import { buildConfigCheckInitramfs, END_MARKER } from "../../scripts/kernel/boot-check.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { bootVm } from "../../scripts/lib/qemu.js";
import { missingTools } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";

const skip = missingTools(["qemu-system-x86_64", "busybox", "cpio"]);

describe.skipIf(skip)("the KVM probe with the host's kernel (integration)", () => {
  it(
    "the host's kernel reaches the probe's end marker (under TCG: a working KVM would pass the probe)",
    { timeout: 5 * 60_000 },
    async () => {
      const kernel = hostProbeKernel();
      // `make setup` installs linux-image-amd64 (libguestfs boots it too).
      expect(kernel, "a kernel under /boot").toBeDefined();
      const dir = tempDir("crg-probe-");
      const initrd = await buildConfigCheckInitramfs({ dir, symbols: [] });
      const r = await bootVm({
        kernel: kernel!,
        initrd,
        append: [],
        accel: "tcg",
        memoryMiB: 256,
        cpus: 1,
        timeoutMs: 4 * 60_000,
        consoleLog: join(dir, "console.log"),
        endMarker: END_MARKER,
      });
      expect(r.status, r.console.slice(-2000)).toBe("ok");
      expect(r.console).toMatch(/CRG-BOOT uname=\d+\.\d+/);
    },
  );

  it(
    "a probe with it caches the verdict the boot stage then reads, with the kernel that probed",
    { timeout: 2 * 60_000 },
    async () => {
      const cache = tempDir("crg-probe-cache-");
      const config = loadConfig({ set: [`cache_dir=${cache}`, "boot.accel=auto"] });
      const kernel = hostProbeKernel()!;
      const due = await accelProbeDue(config);
      const first = await chooseAccel(config, kernel);
      expect(["kvm", "tcg"]).toContain(first.accel);
      if (due) {
        // On this machine /dev/kvm exists: a real probe boot ran and left its verdict.
        expect(first.reason).toMatch(/^KVM probe (succeeded|failed)/);
        const cached = JSON.parse(readFileSync(join(cache, "boot-check", "kvm-probe.json"), "utf8"));
        expect(cached).toMatchObject({ accel: first.accel, kernel });
        expect(await accelProbeDue(config)).toBe(false);
        // The boot stage's call, with a kernel that is never booted: the cached verdict.
        const later = await chooseAccel(config, join(cache, "no-such-vmlinuz"));
        expect(later).toEqual({ accel: first.accel, reason: `${first.reason} (cached probe)` });
      } else expect(existsSync("/dev/kvm") && !process.env.CR_GUEST_ACCEL).toBe(false);
    },
  );
});
