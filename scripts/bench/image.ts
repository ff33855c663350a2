/**
 * make bench-image: rootfs (minbase bootstrap), image creation (sgdisk + mkfs.ext4 -d) and
 * injection (one guestfish session), and the number of appliance launches per image, from an
 * empty image cache (CRIU artifacts are reused from the main cache when present).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bench, cpuCount, metadataFrom } from "./common.js";

const version = process.argv[2] ?? "3.17.1";
const bench = new Bench();
const dir = mkdtempSync(join(tmpdir(), "crg-bench-image-"));
try {
  const out = await bench.cli(`image with CRIU ${version}, empty cache`, [
    "image",
    "--criu",
    version,
    "--cache-dir",
    dir,
    "--name",
    "bench",
  ]);
  const m = metadataFrom<{
    seconds: { rootfs: number; image: number; inject: number };
    guestfish_launches: number;
    injected: unknown[];
  }>(out);
  bench.add("  rootfs (minbase bootstrap + packages)", m.seconds.rootfs);
  bench.add("  image (sgdisk + mkfs.ext4 -d)", m.seconds.image);
  bench.add(
    "  injection (guestfish, with read-back)",
    m.seconds.inject,
    `${m.injected.length} files, ${m.guestfish_launches} appliance launch(es)`,
  );
  await bench.cli("cache hit", ["image", "--criu", version, "--cache-dir", dir, "--name", "bench"]);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
bench.print(`image stage timings (${await cpuCount()} CPUs)`);
await bench.publish("image", `make bench-image ARGS=${version}`, `The image stage (CRIU ${version})`);
