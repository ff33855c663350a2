/**
 * A bisect's state on disk: one directory per bisect under CACHE/bisect/<id>, its id a hash of
 * what it bisects (so the same bisect resumes and another gets its own), `state.json` written
 * whole after every step (an interrupted step is run again on resume), and a lock that refuses
 * a second process over the same state while the first lives.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { UserError } from "../lib/errors.js";
import { writeAtomic } from "../lib/fs-atomic.js";
import { tryLock } from "../lib/dir-lock.js";

export function bisectDir(cacheDir: string, id: string): string {
  return join(cacheDir, "bisect", id);
}

/** Takes the bisect's lock (a lock left by a dead process is taken over); returns its release. */
export async function lockBisect(dir: string, id: string): Promise<() => void> {
  await mkdir(dir, { recursive: true });
  const got = tryLock(join(dir, "lock"));
  if ("release" in got) return got.release;
  throw new UserError(
    `bisect ${id} is already running (pid ${got.owner.pid} on ${got.owner.host}, state ${dir})`,
    "wait for it, or stop it (Ctrl-C keeps its state) and run the same command again to resume",
  );
}

export function loadState<T>(dir: string): T | undefined {
  const file = join(dir, "state.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : undefined;
}

export async function saveState(dir: string, state: unknown): Promise<void> {
  await writeAtomic(join(dir, "state.json"), `${JSON.stringify(state, null, 2)}\n`);
}
