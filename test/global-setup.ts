/**
 * One temporary directory for the whole test run (TMPDIR, inherited by every worker and
 * command), removed at the end: the tests make hundreds of scratch directories (a real CRIU
 * tree is 22 MB), and leaving them behind filled this machine's disk over a few dozen runs.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), "crg-tests-"));
  process.env.TMPDIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
