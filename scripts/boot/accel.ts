/**
 * The accelerator for guest runs: as configured, or (auto) KVM only when a probe boot of
 * this kernel really works. The verdict is cached per QEMU version next to the boot checks.
 */
import { join } from "node:path";
import { buildConfigCheckInitramfs, END_MARKER } from "../kernel/boot-check.js";
import type { PipelineConfig } from "../lib/config.js";
import { detectAccel, type Accel } from "../lib/qemu.js";

export async function chooseAccel(config: PipelineConfig, vmlinuz: string): Promise<{ accel: Accel; reason: string }> {
  if (config.boot.accel !== "auto") return { accel: config.boot.accel, reason: "boot.accel in the config" };
  const dir = join(config.cache_dir, "boot-check");
  const initrd = await buildConfigCheckInitramfs({ dir: join(dir, "probe"), symbols: [] });
  return detectAccel({ kernel: vmlinuz, initrd, marker: END_MARKER, cacheFile: join(dir, "kvm-probe.json") });
}
