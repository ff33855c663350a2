/**
 * The stage graph: a caller asks for stages and the driver runs exactly what they need, in
 * an order where each stage comes after what it needs and what it reads from the same run.
 */
import { describe, expect, it } from "vitest";
import { STAGE_GRAPH, stagesFor, type StageName } from "../../scripts/driver.js";

describe("stage graph", () => {
  it("a boot needs everything; kernel first, so the CRIU check can read its .config", () => {
    expect(stagesFor(["boot"])).toEqual(["kernel", "criu", "agent", "image", "boot"]);
  });

  it("part of the graph: only kernels (a CI job), only CRIU, an image without a kernel", () => {
    expect(stagesFor(["kernel"])).toEqual(["kernel"]);
    expect(stagesFor(["criu"])).toEqual(["criu"]);
    expect(stagesFor(["image"])).toEqual(["criu", "agent", "image"]);
  });

  it("given outcomes are not run again (a matrix cell reuses the shared kernel and image)", () => {
    expect(stagesFor(["image"], ["kernel"])).toEqual(["criu", "agent", "image"]);
    expect(stagesFor(["boot"], ["kernel", "criu", "agent", "image"])).toEqual(["boot"]);
  });

  it("every order respects every edge of the graph", () => {
    const all = Object.keys(STAGE_GRAPH) as StageName[];
    for (const t of all) {
      const order = stagesFor([t]);
      for (const s of order)
        for (const d of [...STAGE_GRAPH[s].needs, ...STAGE_GRAPH[s].uses])
          if (order.includes(d)) expect(order.indexOf(d)).toBeLessThan(order.indexOf(s));
      for (const s of order) for (const n of STAGE_GRAPH[s].needs) expect(order).toContain(n);
    }
  });
});
