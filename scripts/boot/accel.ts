/**
 * The accelerator for guest runs: as configured, or (auto) KVM only when a probe boot really
 * works: of the kernel to boot, or of the host's while ours compiles (the cold pipeline).
 * The verdict is cached per QEMU version next to the boot checks.
 */
import { accessSync, constants, readdirSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { buildConfigCheckInitramfs, END_MARKER } from "../kernel/boot-check.js";
import type { PipelineConfig } from "../lib/config.js";
import { KeyedQueue } from "../lib/keyed-queue.js";
import { accelWithoutProbe, detectAccel, type Accel } from "../lib/qemu.js";

// Boots started together (a matrix's) ask once: the first probes, the others read its verdict.
const probing = new KeyedQueue();

const accelDir = (config: PipelineConfig) => join(config.cache_dir, "boot-check");
const probeCacheFile = (config: PipelineConfig) => join(accelDir(config), "kvm-probe.json");

/** Whether the next boot would first probe for KVM (auto, /dev/kvm there, no verdict for this QEMU). */
export async function accelProbeDue(config: PipelineConfig): Promise<boolean> {
  return config.boot.accel === "auto" && "due" in (await accelWithoutProbe(probeCacheFile(config)));
}

/**
 * A kernel that can probe before ours is built: the newest readable /boot/vmlinuz-* (the host's,
 * which libguestfs boots too). Whether KVM works does not depend on the guest kernel.
 */
export function hostProbeKernel(bootDir = "/boot"): string | undefined {
  let names: string[];
  try {
    names = readdirSync(bootDir).filter((n) => /^vmlinuz-\d/.test(n));
  } catch {
    return undefined;
  }
  const readable = names.filter((n) => {
    try {
      accessSync(join(bootDir, n), constants.R_OK);
      return true;
    } catch {
      return false;
    }
  });
  readable.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  return readable.length ? join(bootDir, readable[readable.length - 1]) : undefined;
}

export async function chooseAccel(
  config: PipelineConfig,
  vmlinuz: string,
): Promise<{ accel: Accel; reason: string }> {
  if (config.boot.accel !== "auto") return { accel: config.boot.accel, reason: "boot.accel in the config" };
  const dir = accelDir(config);
  return probing.run(dir, async () => {
    let probeDir: string | undefined;
    // The probe's initramfs only when it really probes, in a directory of its own (another
    // process may probe at the same time).
    const initrd = async () => {
      await mkdir(dir, { recursive: true });
      probeDir = await mkdtemp(join(dir, "probe-"));
      return buildConfigCheckInitramfs({ dir: probeDir, symbols: [] });
    };
    try {
      return await detectAccel({
        kernel: vmlinuz,
        initrd,
        marker: END_MARKER,
        cacheFile: probeCacheFile(config),
      });
    } finally {
      if (probeDir) await rm(probeDir, { recursive: true, force: true });
    }
  });
}
