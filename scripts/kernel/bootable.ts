/**
 * Can this kernel boot our image on its own? The image has no initrd, so the root disk's
 * driver, its filesystem and devtmpfs must be built in (=y): a module cannot be loaded before
 * the root filesystem it lives on. A distribution kernel usually builds them as modules; a
 * cell with such a kernel is SKIPPED, naming what is missing, and no boot is attempted. Pure.
 */
import { UserError } from "../lib/errors.js";

export type DiskBus = "virtio" | "nvme";

const on = (config: Map<string, string>, s: string) => config.get(s) === "y";

/**
 * The disk bus this kernel can boot from (virtio block, else NVMe: Debian's cloud kernel
 * builds NVMe in but virtio block as a module), and what keeps it from booting at all.
 */
export function bootPlan(config: Map<string, string>): { bus?: DiskBus; blockers: string[] } {
  const blockers: string[] = [];
  const bus: DiskBus | undefined =
    on(config, "CONFIG_VIRTIO_BLK") && on(config, "CONFIG_VIRTIO_PCI")
      ? "virtio"
      : on(config, "CONFIG_BLK_DEV_NVME") && on(config, "CONFIG_PCI")
        ? "nvme"
        : undefined;
  const v = (s: string) => `${s}=${config.get(s) ?? "n"}`;
  if (!bus)
    blockers.push(
      `${v("CONFIG_VIRTIO_BLK")} / ${v("CONFIG_BLK_DEV_NVME")} (the root disk's driver: virtio block or NVMe; needed built in, there is no initrd)`,
    );
  if (!on(config, "CONFIG_EXT4_FS"))
    blockers.push(`${v("CONFIG_EXT4_FS")} (the root filesystem; needed built in, there is no initrd)`);
  if (!on(config, "CONFIG_DEVTMPFS"))
    blockers.push(`${v("CONFIG_DEVTMPFS")} (/dev without udev; needed built in)`);
  return { bus, blockers };
}

/** What keeps `config` from booting our image without an initrd (empty: it can). */
export function bootBlockers(config: Map<string, string>): string[] {
  return bootPlan(config).blockers;
}

/** The kernel cannot boot the image: not a test result, and not an infrastructure error. */
export class KernelCannotBootError extends UserError {
  constructor(kernel: string, blockers: string[]) {
    super(
      `${kernel} cannot boot the image: ${blockers.join("; ")}`,
      "use a kernel that builds these in (the built kernels do: kernel-fragments/guest-base.conf)",
      1,
    );
  }
}
