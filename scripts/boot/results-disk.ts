/**
 * The results channel: a second raw disk, found by the guest through a marker in its first
 * sector (device names are not stable). The host writes the run's input there as a gzipped
 * tar; the guest writes its results back as another, then a DONE record with the size.
 * Works without networking. The layout is the guest contract (scripts/lib/guest-contract.ts),
 * which guest/lib.sh reads from the generated contract.env.
 */
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { mkdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as tar from "tar";

import {
  INPUT_OFFSET_MIB,
  OUTPUT_OFFSET_MIB,
  RESULTS_DISK_MIB,
  RESULTS_DONE_MARKER,
  RESULTS_MARKER,
} from "../lib/guest-contract.js";

export { RESULTS_MARKER };
const MiB = 1024 * 1024;
export const INPUT_OFFSET = INPUT_OFFSET_MIB * MiB;
export const OUTPUT_OFFSET = OUTPUT_OFFSET_MIB * MiB;
export const DISK_BYTES = RESULTS_DISK_MIB * MiB;

/** Creates the disk with the input files (name -> content) in place. */
export async function createResultsDisk(
  path: string,
  files: Record<string, string>,
  scratch: string,
): Promise<void> {
  const src = join(scratch, "input");
  await rm(src, { recursive: true, force: true });
  await mkdir(src, { recursive: true });
  for (const [name, content] of Object.entries(files)) await writeFile(join(src, name), content);
  const tgz = join(scratch, "input.tgz");
  await tar.create({ gzip: true, file: tgz, cwd: src, portable: true }, Object.keys(files));
  const input = await readFile(tgz);
  if (input.length > OUTPUT_OFFSET - INPUT_OFFSET)
    throw new Error(`run input is ${input.length} bytes, more than the disk layout allows`);
  await writeFile(path, "");
  await truncate(path, DISK_BYTES);
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, Buffer.from(`${RESULTS_MARKER}\nin=${input.length}\n`), 0, undefined, 0);
    writeSync(fd, input, 0, input.length, INPUT_OFFSET);
  } finally {
    closeSync(fd);
  }
}

export function parseDoneRecord(sector: Buffer): number | undefined {
  const m = new RegExp(`^${RESULTS_DONE_MARKER} out=(\\d+)\\n`).exec(sector.toString("latin1"));
  return m ? Number(m[1]) : undefined;
}

/** Extracts what the guest wrote, or says why there is nothing (an infrastructure error). */
export async function readResultsDisk(
  path: string,
  dest: string,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  const fd = openSync(path, "r");
  let out: Buffer;
  try {
    const sector = Buffer.alloc(512);
    readSync(fd, sector, 0, 512, 512);
    const size = parseDoneRecord(sector);
    if (size === undefined)
      return {
        ok: false,
        reason: "the guest did not write its results (no DONE record on the results disk)",
      };
    if (size <= 0 || size > DISK_BYTES - OUTPUT_OFFSET)
      return { ok: false, reason: `the DONE record names an impossible size (${size})` };
    out = Buffer.alloc(size);
    readSync(fd, out, 0, size, OUTPUT_OFFSET);
  } finally {
    closeSync(fd);
  }
  const tgz = `${dest}.tgz`;
  await writeFile(tgz, out);
  await mkdir(dest, { recursive: true });
  try {
    await tar.extract({ file: tgz, cwd: dest, strict: true });
  } catch (err) {
    return { ok: false, reason: `results unreadable: ${(err as Error).message}` };
  } finally {
    await rm(tgz, { force: true });
  }
  return { ok: true };
}
