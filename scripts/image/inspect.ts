/**
 * What is in a user-supplied image, read on the host without booting an appliance:
 * sfdisk for the partition table (gpt, msdos, or none), blkid at each partition's offset
 * for the filesystem. Formats guestfish cannot safely change are refused here.
 */
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";

export interface ImagePartition {
  index: number;
  startBytes: number;
  sizeBytes: number;
  fsType?: string;
}

export interface ImageInspection {
  label: "gpt" | "dos" | "none";
  partitions: ImagePartition[];
  root: ImagePartition;
  /** The device guestfish sees for the root partition. */
  rootDevice: string;
}

const WRITABLE = ["ext4", "ext3", "ext2", "xfs"];
const REFUSED: Record<string, string> = {
  erofs: "erofs is read-only by design: rebuild the image with CRIU in it instead",
  DM_verity_hash: "a dm-verity hash partition: changing the root would break verification",
  squashfs: "squashfs is read-only: rebuild the image instead",
};

/** Picks the root from what sfdisk and blkid said: pure. */
export function chooseRoot(
  image: string,
  label: ImageInspection["label"],
  partitions: ImagePartition[],
): ImageInspection {
  for (const p of partitions)
    if (p.fsType && REFUSED[p.fsType])
      throw new UserError(
        `${image}: partition ${p.index} is ${p.fsType}; ${REFUSED[p.fsType]}`,
        "use a Kata image with an ext4 or xfs root",
      );
  const root = partitions.find((p) => p.fsType && WRITABLE.includes(p.fsType));
  if (!root)
    throw new UserError(
      `${image}: no ext4 or xfs root filesystem found (saw ${partitions.map((p) => `${p.index}:${p.fsType ?? "unknown"}`).join(", ") || "nothing"})`,
      "pass a raw Kata guest image (msdos or GPT label, ext4 or xfs root)",
    );
  return { label, partitions, root, rootDevice: label === "none" ? "/dev/sda" : `/dev/sda${root.index}` };
}

async function fsTypeAt(image: string, offset: number): Promise<string | undefined> {
  const r = await run(["blkid", "-p", "-O", String(offset), "-o", "value", "-s", "TYPE", image], {
    timeoutMs: 30_000,
    allowFailure: true,
  });
  return r.stdout.trim() || undefined;
}

export async function inspectImage(image: string): Promise<ImageInspection> {
  const table = await run(["sfdisk", "--json", image], { timeoutMs: 30_000, allowFailure: true });
  if (table.exitCode !== 0) {
    const fsType = await fsTypeAt(image, 0);
    return chooseRoot(image, "none", [{ index: 0, startBytes: 0, sizeBytes: 0, fsType }]);
  }
  const pt = JSON.parse(table.stdout).partitiontable as {
    label: string;
    sectorsize?: number;
    partitions?: { start: number; size: number }[];
  };
  const sector = pt.sectorsize ?? 512;
  const partitions: ImagePartition[] = [];
  for (const [i, p] of (pt.partitions ?? []).entries())
    partitions.push({
      index: i + 1,
      startBytes: p.start * sector,
      sizeBytes: p.size * sector,
      fsType: await fsTypeAt(image, p.start * sector),
    });
  return chooseRoot(image, pt.label === "gpt" ? "gpt" : "dos", partitions);
}
