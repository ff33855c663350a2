/**
 * A lock on a working directory that two cr-guest processes on one cache could both use (a
 * kernel build directory: a proof's variant and a bisect step both build incrementally in the
 * fragment set's). `DIR.lock` holds "host pid"; a second process waits for the first, a lock
 * left by a dead process is taken over, and an interrupt removes it.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { hostname } from "node:os";
import { UserError } from "./errors.js";
import { interruptHandler } from "./interrupt.js";

/** The owner of a lock file while it lives (on another host: assumed alive). */
export function lockOwner(file: string): { host: string; pid: number } | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  const [host = "?", pidText] = text.trim().split(" ");
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isInteger(pid)) return { host, pid };
  try {
    process.kill(pid, 0);
    return { host, pid };
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM" ? { host, pid } : undefined;
  }
}

/**
 * Creates the lock file if nobody holds it (a dead owner's is taken over): its release, or
 * undefined with the living owner.
 */
export function tryLock(file: string): { release: () => void } | { owner: { host: string; pid: number } } {
  for (;;) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, `${hostname()} ${process.pid}\n`);
      closeSync(fd);
      const untrack = interruptHandler.temp(file);
      return {
        release: () => {
          untrack();
          rmSync(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const owner = lockOwner(file);
    if (owner) return { owner };
    rmSync(file, { force: true });
  }
}

/** Takes the lock of `dir`, waiting up to `timeoutMs` for another process; returns its release. */
export async function lockDir(
  dir: string,
  o: { log?: (line: string) => void; timeoutMs?: number; pollMs?: number } = {},
): Promise<() => void> {
  const file = `${dir}.lock`;
  await mkdir(dirname(file), { recursive: true });
  const deadline = Date.now() + (o.timeoutMs ?? 4 * 3600_000);
  let told = false;
  for (;;) {
    const got = tryLock(file);
    if ("release" in got) return got.release;
    const { owner } = got;
    if (owner.pid === process.pid && owner.host === hostname())
      throw new Error(`${dir} is locked by this process already (a nested use of one build directory)`);
    if (Date.now() > deadline)
      throw new UserError(
        `${dir} stayed in use by pid ${owner.pid} on ${owner.host} past the deadline`,
        `wait for that cr-guest to end, or remove ${file} if it is gone`,
        3,
      );
    if (!told) o.log?.(`waiting for pid ${owner.pid} (another cr-guest) to finish with ${dir}`);
    told = true;
    await new Promise((r) => setTimeout(r, o.pollMs ?? 2000));
  }
}
