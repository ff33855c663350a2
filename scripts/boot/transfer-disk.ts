/**
 * The transfer disk of a migration (layout in lib/guest-contract.ts): a blank one for boot A,
 * the record boot A wrote, and a verified copy for each attempt of boot B. A disk that is
 * missing, never written or corrupt is an infrastructure error naming the file.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readSync, writeSync } from "node:fs";
import { truncate, writeFile } from "node:fs/promises";
import { run } from "../lib/exec.js";
import {
  TRANSFER_DISK_MIB,
  TRANSFER_DONE_MARKER,
  TRANSFER_MARKER,
  TRANSFER_OFFSET_MIB,
} from "../lib/guest-contract.js";

const MiB = 1024 * 1024;

export class TransferDiskError extends Error {}

/** A sparse blank disk carrying only the marker. */
export async function createTransferDisk(path: string): Promise<void> {
  await writeFile(path, "");
  await truncate(path, TRANSFER_DISK_MIB * MiB);
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, Buffer.from(`${TRANSFER_MARKER}\n`), 0, undefined, 0);
  } finally {
    closeSync(fd);
  }
}

export interface TransferRecord {
  bytes: number;
  sha256: string;
}

export function parseTransferRecord(sector: Buffer): TransferRecord | undefined {
  const m = new RegExp(`^${TRANSFER_DONE_MARKER} size=(\\d+) sha256=([0-9a-f]{64})\\n`).exec(
    sector.toString("latin1"),
  );
  return m ? { bytes: Number(m[1]), sha256: m[2] } : undefined;
}

/** The record boot A wrote, checked against the bytes it describes. */
export function verifyTransferDisk(path: string): TransferRecord {
  if (!existsSync(path)) throw new TransferDiskError(`transfer disk ${path} is missing`);
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(1024);
    readSync(fd, head, 0, 1024, 0);
    if (!head.toString("latin1").startsWith(`${TRANSFER_MARKER}\n`))
      throw new TransferDiskError(
        `transfer disk ${path} has no ${TRANSFER_MARKER} marker: not a transfer disk`,
      );
    const rec = parseTransferRecord(head.subarray(512));
    if (!rec)
      throw new TransferDiskError(
        `transfer disk ${path} holds no ${TRANSFER_DONE_MARKER} record: boot A did not write it`,
      );
    if (rec.bytes <= 0 || rec.bytes > (TRANSFER_DISK_MIB - TRANSFER_OFFSET_MIB) * MiB)
      throw new TransferDiskError(
        `transfer disk ${path}: the record names an impossible size (${rec.bytes})`,
      );
    const hash = createHash("sha256");
    const buf = Buffer.alloc(MiB);
    for (let done = 0; done < rec.bytes;) {
      const n = readSync(fd, buf, 0, Math.min(MiB, rec.bytes - done), TRANSFER_OFFSET_MIB * MiB + done);
      if (n <= 0)
        throw new TransferDiskError(`transfer disk ${path} is truncated: ${done} of ${rec.bytes} bytes`);
      hash.update(buf.subarray(0, n));
      done += n;
    }
    const got = hash.digest("hex");
    if (got !== rec.sha256)
      throw new TransferDiskError(
        `transfer disk ${path} is corrupt: its data hashes to ${got}, its record says ${rec.sha256}`,
      );
    return rec;
  } finally {
    closeSync(fd);
  }
}

/** The archive boot A wrote (verified first), copied to `dest` (the host reads the dumps with crit). */
export async function readTransferArchive(disk: string, dest: string): Promise<TransferRecord> {
  const rec = verifyTransferDisk(disk);
  await run(
    [
      "dd",
      `if=${disk}`,
      `of=${dest}`,
      "bs=1M",
      `skip=${TRANSFER_OFFSET_MIB}`,
      `count=${rec.bytes}`,
      "iflag=count_bytes",
    ],
    { timeoutMs: 5 * 60_000 },
  );
  return rec;
}

/** A fresh copy for one attempt of boot B (a retried boot never sees what the last one did). */
export async function copyTransferDisk(from: string, to: string): Promise<TransferRecord> {
  const rec = verifyTransferDisk(from);
  await run(["cp", "--sparse=always", from, to], { timeoutMs: 5 * 60_000 });
  return rec;
}
