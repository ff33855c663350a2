/**
 * make bench-kernel: where the kernel stage's time goes. Prints config time, cold build
 * (no ccache, fresh build directory), no-op rebuild, warm-ccache rebuild (fresh build
 * directory) and the cache-hit time. A script, not a test: it measures, it does not judge.
 * Cold and warm builds use throw-away cache directories fed from the main cache's download
 * (local-mirror provider), so the main cache is left as it was.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../lib/config.js";
import { Bench, cpuCount } from "./common.js";

const main = loadConfig();
const bench = new Bench();
const timeCli = bench.cli.bind(bench);

function metadataOf(stdout: string): { build_seconds?: number; ccache?: { hits: number; misses: number } } {
  const path = /kernel: (\S+)\/vmlinuz/.exec(stdout)![1];
  return JSON.parse(readFileSync(join(path, "metadata.json"), "utf8"));
}

// The main cache holds the source download and a warm ccache once this has run.
await timeCli("prepare (main cache, may build)", ["kernel"]);
await timeCli("config + verify (source cached)", ["kernel", "--check-config"]);
// The EXPERT trap's second configure runs beside the first: this should cost about the same.
const trapDir = mkdtempSync(join(tmpdir(), "crg-bench-trap-"));
writeFileSync(join(trapDir, "trap.conf"), "CONFIG_EXPERT=y # bench\nCONFIG_CHECKPOINT_RESTORE=y # bench\n");
await timeCli("config + verify + EXPERT trap + --criu doctor", [
  "kernel",
  "--check-config",
  "--fragment",
  join(trapDir, "trap.conf"),
  "--criu",
  "4.1",
]);
rmSync(trapDir, { recursive: true, force: true });
await timeCli("cache hit", ["kernel"]);

const mirror = join(main.cache_dir, "downloads");
const isolated = (dir: string) => [
  "--cache-dir",
  dir,
  "--set",
  `kernel.local_mirror=${JSON.stringify(mirror)}`,
  "--set",
  "kernel.providers=[local-mirror]",
];

const cold = mkdtempSync(join(tmpdir(), "crg-bench-cold-"));
try {
  const out = await timeCli("cold build (no ccache, incl. unpack)", ["kernel", ...isolated(cold)], {
    CCACHE_DISABLE: "1",
  });
  const meta = metadataOf(out);
  bench.add("  of which make bzImage", meta.build_seconds);
  // Drop the artifact but keep the build directory: make finds nothing to do.
  await rm(join(cold, "kernel"), { recursive: true });
  const noop = await timeCli("no-op rebuild (configure + make)", ["kernel", ...isolated(cold)], {
    CCACHE_DISABLE: "1",
  });
  bench.add("  of which make bzImage", metadataOf(noop).build_seconds);
} finally {
  rmSync(cold, { recursive: true, force: true });
}

const warm = mkdtempSync(join(tmpdir(), "crg-bench-warm-"));
try {
  const out = await timeCli("warm-ccache rebuild (fresh build dir)", ["kernel", ...isolated(warm)]);
  const meta = metadataOf(out);
  bench.add(
    "  of which make bzImage",
    meta.build_seconds,
    meta.ccache ? `ccache hits ${meta.ccache.hits}, misses ${meta.ccache.misses}` : "no ccache",
  );
} finally {
  rmSync(warm, { recursive: true, force: true });
}

bench.print(
  `kernel stage timings (${await cpuCount()} CPUs, linux ${main.kernel.version}, ${main.kernel.base})`,
);
await bench.publish(
  "kernel",
  "make bench-kernel",
  `The kernel stage (linux ${main.kernel.version}, ${main.kernel.base})`,
);
