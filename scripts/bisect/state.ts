/**
 * A bisect's state on disk: one directory per bisect under CACHE/bisect/<id>, its id a hash of
 * what it bisects (so the same bisect resumes and another gets its own), `state.json` written
 * whole after every step (an interrupted step is run again on resume), and a lock that refuses
 * a second process over the same state while the first lives.
 */
import { existsSync, openSync, closeSync, readFileSync, rmSync, writeSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { UserError } from "../lib/errors.js";
import { writeAtomic } from "../lib/fs-atomic.js";
import { interruptHandler } from "../lib/interrupt.js";

export function bisectDir(cacheDir: string, id: string): string {
  return join(cacheDir, "bisect", id);
}

/** Is the process that wrote this lock (host pid) still alive on this host? */
function alive(lock: string): { pid: number; host: string } | undefined {
  const [host, pidText] = readFileSync(lock, "utf8").trim().split(" ");
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isInteger(pid)) return { pid, host: host ?? "?" };
  try {
    process.kill(pid, 0);
    return { pid, host };
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM" ? { pid, host } : undefined;
  }
}

/** Takes the bisect's lock (a lock left by a dead process is taken over); returns its release. */
export async function lockBisect(dir: string, id: string): Promise<() => void> {
  await mkdir(dir, { recursive: true });
  const lock = join(dir, "lock");
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fd = openSync(lock, "wx");
      writeSync(fd, `${hostname()} ${process.pid}\n`);
      closeSync(fd);
      const untrack = interruptHandler.temp(lock);
      return () => {
        untrack();
        rmSync(lock, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = alive(lock);
      if (owner)
        throw new UserError(
          `bisect ${id} is already running (pid ${owner.pid} on ${owner.host}, state ${dir})`,
          "wait for it, or stop it (Ctrl-C keeps its state) and run the same command again to resume",
        );
      rmSync(lock, { force: true });
    }
  }
  throw new UserError(
    `cannot take the lock of bisect ${id} (${lock})`,
    "remove the lock file if no bisect runs",
  );
}

export function loadState<T>(dir: string): T | undefined {
  const file = join(dir, "state.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : undefined;
}

export async function saveState(dir: string, state: unknown): Promise<void> {
  await writeAtomic(join(dir, "state.json"), `${JSON.stringify(state, null, 2)}\n`);
}
