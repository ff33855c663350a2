/**
 * The module layering of scripts/: no import cycles (static or `await import()`), and no
 * import from a lower layer into a higher one:
 *   lib/ < data/ (the repository's catalogs, patches, rules, each with its schema) < the stages (kernel/, criu/, agent/, image/, boot/) < the driver (driver.ts,
 *   side-work.ts, the --dry-run planners plan-only*.ts, matrix/, migrate/) < the CLI, the benches and the docs generator.
 * And the driver is the only module that runs a stage's build step.
 */
import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/paths.js";

const SCRIPTS = join(REPO_ROOT, "scripts");

export function importGraph(root = SCRIPTS): Map<string, string[]> {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith(".ts")) files.push(p);
    }
  };
  walk(root);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const text = readFileSync(f, "utf8");
    const deps = new Set<string>();
    // `import ... from "./x.js"`, `export ... from "./x.js"` and `await import("./x.js")`; type-only
    // imports are erased at run time but still tie the modules together, so they count.
    for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\(\s*)["'](\.{1,2}\/[^"']+)["']/g))
      deps.add(relative(root, resolve(dirname(f), m[1].replace(/\.js$/, ".ts"))));
    graph.set(relative(root, f), [...deps]);
  }
  return graph;
}

/** Strongly connected components with more than one module (or a self-import): the cycles. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const strong = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) strong(v);
  return out;
}

const LAYERS: [RegExp, number, string][] = [
  [/^lib\//, 0, "lib"],
  [/^data\//, 1, "data"],
  [/^(kernel|criu|agent|image|boot)\//, 2, "stages"],
  [/^(driver\.ts|side-work\.ts|plan-only[a-z-]*\.ts|matrix\/|migrate\/|variant\/)/, 3, "driver"],
  [/^(cli\.ts|cli-flags\.ts|commands\.ts|schemas\.ts|bench\/|docs\/|explain\/|bisect\/)/, 4, "CLI"],
];

function layerOf(module: string): [number, string] {
  const hit = LAYERS.find(([re]) => re.test(module));
  if (!hit) throw new Error(`scripts/${module} is in no layer: add it to LAYERS`);
  return [hit[1], hit[2]];
}

/** Each stage's build step and the module that defines it. */
const BUILD_STEPS: Record<string, string> = {
  runKernelStage: "kernel/stage.ts",
  runDebianCloudKernel: "kernel/prebuilt.ts",
  runCriuStage: "criu/stage.ts",
  runAgentStage: "agent/stage.ts",
  runImageStage: "image/stage.ts",
  runBootTests: "boot/stage.ts",
};
/** The one caller each may have besides the driver (the kernel stage dispatches to the prebuilt one). */
const ALLOWED_CALLERS: Record<string, string[]> = { runDebianCloudKernel: ["kernel/stage.ts"] };

function sourcesOf(root = SCRIPTS): Map<string, string> {
  return new Map([...importGraph(root).keys()].map((m) => [m, readFileSync(join(root, m), "utf8")]));
}

/** Modules other than the driver that name a build step. */
function buildStepCallers(sources = sourcesOf()): string[] {
  const out: string[] = [];
  for (const [module, text] of sources)
    for (const [step, home] of Object.entries(BUILD_STEPS)) {
      if (module === home || module === "driver.ts" || ALLOWED_CALLERS[step]?.includes(module)) continue;
      if (new RegExp(`\\b${step}\\b`).test(text)) out.push(`${module} uses ${step}`);
    }
  return out;
}

describe("module layering", () => {
  const graph = importGraph();

  it("has no import cycle, static or dynamic", () => {
    expect(cycles(graph)).toEqual([]);
  });

  it("never imports upward", () => {
    const upward: string[] = [];
    for (const [from, deps] of graph)
      for (const to of deps) {
        const [a, an] = layerOf(from);
        const [b, bn] = layerOf(to);
        if (b > a) upward.push(`${from} (${an}) -> ${to} (${bn})`);
      }
    expect(upward).toEqual([]);
  });

  it("only the driver runs a stage's build step", () => {
    expect(buildStepCallers()).toEqual([]);
    // The check can fail: a command calling a stage directly is found.
    const planted = buildStepCallers(
      new Map([["commands.ts", 'const { runKernelStage } = await import("./kernel/stage.js");']]),
    );
    expect(planted).toEqual(["commands.ts uses runKernelStage"]);
  });

  it("the checks can fail: a planted cycle and an upward import are found", () => {
    const planted = new Map(graph);
    planted.set("lib/a.ts", ["lib/b.ts", "matrix/run.ts"]);
    planted.set("lib/b.ts", ["lib/a.ts"]);
    expect(cycles(planted)).toContainEqual(["lib/a.ts", "lib/b.ts"]);
    expect(layerOf("matrix/run.ts")[0]).toBeGreaterThan(layerOf("lib/a.ts")[0]);
  });
});
