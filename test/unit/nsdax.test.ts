/**
 * Kata's DAX header (scripts/image/nsdax.ts): the fletcher64 checksum on known vectors, the
 * layout and MBR #1 on known sizes, and the header held byte for byte against the real thing:
 * Kata 4.1.0's nsdax.gpl.c compiled with gcc as image_builder.sh compiles it, and
 * image_builder.sh's own create_disk and set_dax_header (read from the script and run with
 * bash, with its qemu-img, parted and dd) building a whole image. One part of MBR #1 differs
 * on purpose: parted's boot code (bytes 0-439), which ours leaves zero. The disk signature is
 * parted's random one, handed to ours.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadBootProfile, parseBootProfile } from "../../scripts/data/boot-profiles.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { parseYaml } from "../../scripts/lib/yaml-file.js";
import {
  chs,
  daxHeader,
  daxLayout,
  fletcher64,
  mbr1,
  nsdaxInfoBlock,
  writeDaxHeader,
} from "../../scripts/image/nsdax.js";
import { missingTools, unavailable } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";

const KATA_TREE = process.env.CR_GUEST_KATA_TREE || join(REPO_ROOT, "..", "shared", "kata-4.1.0");
const BUILDER = join(KATA_TREE, "tools/osbuilder/image-builder");
const MiB = 1024 * 1024;
const BOOT_CODE = 440;

const profile = loadBootProfile();

/** Why the real tools cannot run: no Kata tree, or no gcc/parted/qemu-img (a failure with CI=true). */
function missingRealTools(): string | undefined {
  if (!existsSync(join(BUILDER, "nsdax.gpl.c")) || !existsSync(join(BUILDER, "image_builder.sh")))
    return unavailable(`no Kata 4.1.0 image builder in ${BUILDER} (set CR_GUEST_KATA_TREE)`);
  return missingTools(["gcc", "parted", "qemu-img", "dd", "bash", "sfdisk"]);
}

/** Little-endian 32-bit words as bytes. */
const words = (...ws: number[]) => {
  const b = Buffer.alloc(ws.length * 4);
  ws.forEach((w, i) => b.writeUInt32LE(w, i * 4));
  return b;
};

/** The profile with `from` (once in the file) replaced by `to`. */
function edited(from: string, to: string) {
  const text = readFileSync(profile.file, "utf8");
  expect(text.split(from).length, `'${from}' occurs once`).toBe(2);
  return parseBootProfile(parseYaml(text.replace(from, to), "kata.yaml"));
}

describe("fletcher64 (nd_fletcher64, little-endian words)", () => {
  it("sums words into lo32 and the running lo32 into hi32", () => {
    expect(fletcher64(Buffer.alloc(4096))).toBe(0n);
    // lo32 = 1+2+3 = 6; hi32 = 1 + 3 + 6 = 10.
    expect(fletcher64(words(1, 2, 3))).toBe((10n << 32n) | 6n);
    // The word order matters (unlike a plain sum): 3, 2, 1 gives hi32 = 3 + 5 + 6 = 14.
    expect(fletcher64(words(3, 2, 1))).toBe((14n << 32n) | 6n);
  });

  it("wraps lo32 at 32 bits and drops hi32's bits past 64", () => {
    // lo32: 0xffffffff, then 0x1fffffffe -> 0xfffffffe; hi32 = 0x1fffffffd, whose top bit is shifted out.
    expect(fletcher64(words(0xffffffff, 0xffffffff))).toBe(0xfffffffd_fffffffen);
  });

  it("refuses a length that is not whole words", () => {
    expect(() => fletcher64(Buffer.alloc(6))).toThrow(/not whole 32-bit words/);
  });

  it("gives the checksum Kata's nsdax wrote for dataoff = align = 2 MiB (recorded from the real tool)", () => {
    const block = nsdaxInfoBlock(profile);
    expect(block.readBigUInt64LE(4088)).toBe(0x685b032be3943830n);
    expect(fletcher64(Buffer.concat([block.subarray(0, 4088), Buffer.alloc(8)]))).toBe(0x685b032be3943830n);
  });
});

describe("the info block and the layout, from the profile", () => {
  it("holds struct nd_pfn_sb's values at their offsets", () => {
    const b = nsdaxInfoBlock(profile);
    expect(b).toHaveLength(4096);
    expect(b.subarray(0, 16).toString("latin1")).toBe("NVDIMM_PFN_INFO\0");
    expect(b.subarray(16, 48).every((x) => x === 0)).toBe(true); // uuid, parent_uuid: zero as nsdax leaves them
    expect(b.readUInt32LE(48)).toBe(0); // flags
    expect([b.readUInt16LE(52), b.readUInt16LE(54)]).toEqual([0, 2]); // version 0.2
    expect(b.readBigUInt64LE(56)).toBe(2n * 1024n * 1024n); // dataoff
    expect(b.readBigUInt64LE(64)).toBe(0n); // npfns
    expect(b.readUInt32LE(72)).toBe(1); // PFN_MODE_RAM
    expect(b.readUInt32LE(84)).toBe(2 * MiB); // align
    expect(b.subarray(88, 4088).every((x) => x === 0)).toBe(true);
  });

  it("places the rootfs image at 2 MiB and MBR #1's partition at 3 MiB, to the last sector", () => {
    const l = daxLayout(profile, 126 * MiB);
    expect(l).toMatchObject({ rootfsOffset: 2 * MiB, totalBytes: 128 * MiB, rootfsStart: MiB });
    expect(l.partition).toEqual({ startSector: 6144, sectors: 128 * 2048 - 6144, type: 0x83 });
    // Both tables' partitions name the same bytes: MBR #2's (1 MiB into the rootfs image) and MBR #1's.
    expect(l.rootfsOffset + l.rootfsStart).toBe(l.partition.startSector * 512);
  });

  it("refuses a rootfs image of part sectors, one too small for its partition, one past 2 TiB", () => {
    expect(() => daxLayout(profile, 126 * MiB + 1)).toThrow(/not whole 512-byte sectors/);
    expect(() => daxLayout(profile, MiB)).toThrow(/ends before its partition would start/);
    expect(() => daxLayout(profile, 2 ** 41)).toThrow(/past an MBR's 2 TiB/);
  });

  it("refuses a profile whose numbers contradict each other", () => {
    const start = "    header_image_partition_start:\n      value: 3145728";
    expect(() => daxLayout(edited(start, start.replace("3145728", "2097152")), 126 * MiB)).toThrow(
      /not rootfs_start \+ header_size/,
    );
    const dataoff = "    - name: dataoff\n      offset: 56\n      size: 8\n      value: 2097152";
    expect(() => nsdaxInfoBlock(edited(dataoff, dataoff.replace("2097152", "4096")))).toThrow(
      /fields\.dataoff is 4096, not nsdax's argument 2097152/,
    );
    const mode = "    - name: mode\n      offset: 72\n      size: 4\n      value: 1";
    expect(() => nsdaxInfoBlock(edited(mode, mode.replace("value: 1", "value: 4294967296")))).toThrow(
      /mode: 4294967296 does not fit 4 bytes/,
    );
  });

  it("writes CHS as parted does for a file (4 heads, 32 sectors), at its maximum past cylinder 1023", () => {
    expect(chs(6144)).toEqual([0, 1, 48]); // cylinder 48, head 0, sector 1
    expect(chs(16383)).toEqual([3, 32, 127]);
    expect(chs(128 * 1023 + 127)).toEqual([3, 32 | (3 << 6), 0xff]); // cylinder 1023 exactly
    expect(chs(128 * 1024)).toEqual([3, 32 | (3 << 6), 0xff]); // past it: clamped
  });

  it("MBR #1: the signature given, one Linux partition, 0x55AA, no boot code", () => {
    const mbr = mbr1(daxLayout(profile, 6 * MiB), { diskSignature: 0x30a3f741 });
    expect(mbr.subarray(0, BOOT_CODE).every((x) => x === 0)).toBe(true);
    expect(mbr.readUInt32LE(440)).toBe(0x30a3f741);
    expect([...mbr.subarray(446, 462)]).toEqual([
      0x00,
      0,
      1,
      48,
      0x83,
      3,
      32,
      127,
      ...[0x00, 0x18, 0, 0],
      ...[0x00, 0x28, 0, 0],
    ]);
    expect(mbr.subarray(462, 510).every((x) => x === 0)).toBe(true);
    expect([mbr[510], mbr[511]]).toEqual([0x55, 0xaa]);
  });

  it("the header is MBR #1, then zeros, the info block at 4 KiB, zeros to 2 MiB; written atomically", async () => {
    const h = daxHeader(profile, 126 * MiB);
    expect(h).toHaveLength(2 * MiB);
    expect(h.subarray(0, 512).equals(mbr1(daxLayout(profile, 126 * MiB)))).toBe(true);
    expect(h.subarray(512, 4096).every((x) => x === 0)).toBe(true);
    expect(h.subarray(4096, 8192).equals(nsdaxInfoBlock(profile))).toBe(true);
    expect(h.subarray(8192).every((x) => x === 0)).toBe(true);
    const file = join(tempDir("nsdax-"), "header.img");
    const layout = await writeDaxHeader(file, profile, 126 * MiB);
    expect(readFileSync(file).equals(h)).toBe(true);
    expect(layout.rootfsOffset).toBe(h.length);
  });
});

/** `readonly name=value` of image_builder.sh, as the script sets it. */
function scriptVar(script: string, name: string): string {
  const m = new RegExp(`^readonly ${name}=(\\S+)$`, "m").exec(script);
  if (!m) throw new Error(`image_builder.sh sets no ${name}`);
  return m[0];
}

/** A shell function of image_builder.sh, from its name to the closing brace in column 0. */
function scriptFunction(script: string, name: string): string {
  const m = new RegExp(`^${name}\\(\\) \\{\\n[\\s\\S]*?\\n\\}$`, "m").exec(script);
  if (!m) throw new Error(`image_builder.sh has no function ${name}`);
  return m[0];
}

/**
 * A whole Kata image as image_builder.sh makes one of `imgMiB` MiB: the rootfs image (its own
 * table, by create_disk as create_rootfs_image calls it; no filesystem: the bytes behind the
 * header are only copied), then set_dax_header with the compiled nsdax. The script's functions
 * and values are its own; only the logging helpers and sync are stubbed.
 */
function kataImage(dir: string, nsdax: string, imgMiB: number): { image: string; rootfs: Buffer } {
  const script = readFileSync(join(BUILDER, "image_builder.sh"), "utf8");
  const image = join(dir, `kata-${imgMiB}.img`);
  const program = [
    "set -o errexit -o pipefail",
    "info() { :; }; OK() { :; }; sync() { :; }",
    ...["rootfs_start", "rootfs_end", "dax_header_sz", "dax_alignment"].map((v) => scriptVar(script, v)),
    "MEASURED_ROOTFS=no",
    scriptFunction(script, "create_disk"),
    scriptFunction(script, "set_dax_header"),
    'image="$1"; img_size="$2"; nsdax="$3"',
    'create_disk "$image" "$((img_size - dax_header_sz))" ext4 "$rootfs_start"',
    // A mark at the rootfs image's end, to see it land whole behind the header.
    `printf KATA-ROOTFS-END | dd of="$image" bs=1 seek=$(( (img_size - dax_header_sz) * 1048576 - 15 )) conv=notrunc status=none`,
    'cp "$image" "$image.rootfs"',
    'set_dax_header "$image" "$img_size" ext4 "$nsdax"',
  ].join("\n");
  execFileSync("bash", ["-c", program, "kata", image, String(imgMiB), nsdax], { cwd: dir, stdio: "pipe" });
  return { image, rootfs: readFileSync(`${image}.rootfs`) };
}

describe.skipIf(missingRealTools())("the header against Kata 4.1.0's nsdax and image_builder.sh", () => {
  // gcc -O2, as image_builder.sh builds nsdax (line 653), into a scratch directory; once all
  // tests are collected (a skipped suite is collected too, without a tree).
  const dir = tempDir("nsdax-real-");
  const nsdax = join(dir, "nsdax");
  beforeAll(() => {
    execFileSync("gcc", ["-O2", join(BUILDER, "nsdax.gpl.c"), "-o", nsdax], { stdio: "pipe" });
  });

  it("nsdax alone writes our info block at 4 KiB and nothing else", () => {
    const file = join(dir, "bare.img");
    writeFileSync(file, Buffer.alloc(2 * MiB, 0xee));
    const args = profile.doc.dax_header.facts.nsdax_call.value as string;
    const [, , dataOffset, alignment] = args.split(" ");
    expect(execFileSync(nsdax, [file, dataOffset, alignment], { encoding: "utf8" })).toContain("OK!");
    const out = readFileSync(file);
    expect(out.subarray(4096, 8192).equals(nsdaxInfoBlock(profile))).toBe(true);
    expect(out.subarray(0, 4096).every((x) => x === 0xee)).toBe(true);
    expect(out.subarray(8192).every((x) => x === 0xee)).toBe(true);
  });

  for (const imgMiB of [8, 128]) {
    it(`a ${imgMiB} MiB image: our header is Kata's first 2 MiB but parted's boot code, the rootfs image follows at our offset`, () => {
      const { image, rootfs } = kataImage(dir, nsdax, imgMiB);
      const kata = readFileSync(image);
      const layout = daxLayout(profile, rootfs.length);
      expect(kata.length).toBe(layout.totalBytes);
      expect(layout.totalBytes).toBe(imgMiB * MiB);
      // parted's signature is random: handed to ours, then every byte from 440 on is compared.
      const ours = daxHeader(profile, rootfs.length, { diskSignature: kata.readUInt32LE(440) });
      const theirs = kata.subarray(0, layout.headerBytes);
      expect(theirs.subarray(BOOT_CODE).equals(ours.subarray(BOOT_CODE))).toBe(true);
      // The one difference: parted writes a boot loader stub; ours is zero.
      expect(theirs.subarray(0, BOOT_CODE).some((x) => x !== 0)).toBe(true);
      expect(kata.subarray(layout.rootfsOffset).equals(rootfs)).toBe(true);
      // MBR #2 (the rootfs image's own, from create_disk) has its partition at rootfs_start.
      expect(rootfs.readUInt32LE(446 + 8) * 512).toBe(layout.rootfsStart);
    });
  }

  it("sfdisk reads Kata's MBR #1 and ours alike", () => {
    const { image, rootfs } = kataImage(dir, nsdax, 8);
    const ours = join(dir, "ours.img");
    const kata = readFileSync(image);
    writeFileSync(
      ours,
      Buffer.concat([daxHeader(profile, rootfs.length, { diskSignature: kata.readUInt32LE(440) }), rootfs]),
    );
    const dump = (f: string) =>
      execFileSync("sfdisk", ["--dump", f], { encoding: "utf8" }).replaceAll(f, "IMAGE");
    expect(dump(ours)).toBe(dump(image));
    expect(dump(ours)).toMatch(/IMAGE1 : start=\s*6144, size=\s*10240, type=83/);
  });
});
