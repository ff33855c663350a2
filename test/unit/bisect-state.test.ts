/**
 * A bisect's state directory (scripts/bisect/state.ts): the lock refuses a second live process
 * and is taken over from a dead one; the state is written whole and read back.
 */
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { bisectDir, loadState, lockBisect, saveState } from "../../scripts/bisect/state.js";
import { UserError } from "../../scripts/lib/errors.js";

describe("bisect state", () => {
  const cache = mkdtempSync(join(tmpdir(), "bisect-state-"));

  it("refuses a second bisect over the same state while the first lives, and frees it on release", async () => {
    const dir = bisectDir(cache, "abc");
    const release = await lockBisect(dir, "abc");
    expect(readFileSync(join(dir, "lock"), "utf8")).toBe(`${hostname()} ${process.pid}\n`);
    await expect(lockBisect(dir, "abc")).rejects.toThrow(UserError);
    await expect(lockBisect(dir, "abc")).rejects.toThrow(/bisect abc is already running \(pid \d+/);
    release();
    expect(existsSync(join(dir, "lock"))).toBe(false);
    (await lockBisect(dir, "abc"))();
  });

  it("takes over the lock of a process that is gone", async () => {
    const dir = bisectDir(cache, "dead");
    const gone = spawnSync("true").pid!;
    await saveState(dir, { id: "dead", steps: [{ id: "x" }] });
    writeFileSync(join(dir, "lock"), `${hostname()} ${gone}\n`);
    const release = await lockBisect(dir, "dead");
    expect(readFileSync(join(dir, "lock"), "utf8")).toContain(String(process.pid));
    release();
    expect(loadState<{ steps: unknown[] }>(dir)?.steps).toHaveLength(1);
    expect(loadState(bisectDir(cache, "none"))).toBeUndefined();
  });
});
