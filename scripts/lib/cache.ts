/**
 * The content-addressed artifact cache: `<root>/<stage>/<key>/` with a `metadata.json`.
 * A stage builds into a temporary sibling directory and renames it into place only when
 * done, so an interrupted run never leaves anything that looks finished.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { interruptHandler } from "./interrupt.js";
import { KeyedQueue } from "./keyed-queue.js";

export interface Artifact<M> {
  dir: string;
  metadata: M;
}

const METADATA = "metadata.json";
const TMP_PREFIX = ".tmp-";

const building = new KeyedQueue();

export class ArtifactCache {
  constructor(readonly root: string) {}

  dir(stage: string, key: string): string {
    return join(this.root, stage, key);
  }

  /** A finished artifact is there (its metadata is written last). */
  has(stage: string, key: string): boolean {
    return existsSync(join(this.dir(stage, key), METADATA));
  }

  async lookup<M>(stage: string, key: string): Promise<Artifact<M> | undefined> {
    const dir = this.dir(stage, key);
    const file = join(dir, METADATA);
    if (!existsSync(file)) return undefined;
    return { dir, metadata: JSON.parse(await readFile(file, "utf8")) as M };
  }

  /**
   * Builds an artifact unless it is cached. `build` fills the temporary directory and returns
   * the metadata; the directory is renamed into place after metadata.json is written.
   */
  /**
   * The artifact, built into a temporary directory and renamed into place if absent. Two
   * builds of one artifact in one process take turns: the second finds the first's.
   */
  getOrBuild<M extends object>(
    stage: string,
    key: string,
    build: (tmpDir: string) => Promise<M>,
  ): Promise<Artifact<M> & { cached: boolean }> {
    return building.run(this.dir(stage, key), () => this.buildOnce(stage, key, build));
  }

  private async buildOnce<M extends object>(
    stage: string,
    key: string,
    build: (tmpDir: string) => Promise<M>,
  ): Promise<Artifact<M> & { cached: boolean }> {
    const hit = await this.lookup<M>(stage, key);
    if (hit) return { ...hit, cached: true };
    const stageDir = join(this.root, stage);
    await mkdir(stageDir, { recursive: true });
    await this.removeStaleTemps(stageDir);
    const tmp = join(stageDir, `${TMP_PREFIX}${key}-${process.pid}-${Date.now()}`);
    await mkdir(tmp);
    const untrack = interruptHandler.temp(tmp);
    try {
      const metadata = await build(tmp);
      await writeFile(join(tmp, METADATA), `${JSON.stringify({ ...metadata, cache_key: key }, null, 2)}\n`);
      const final = this.dir(stage, key);
      if (existsSync(final)) await rm(final, { recursive: true, force: true }); // a metadata-less leftover
      await rename(tmp, final);
      untrack();
      return { dir: final, metadata: { ...metadata, cache_key: key }, cached: false };
    } catch (err) {
      untrack();
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Temporary directories of runs that died (their pid is gone) are removed. */
  private async removeStaleTemps(stageDir: string): Promise<void> {
    for (const name of await readdir(stageDir)) {
      if (!name.startsWith(TMP_PREFIX)) continue;
      const pid = Number(name.split("-").at(-2));
      if (pid && pid !== process.pid && !processAlive(pid)) {
        const path = join(stageDir, name);
        if ((await stat(path)).isDirectory()) await rm(path, { recursive: true, force: true });
      }
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
