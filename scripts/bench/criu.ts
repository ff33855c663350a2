/**
 * make bench-criu: where the CRIU stage's time goes, from an empty cache: the build chroot
 * (minbase bootstrap with the build dependencies in the same pass), the build itself,
 * and a cache hit. Uses a throw-away cache directory; the main cache is left as it was.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chrootKey } from "../lib/chroot.js";
import { loadConfig } from "../lib/config.js";
import { criuBuildDeps } from "../criu/build-recipe.js";
import { Bench, cpuCount, metadataFrom } from "./common.js";

const version = process.argv[2] ?? "4.1";
const config = loadConfig();
const bench = new Bench();
const dir = mkdtempSync(join(tmpdir(), "crg-bench-criu-"));
try {
  const out = await bench.cli(`CRIU ${version} static, empty cache`, [
    "criu",
    "--criu",
    version,
    "--cache-dir",
    dir,
  ]);
  const meta = metadataFrom<{ build_seconds: number; version: string }>(out);
  const chroot = JSON.parse(
    readFileSync(
      join(
        dir,
        "chroots",
        chrootKey(config.criu.static_build_suite, criuBuildDeps("static"), config.debian),
        "metadata.json",
      ),
      "utf8",
    ),
  );
  bench.add(
    `  build chroot (${config.criu.static_build_suite}, ${chroot.bootstrap} + deps)`,
    chroot.bootstrap_seconds,
    `${Object.keys(chroot.versions).length} packages`,
  );
  bench.add("  make criu (in the chroot)", meta.build_seconds, meta.version);
  await bench.cli("cache hit", ["criu", "--criu", version, "--cache-dir", dir]);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
bench.print(`CRIU stage timings (${await cpuCount()} CPUs)`);
await bench.publish("criu", `make bench-criu ARGS=${version}`, `The CRIU stage (CRIU ${version}, static)`);
