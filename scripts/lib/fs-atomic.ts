/** Files written whole or not at all: a temporary name in the same directory, then a rename. */
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

let written = 0;

export async function writeAtomic(file: string, data: string | Buffer): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  // pid and a counter: two writers of one file in one process never share a temporary.
  const tmp = `${file}.tmp-${process.pid}-${++written}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
