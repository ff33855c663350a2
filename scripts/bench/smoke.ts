/**
 * make bench-smoke: one guest run with the default kernel and image (built first if needed):
 * boot to the guest init, each test, the whole run. `--force` so the run really happens.
 */
import { readFileSync } from "node:fs";
import type { RunResults } from "../boot/stage.js";
import { addPhases, Bench, cpuCount } from "./common.js";

const args = process.argv.slice(2);
const bench = new Bench();
await bench.cli("prepare (kernel, CRIU, image; cached after the first time)", [
  "image",
  ...args.filter((a) => a !== "--force"),
]);
const out = await bench.cli("smoke run (boot + every test)", ["smoke", "--force", ...args]);
const results = JSON.parse(readFileSync(/results: (\S+)/.exec(out)![1], "utf8")) as RunResults;
const ok = results.attempts.at(-1)!;
// The phases, each with its share of the whole run; then each test.
addPhases(bench, results, "  ");
for (const t of results.tests) bench.add(`    ${t.name}`, t.seconds, t.status);
bench.add(
  "  VM total (QEMU start to exit)",
  ok.seconds,
  `${results.accel}; ${results.summary.PASS} pass, ${results.summary.FAIL} fail, ${results.summary.SKIP} skip`,
);
bench.print(
  `smoke timings (${await cpuCount()} CPUs, CRIU ${results.identities.criu.version}, linux ${results.identities.kernel.version})`,
);
await bench.publish(
  "smoke",
  args.length ? `make bench-smoke ARGS="${args.join(" ")}"` : "make bench-smoke",
  `A guest run (CRIU ${results.identities.criu.version}, linux ${results.identities.kernel.version}, ${results.accel})`,
);
