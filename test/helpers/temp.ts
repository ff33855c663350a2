/** Scratch directories for tests, under the run's TMPDIR (test/global-setup.ts removes it whole). */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A new, empty directory named `<prefix>XXXXXX` in the run's temporary directory. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
