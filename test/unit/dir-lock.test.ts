/** scripts/lib/dir-lock.ts: a second user of a directory waits; a dead owner's lock is taken over. */
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { lockDir, lockOwner } from "../../scripts/lib/dir-lock.js";

describe("directory lock", () => {
  const root = mkdtempSync(join(tmpdir(), "dir-lock-"));

  it("makes a second user wait until the first releases, and says it waits", async () => {
    const dir = join(root, "kbuild");
    const first = await lockDir(dir);
    expect(lockOwner(`${dir}.lock`)).toEqual({ host: hostname(), pid: process.pid });
    // One process stands for two here: its own second take is refused outright.
    await expect(lockDir(dir, { pollMs: 10 })).rejects.toThrow(/locked by this process already/);
    writeFileSync(`${dir}.lock`, `${hostname()} 1\n`); // pid 1 lives: another owner
    const lines: string[] = [];
    let got = false;
    const second = lockDir(dir, { pollMs: 10, log: (l) => lines.push(l) }).then((r) => ((got = true), r));
    await new Promise((r) => setTimeout(r, 60));
    expect(got).toBe(false);
    expect(lines).toEqual([`waiting for pid 1 (another cr-guest) to finish with ${dir}`]);
    first(); // removes the file: the waiter takes it
    (await second)();
    expect(got).toBe(true);
    expect(existsSync(`${dir}.lock`)).toBe(false);
  });

  it("takes over the lock of a process that is gone, and gives up at its deadline", async () => {
    const dir = join(root, "stale");
    writeFileSync(`${dir}.lock`, `${hostname()} ${spawnSync("true").pid}\n`);
    (await lockDir(dir))();
    writeFileSync(`${dir}.lock`, `${hostname()} 1\n`);
    await expect(lockDir(dir, { timeoutMs: 30, pollMs: 10 })).rejects.toThrow(/stayed in use by pid 1/);
  });
});
