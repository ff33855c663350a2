/**
 * Per run of the tests: one temporary directory (TMPDIR) and one cache directory
 * (CR_GUEST_TEST_CACHE), both inherited by every worker and command.
 *
 * TMPDIR: the tests make hundreds of scratch directories (a real CRIU tree is 22 MB); leaving
 * them behind once filled a disk over a few dozen runs. Removed at the end.
 *
 * The cache: every test's CLI call and config points there, never at the checkout's images/
 * (the user's cache, which `make test` must leave as it was). One per run, shared by all test
 * files, so the suite builds its kernel once. By default a new directory under
 * ~/.cache/cr-guest-test (a kernel build, chroots and images take gigabytes: /tmp may be a
 * tmpfs), removed at the end unless CR_GUEST_KEEP_TEST_CACHE=1. A directory given in
 * CR_GUEST_TEST_CACHE is used as it is and kept: runs that share it start warm. ccache keeps
 * its own directory either way, and the kernel stage's CCACHE_BASEDIR (the cache root) makes a
 * new cache root still hit it.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { homedir, hostname, tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import { REPO_ROOT } from "../scripts/lib/paths.js";

const OWNER = ".owner";

/** A process of this host that is gone: its run was killed before its teardown. */
function abandoned(dir: string): boolean {
  const file = join(dir, OWNER);
  if (!existsSync(file)) return false;
  const [host, pid] = readFileSync(file, "utf8").trim().split(" ");
  if (host !== hostname()) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

function runCache(tmp: string): { dir: string; remove: boolean } {
  const given = process.env.CR_GUEST_TEST_CACHE;
  if (given) {
    const dir = resolve(given);
    const images = join(REPO_ROOT, "images");
    const rel = relative(images, dir);
    if (rel === "" || !(rel.startsWith("..") || isAbsolute(rel)))
      throw new Error(
        `CR_GUEST_TEST_CACHE=${given} is the checkout's images/ or inside it: give a directory of its own`,
      );
    mkdirSync(dir, { recursive: true });
    return { dir, remove: false };
  }
  let parent = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "cr-guest-test");
  try {
    mkdirSync(parent, { recursive: true });
  } catch (err) {
    // A user without a writable home (`nobody`): the run's temporary directory.
    console.warn(`test cache: cannot make ${parent} (${(err as Error).message}); using ${tmp}`);
    parent = tmp;
  }
  // Runs killed before their teardown (Ctrl-C twice, a lost CI job) left gigabytes: take them.
  for (const name of readdirSync(parent))
    if (name.startsWith("run-") && abandoned(join(parent, name)))
      rmSync(join(parent, name), { recursive: true, force: true });
  const dir = mkdtempSync(join(parent, "run-"));
  writeFileSync(join(dir, OWNER), `${hostname()} ${process.pid}\n`);
  return { dir, remove: true };
}

export default function setup(): () => void {
  const tmp = mkdtempSync(join(tmpdir(), "crg-tests-"));
  process.env.TMPDIR = tmp;
  const cache = runCache(tmp);
  process.env.CR_GUEST_TEST_CACHE = cache.dir;
  console.log(`test cache: ${cache.dir}`);
  return () => {
    rmSync(tmp, { recursive: true, force: true });
    if (!cache.remove) return;
    if (process.env.CR_GUEST_KEEP_TEST_CACHE === "1") {
      rmSync(join(cache.dir, OWNER), { force: true });
      console.log(`test cache kept (CR_GUEST_KEEP_TEST_CACHE=1): ${cache.dir}`);
    } else rmSync(cache.dir, { recursive: true, force: true });
  };
}
