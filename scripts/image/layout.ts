/**
 * A GPT raw image with one ext4 partition, made without loop mounts: sgdisk writes the
 * partition table, `mkfs.ext4 -d` fills the filesystem at the partition's offset. The
 * partition UUID is fixed, so the kernel command line can say root=PARTUUID=... (NVMe
 * namespaces can come up in any order; device names are not stable).
 */
import { run } from "../lib/exec.js";

export const ROOT_PARTUUID = "c7a5e8f2-4b1d-4e6a-9d3c-2f8b7a6e5d41";
export const ROOT_FS_LABEL = "cr-guest-root";
const SECTOR = 512;
const MiB = 1024 * 1024;
export const PART_START_SECTOR = 2048; // 1 MiB aligned

export interface ImageLayout {
  imageBytes: number;
  partStartSector: number;
  partEndSector: number;
  fsBytes: number;
}

/** Room for the rootfs, ext4 overhead and the dumps the tests write. */
export function planLayout(rootfsBytes: number, extraMiB = 512): ImageLayout {
  const fsBytes = Math.ceil((rootfsBytes * 1.25 + extraMiB * MiB) / MiB) * MiB;
  const imageBytes = fsBytes + 2 * MiB; // 1 MiB before the partition, backup GPT after it
  const partEndSector = PART_START_SECTOR + fsBytes / SECTOR - 1;
  return { imageBytes, partStartSector: PART_START_SECTOR, partEndSector, fsBytes };
}

export function sgdiskArgs(image: string, layout: ImageLayout): string[] {
  return [
    "sgdisk",
    "--clear",
    `--new=1:${layout.partStartSector}:${layout.partEndSector}`,
    "--typecode=1:8300",
    `--partition-guid=1:${ROOT_PARTUUID}`,
    "--change-name=1:root",
    image,
  ];
}

export function mkfsArgs(image: string, rootfs: string, layout: ImageLayout): string[] {
  return [
    "mkfs.ext4",
    "-F",
    "-q",
    "-L",
    ROOT_FS_LABEL,
    "-E",
    `offset=${layout.partStartSector * SECTOR}`,
    "-d",
    rootfs,
    image,
    `${layout.fsBytes / 1024}k`,
  ];
}

export async function duBytes(dir: string): Promise<number> {
  const out = await run(["du", "-s", "--block-size=1", "-x", dir], { timeoutMs: 5 * 60_000 });
  return Number(out.stdout.split(/\s/)[0]);
}

export async function makeRawImage(opts: {
  rootfs: string;
  image: string;
  extraMiB?: number;
  log?: (l: string) => void;
}): Promise<ImageLayout> {
  const layout = planLayout(await duBytes(opts.rootfs), opts.extraMiB);
  await run(["truncate", "-s", String(layout.imageBytes), opts.image], { timeoutMs: 60_000 });
  await run(sgdiskArgs(opts.image, layout), { timeoutMs: 60_000 });
  opts.log?.(`mkfs.ext4 -d (${Math.round(layout.fsBytes / MiB)} MiB)`);
  await run(mkfsArgs(opts.image, opts.rootfs, layout), { timeoutMs: 10 * 60_000 });
  return layout;
}
