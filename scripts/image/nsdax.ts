/**
 * Kata's DAX image layout, as osbuilder's image_builder.sh makes it (set_dax_header): in front
 * of the rootfs image go MBR #1 (parted's msdos table, one partition from 3 MiB to the end of
 * the whole image) and, at 4 KiB, the NVDIMM_PFN_INFO block nsdax.gpl.c writes; the rootfs
 * image (with its own table, MBR #2, and its partition at 1 MiB) follows at 2 MiB. A kernel
 * with NVDIMM support reads the namespace from dataoff, so it sees MBR #2; anything else sees
 * MBR #1. Either partition is the same bytes: byte 3 MiB of the file.
 *
 * Every number Kata's files hold comes from the boot profile's dax_header section; what is
 * parted's rather than Kata's (the geometry of a file, the partition type) is named here.
 * Pure but for writeDaxHeader.
 */
import type { BootProfile } from "../data/boot-profiles.js";
import { UserError } from "../lib/errors.js";
import { writeAtomic } from "../lib/fs-atomic.js";

const SECTOR = 512;
/** The MBR's fields (the classic layout parted writes: 440 bytes of boot code first). */
const MBR = { diskSignature: 440, partitions: 446, magic: 510 } as const;
/** parted's geometry for an image file (libparted's linux.c, a regular file): 4 heads, 32 sectors. */
const FILE_GEOMETRY = { heads: 4, sectors: 32 } as const;
/** parted's msdos type for `mkpart primary ext4` (and xfs): Linux. */
const LINUX_PARTITION = 0x83;
/** The 32-bit LBA fields of an MBR: no partition past 2 TiB. */
const MAX_SECTORS = 2 ** 32 - 1;
/** The checksum field's value in the profile: computed, not written as given. */
const CHECKSUM = "fletcher64";
const MASK64 = (1n << 64n) - 1n;

/** The numbers of dax_header.facts, in bytes. */
export interface DaxFacts {
  /** dax_header_sz: MBR #1 and the info block, before the rootfs image. */
  headerBytes: number;
  /** dax_alignment: nsdax's ALIGNMENT argument. */
  alignment: number;
  /** rootfs_start: where the rootfs image's own partition starts, inside it. */
  rootfsStart: number;
  /** Where MBR #1's partition starts in the whole image (rootfs_start + dax_header_sz). */
  partitionStart: number;
  infoBlockOffset: number;
  infoBlockBytes: number;
}

/** Where everything goes in the final image: header, then the rootfs image. */
export interface DaxLayout extends DaxFacts {
  /** Where the rootfs image is put: right after the header. */
  rootfsOffset: number;
  rootfsImageBytes: number;
  totalBytes: number;
  /** MBR #1's one partition, in sectors of the whole image (its end is the last sector). */
  partition: { startSector: number; sectors: number; type: number };
}

export interface DaxHeaderOptions {
  /**
   * MBR #1's disk signature (bytes 440-443). parted draws a random one on every run, so Kata's
   * images differ there; a fixed one (default 0) keeps the header reproducible.
   */
  diskSignature?: number;
}

function factNumber(profile: BootProfile, name: string): number {
  const value = profile.doc.dax_header.facts[name]?.value;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0)
    throw new UserError(
      `${profile.file}: dax_header.facts.${name} is ${JSON.stringify(value)}, not a number of bytes`,
      "give its value in bytes, as image_builder.sh computes it",
    );
  return value;
}

/** The profile's numbers, checked against each other where Kata derives one from another. */
export function daxFacts(profile: BootProfile): DaxFacts {
  const facts: DaxFacts = {
    headerBytes: factNumber(profile, "header_size"),
    alignment: factNumber(profile, "alignment"),
    rootfsStart: factNumber(profile, "rootfs_start"),
    partitionStart: factNumber(profile, "header_image_partition_start"),
    infoBlockOffset: factNumber(profile, "info_block_offset"),
    infoBlockBytes: factNumber(profile, "info_block_size"),
  };
  const problems = [
    facts.partitionStart !== facts.rootfsStart + facts.headerBytes &&
      "header_image_partition_start is not rootfs_start + header_size (image_builder.sh's rootfs_offset)",
    facts.infoBlockOffset < SECTOR && "the info block would overlap MBR #1",
    facts.infoBlockOffset + facts.infoBlockBytes > facts.headerBytes && "the info block overruns the header",
    facts.partitionStart % SECTOR !== 0 && "the partition does not start on a sector",
  ].filter((p): p is string => typeof p === "string");
  if (problems.length)
    throw new UserError(`${profile.file}: dax_header: ${problems.join("; ")}`, "fix the profile's facts");
  return facts;
}

/** The final image for a rootfs image of `rootfsImageBytes`: what goes where. */
export function daxLayout(profile: BootProfile, rootfsImageBytes: number): DaxLayout {
  const facts = daxFacts(profile);
  const totalBytes = facts.headerBytes + rootfsImageBytes;
  const startSector = facts.partitionStart / SECTOR;
  const sectors = totalBytes / SECTOR - startSector;
  if (!Number.isSafeInteger(rootfsImageBytes) || rootfsImageBytes % SECTOR !== 0)
    throw new UserError(
      `the rootfs image is ${rootfsImageBytes} bytes, not whole ${SECTOR}-byte sectors`,
      "size the image in MiB, as image_builder.sh does",
    );
  if (rootfsImageBytes <= facts.rootfsStart)
    throw new UserError(
      `the rootfs image (${rootfsImageBytes} bytes) ends before its partition would start (${facts.rootfsStart})`,
      "make the rootfs image larger",
    );
  if (totalBytes / SECTOR > MAX_SECTORS)
    throw new UserError(`the image (${totalBytes} bytes) is past an MBR's 2 TiB`, "make it smaller");
  return {
    ...facts,
    rootfsOffset: facts.headerBytes,
    rootfsImageBytes,
    totalBytes,
    partition: { startSector, sectors, type: LINUX_PARTITION },
  };
}

/** parted's sector_to_chs (libparted's dos.c): past cylinder 1023 every field is at its maximum. */
export function chs(sector: number, geometry = FILE_GEOMETRY): [number, number, number] {
  const perCylinder = geometry.heads * geometry.sectors;
  let c = Math.floor(sector / perCylinder);
  let h = Math.floor(sector / geometry.sectors) % geometry.heads;
  let s = sector % geometry.sectors;
  if (c > 1023) [c, h, s] = [1023, geometry.heads - 1, geometry.sectors - 1];
  // head; sector (1-based) with the cylinder's bits 8-9 on top; the cylinder's low byte.
  return [h, s + 1 + ((c >> 8) << 6), c & 0xff];
}

/**
 * MBR #1 as parted writes it for `mklabel msdos mkpart primary ext4 3MiB -1s`: the disk
 * signature, one inactive partition and 0x55AA. The boot code (bytes 0-439) stays zero: parted
 * puts a small loader there, which nothing reads (the guest kernel is booted directly).
 */
export function mbr1(layout: DaxLayout, opts: DaxHeaderOptions = {}): Buffer {
  const mbr = Buffer.alloc(SECTOR);
  mbr.writeUInt32LE(opts.diskSignature ?? 0, MBR.diskSignature);
  const { startSector, sectors, type } = layout.partition;
  const entry = MBR.partitions;
  mbr[entry] = 0; // not bootable
  Buffer.from(chs(startSector)).copy(mbr, entry + 1);
  mbr[entry + 4] = type;
  Buffer.from(chs(startSector + sectors - 1)).copy(mbr, entry + 5);
  mbr.writeUInt32LE(startSector, entry + 8);
  mbr.writeUInt32LE(sectors, entry + 12);
  mbr.writeUInt16LE(0xaa55, MBR.magic);
  return mbr;
}

/**
 * nd_fletcher64 of nsdax.gpl.c (and the kernel's nvdimm driver) with le=1: over little-endian
 * 32-bit words, lo32 a 32-bit sum that wraps, hi32 a 64-bit sum of the running lo32, the result
 * hi32 << 32 | lo32 in 64 bits.
 */
export function fletcher64(data: Uint8Array): bigint {
  if (data.length % 4 !== 0) throw new Error(`fletcher64 over ${data.length} bytes: not whole 32-bit words`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let lo = 0;
  let hi = 0n;
  for (let i = 0; i < data.length; i += 4) {
    lo = (lo + view.getUint32(i, true)) >>> 0;
    hi += BigInt(lo);
  }
  return ((hi << 32n) | BigInt(lo)) & MASK64;
}

type Field = BootProfile["doc"]["dax_header"]["fields"][number];

/** An integer as `size` little-endian bytes, refusing one that does not fit. */
function littleEndian(value: number, size: number, where: string): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) throw new UserError(`${where}: ${value} is not a count`);
  const bytes = Buffer.alloc(Math.max(size, 8));
  bytes.writeBigUInt64LE(BigInt(value));
  if (bytes.subarray(size).some((b) => b !== 0))
    throw new UserError(`${where}: ${value} does not fit ${size} bytes`);
  return bytes.subarray(0, size);
}

/** One field of struct nd_pfn_sb as its value says: NUL-ended text, or a little-endian integer. */
function writeField(block: Buffer, f: Field): void {
  const where = `dax_header.fields.${f.name}`;
  if (f.offset + f.size > block.length)
    throw new UserError(
      `${where}: bytes ${f.offset}-${f.offset + f.size} are past the ${block.length}-byte block`,
    );
  if (typeof f.value === "string") {
    // snprintf into the field: the text and its NUL must fit.
    if (f.value.length >= f.size) throw new UserError(`${where}: "${f.value}" does not fit ${f.size} bytes`);
    block.write(f.value, f.offset, "ascii");
  } else if (typeof f.value === "number") {
    // Zero is what `struct nd_pfn_sb sb = { 0 }` leaves, at any size (uuid, padding).
    if (f.value !== 0) littleEndian(f.value, f.size, where).copy(block, f.offset);
  } else throw new UserError(`${where}: value ${JSON.stringify(f.value)} is neither text nor a number`);
}

/** image_builder.sh passes the header size as nsdax's DATA_OFFSET and the alignment as ALIGNMENT. */
function checkArguments(profile: BootProfile): void {
  const { headerBytes, alignment } = daxFacts(profile);
  const value = (name: string) => profile.doc.dax_header.fields.find((f) => f.name === name)?.value;
  for (const [name, want] of [
    ["dataoff", headerBytes],
    ["align", alignment],
  ] as const)
    if (value(name) !== want)
      throw new UserError(
        `${profile.file}: dax_header.fields.${name} is ${JSON.stringify(value(name))}, not nsdax's argument ${want}`,
        "the field holds what image_builder.sh passes to nsdax (header_size, alignment)",
      );
}

/**
 * The info block nsdax.gpl.c writes: every field of the profile, then the checksum over the
 * block with the checksum field still zero (nd_sb_checksum). uuid and parent_uuid stay zero,
 * as nsdax leaves them (the struct is zero-initialized and never given one).
 */
export function nsdaxInfoBlock(profile: BootProfile): Buffer {
  const { infoBlockBytes } = daxFacts(profile);
  const block = Buffer.alloc(infoBlockBytes);
  const fields = profile.doc.dax_header.fields;
  const sums = fields.filter((f) => f.value === CHECKSUM);
  if (sums.length !== 1 || sums[0].size !== 8)
    throw new UserError(
      `${profile.file}: dax_header.fields has ${sums.length} 8-byte ${CHECKSUM} fields, not one`,
      "mark the checksum field with value: fletcher64",
    );
  // nd_sb_checksum reads the block as struct nd_gen_sb: the checksum is its last 8 bytes.
  if (sums[0].offset !== infoBlockBytes - 8)
    throw new UserError(
      `${profile.file}: the checksum field is at ${sums[0].offset}, not the block's last 8 bytes`,
    );
  checkArguments(profile);
  for (const f of fields) if (f !== sums[0]) writeField(block, f);
  block.writeBigUInt64LE(fletcher64(block), sums[0].offset);
  return block;
}

/**
 * The bytes Kata puts in front of the rootfs image (the first header_size bytes of its header
 * image): MBR #1 at 0, the info block at info_block_offset, zeros elsewhere.
 */
export function daxHeader(
  profile: BootProfile,
  rootfsImageBytes: number,
  opts: DaxHeaderOptions = {},
): Buffer {
  const layout = daxLayout(profile, rootfsImageBytes);
  const header = Buffer.alloc(layout.headerBytes);
  mbr1(layout, opts).copy(header, 0);
  nsdaxInfoBlock(profile).copy(header, layout.infoBlockOffset);
  return header;
}

/** The header into `file`, whole or not at all; the image step appends the rootfs image after it. */
export async function writeDaxHeader(
  file: string,
  profile: BootProfile,
  rootfsImageBytes: number,
  opts: DaxHeaderOptions = {},
): Promise<DaxLayout> {
  await writeAtomic(file, daxHeader(profile, rootfsImageBytes, opts));
  return daxLayout(profile, rootfsImageBytes);
}
