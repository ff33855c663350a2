/**
 * make bench: the whole pipeline through the matrix, cold and warm, with each stage's time.
 *   cold:  a fresh cache directory: sources, kernel, CRIU, rootfs, image, boot
 *   warm:  the same cells again with --force: every stage a cache hit, only the boots rerun
 *   no-op: the same cells again without --force: the stored results are kept
 * Default cells: `--criu 4.1 --kernel 6.12 --patches unpatched` (one cell); pass matrix
 * flags to measure others, e.g. make bench ARGS="--criu 3.17.1".
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../lib/paths.js";
import type { CellResult } from "../matrix/cell.js";
import type { RunResults } from "../boot/stage.js";
import { addPhases, Bench, cpuCount } from "./common.js";

const args = process.argv.slice(2);
const cells = args.length ? args : ["--criu", "4.1", "--kernel", "6.12", "--patches", "unpatched"];
const cache = mkdtempSync(join(REPO_ROOT, "images", ".bench-"));
const out = join(cache, "matrix-out");
const bench = new Bench();
const matrix = (label: string, extra: string[]) =>
  bench.cli(label, ["matrix", ...cells, "--cache-dir", cache, "--out", out, ...extra]);
const stagesOf = (): CellResult[] =>
  JSON.parse(readFileSync(join(out, "matrix.json"), "utf8")).cells as CellResult[];

await matrix("cold: empty cache", []);
for (const c of stagesOf())
  for (const [stage, t] of Object.entries(c.stages))
    bench.add(`  ${c.id} ${stage}`, t.seconds, t.cached ? "cached" : t.shared ? "shared" : "built");
await matrix("warm: unchanged inputs, --force (boots only)", ["--force"]);
for (const c of stagesOf()) {
  for (const [stage, t] of Object.entries(c.stages))
    bench.add(`  ${c.id} ${stage}`, t.seconds, t.cached ? "cached" : "ran");
  // The boot's own phases (the per-phase clock of its results.json), each with its share.
  if (!c.paths.results) continue;
  const results = JSON.parse(readFileSync(join(cache, c.paths.results), "utf8")) as RunResults;
  addPhases(bench, results, "    ");
}
await matrix("no-op: stored results kept", []);
bench.print(`pipeline timings (${await cpuCount()} CPUs; cache ${cache}, remove it when done)`);
await bench.publish(
  "pipeline",
  args.length ? `make bench ARGS="${args.join(" ")}"` : "make bench",
  `The pipeline through the matrix, cold, warm and no-op (cells: ${cells.join(" ")})`,
);
