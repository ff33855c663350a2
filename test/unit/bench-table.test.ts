/**
 * The benches write their latest table into docs/benchmarks.md (scripts/bench/doc-table.ts):
 * dated, naming the machine, between markers that must exist once per bench.
 */
import { copyFileSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  BENCH_DOC,
  machineOf,
  regionMarkers,
  renderBenchTable,
  replaceRegion,
  writeBenchRegion,
} from "../../scripts/bench/doc-table.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";

const CPUINFO = [
  "processor\t: 0",
  "vendor_id\t: GenuineIntel",
  "model name\t: Intel(R) Xeon(R) Processor",
  "",
  "processor\t: 1",
  "model name\t: Intel(R) Xeon(R) Processor",
  "",
].join("\n");

describe("bench tables in docs/benchmarks.md", () => {
  it("reads cores and CPU model from /proc/cpuinfo's text, and from the real file", () => {
    expect(machineOf(CPUINFO)).toEqual({ cores: 2, cpuModel: "Intel(R) Xeon(R) Processor" });
    expect(machineOf("processor : 0\n").cpuModel).toBe("unknown CPU model");
    const real = machineOf(readFileSync("/proc/cpuinfo", "utf8"));
    expect(real.cores).toBeGreaterThan(0);
  });

  it("renders a dated table naming the machine, nesting as › and pipes escaped", () => {
    const md = renderBenchTable({
      command: "make bench-smoke",
      title: "A guest run",
      date: new Date("2026-12-06T10:00:00Z"),
      machine: { cores: 2, cpuModel: "Intel(R) Xeon(R) Processor" },
      rows: [
        ["smoke run", 29.04, "tcg | 2 vCPUs"],
        ["  boot to init", 2.5, "9%"],
        ["    criu-check", NaN, "not measured"],
      ],
    });
    expect(md.split("\n")).toEqual([
      "A guest run. Written by `make bench-smoke` on 2026-12-06 (2 cores, Intel(R) Xeon(R) Processor).",
      "",
      "| step | seconds | note |",
      "|---|---:|---|",
      "| smoke run | 29.0 | tcg \\| 2 vCPUs |",
      "| › boot to init | 2.5 | 9% |",
      "| › › criu-check | - | not measured |",
    ]);
  });

  it("replaces only its own region, and refuses a missing or doubled one", () => {
    const [b, e] = regionMarkers("smoke");
    const [kb, ke] = regionMarkers("kernel");
    const doc = `# B\n${kb}\nold kernel\n${ke}\n${b}\nold smoke\n${e}\ntail\n`;
    expect(replaceRegion(doc, "smoke", "new table\n")).toBe(
      `# B\n${kb}\nold kernel\n${ke}\n${b}\nnew table\n${e}\ntail\n`,
    );
    expect(() => replaceRegion(doc, "criu", "x")).toThrow(/no single region 'criu'/);
    expect(() => replaceRegion(doc + doc, "smoke", "x")).toThrow(/no single region 'smoke'/);
  });

  it("docs/benchmarks.md has the region of every bench that publishes, and a write lands there", async () => {
    const regions = readdirSync(join(REPO_ROOT, "scripts", "bench"))
      .map((f) => readFileSync(join(REPO_ROOT, "scripts", "bench", f), "utf8"))
      .flatMap((text) => [...text.matchAll(/\.publish\(\s*"([^"]+)"/g)].map((m) => m[1]));
    expect(regions.sort()).toEqual(["criu", "image", "kernel", "pipeline", "smoke"]);
    const copy = join(mkdtempSync(join(tmpdir(), "crg-bench-doc-")), "benchmarks.md");
    copyFileSync(BENCH_DOC, copy);
    for (const r of regions) await writeBenchRegion(r, `table of ${r}`, copy);
    const written = readFileSync(copy, "utf8");
    for (const r of regions)
      expect(written).toContain(`${regionMarkers(r)[0]}\ntable of ${r}\n${regionMarkers(r)[1]}`);
  });
});
