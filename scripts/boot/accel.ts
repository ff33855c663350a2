/**
 * The accelerator for guest runs: as configured, or (auto) KVM only when a probe boot of
 * this kernel really works. The verdict is cached per QEMU version next to the boot checks.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { buildConfigCheckInitramfs, END_MARKER } from "../kernel/boot-check.js";
import type { PipelineConfig } from "../lib/config.js";
import { KeyedQueue } from "../lib/keyed-queue.js";
import { detectAccel, type Accel } from "../lib/qemu.js";

// Boots started together (a matrix's) ask once: the first probes, the others read its verdict.
const probing = new KeyedQueue();

export async function chooseAccel(config: PipelineConfig, vmlinuz: string): Promise<{ accel: Accel; reason: string }> {
  if (config.boot.accel !== "auto") return { accel: config.boot.accel, reason: "boot.accel in the config" };
  const dir = join(config.cache_dir, "boot-check");
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
      return await detectAccel({ kernel: vmlinuz, initrd, marker: END_MARKER, cacheFile: join(dir, "kvm-probe.json") });
    } finally {
      if (probeDir) await rm(probeDir, { recursive: true, force: true });
    }
  });
}
