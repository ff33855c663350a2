/**
 * Can this kernel boot our image on its own? The image has no initrd, so the root disk's
 * driver, its filesystem and devtmpfs must be built in (=y): a module cannot be loaded before
 * the root filesystem it lives on. A distribution kernel usually builds them as modules; a
 * cell with such a kernel is SKIPPED, naming what is missing, and no boot is attempted. Pure.
 */
import { UserError } from "../lib/errors.js";

/** Each entry: alternatives, one of which must be =y. */
const NEEDED_BUILT_IN: { any: string[]; why: string }[] = [
  { any: ["CONFIG_VIRTIO_BLK", "CONFIG_BLK_DEV_NVME"], why: "the root disk's driver (virtio block or NVMe)" },
  { any: ["CONFIG_VIRTIO_PCI"], why: "the virtio transport" },
  { any: ["CONFIG_EXT4_FS"], why: "the root filesystem (ext4)" },
  { any: ["CONFIG_DEVTMPFS"], why: "/dev without udev" },
];

/** What keeps `config` from booting our image without an initrd (empty: it can). */
export function bootBlockers(config: Map<string, string>): string[] {
  return NEEDED_BUILT_IN.filter((n) => !n.any.some((s) => config.get(s) === "y")).map(
    (n) => `${n.any.map((s) => `${s}=${config.get(s) ?? "n"}`).join(" / ")} (${n.why}; needed built in, there is no initrd)`,
  );
}

/** The kernel cannot boot the image: not a test result, and not an infrastructure error. */
export class KernelCannotBootError extends UserError {
  constructor(kernel: string, blockers: string[]) {
    super(`${kernel} cannot boot the image: ${blockers.join("; ")}`, "use a kernel that builds these in (the built kernels do: kernel-fragments/guest-base.conf)", 1);
  }
}
