/**
 * Scheduling a matrix: shared stages run once, one failing cell never stops the others,
 * stored results are kept (resume) unless forced or stale, and the machine's capacity holds
 * (a build runs alone, boots share the cores). The stages here are recording test doubles:
 * the real ones are exercised by the integration test of a two-cell matrix.
 */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { loadMatrixSpec, planMatrix, type PlannedCell } from "../../scripts/matrix/spec.js";
import { Capacity, guestVcpus, runMatrix, type CellStages } from "../../scripts/matrix/run.js";
import type { RunResults } from "../../scripts/boot/stage.js";
import { runRecord } from "../helpers/run-record.js";
import { bootBlockers, KernelCannotBootError } from "../../scripts/kernel/bootable.js";
import { storedCell, writeCell } from "../../scripts/matrix/cell.js";
import { indexedStages } from "../../scripts/matrix/command.js";
import { realStages } from "../../scripts/matrix/stages.js";
import { tempDir } from "../helpers/temp.js";

const plan = planMatrix(loadMatrixSpec(join(REPO_ROOT, "test/fixtures/matrix/small.yaml")));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function recordingStages(
  o: { failKernel?: string; bootStatus?: (c: PlannedCell) => RunResults["status"]; delayMs?: number } = {},
) {
  const calls = { kernel: [] as string[], image: [] as string[], boot: [] as string[] };
  let running = { build: 0, boot: 0 };
  const peak = { boot: 0, buildWithOther: false };
  const enter = (kind: "build" | "boot") => {
    running[kind]++;
    if (kind === "boot") peak.boot = Math.max(peak.boot, running.boot);
    if (running.build > 1 || (running.build && running.boot)) peak.buildWithOther = true;
  };
  const stages: CellStages<string, string> = {
    async kernel(c) {
      calls.kernel.push(c.axes.kernel);
      enter("build");
      await sleep(o.delayMs ?? 5);
      running.build--;
      if (o.failKernel === c.axes.kernel) throw new Error(`make failed for ${c.axes.kernel}`);
      return {
        handle: `k-${c.axes.kernel}`,
        cached: false,
        identity: { key: `k${c.axes.kernel}`, version: "6.12.107", release: null, config_sha256: "x" },
      };
    },
    async image(c, k) {
      calls.image.push(`${c.criuVersion}+${c.patches.join(",")}`);
      enter("build");
      await sleep(o.delayMs ?? 5);
      running.build--;
      return {
        handle: `${k}/img`,
        cached: false,
        criu: {
          key: "c",
          version: c.criuVersion,
          provider: "debian-source",
          link: "static",
          sha256: "s",
          patches: c.patches,
        },
        image: { key: "i", base: "fresh", suite: "trixie" },
      };
    },
    async boot(c) {
      calls.boot.push(c.id);
      enter("boot");
      await sleep(o.delayMs ?? 5);
      running.boot--;
      const status = o.bootStatus?.(c) ?? "COMPLETE";
      return runRecord(c, status);
    },
  };
  return { stages, calls, peak, reset: () => (running = { build: 0, boot: 0 }) };
}

const opts = (outDir: string, stages: CellStages<string, string>, extra: object = {}) => ({
  outDir,
  stages,
  capacity: 2,
  bootWeight: 1,
  ...extra,
});

describe("matrix runner", () => {
  it("runs each shared stage once: 2 kernels, 3 CRIU+image builds, 6 boots for 6 cells", async () => {
    const out = tempDir("crg-matrix-");
    const r = recordingStages();
    const s = await runMatrix(plan, plan.cells, opts(out, r.stages));
    expect(r.calls.kernel.sort()).toEqual(["6.12", "nomb"]);
    expect(r.calls.image).toHaveLength(3);
    expect(r.calls.boot).toHaveLength(6);
    expect(s.stageRuns).toEqual({ kernel: 2, image: 3, boot: 6 });
    const cell = storedCell(out, "4.1_nomb_mb_native")!;
    expect(cell.status).toBe("PASS");
    expect(cell.identities.criu?.patches).toEqual(["membarrier-probe-nonfatal"]);
    expect(storedCell(out, "4.1_nomb_none_native")!.status).toBe("FAIL");
    // Cells sharing a stage say so, with the time it took.
    const shared = plan.cells
      .filter((c) => c.axes.kernel === "nomb")
      .map((c) => storedCell(out, c.id)!.stages.kernel!);
    expect(shared.filter((t) => t.shared)).toHaveLength(shared.length - 1);
  });

  it("predictions are per cell, with the cell's own kernel, though the image is shared across kernels", async () => {
    const out = tempDir("crg-matrix-");
    const r = recordingStages();
    r.stages.predict = (c, kernel) => [{ severity: "info", id: "k", what: `${c.criuVersion} on ${kernel}` }];
    await runMatrix(plan, plan.cells, opts(out, r.stages));
    const shared = plan.cells.filter(
      (c) => c.criuVersion === plan.cells[0].criuVersion && c.patches.length === 0,
    );
    expect(new Set(shared.map((c) => c.groups.image)).size).toBe(1);
    expect(shared.map((c) => storedCell(out, c.id)!.predicted[0].what).sort()).toEqual(
      shared.map((c) => `${c.criuVersion} on k-${c.axes.kernel}`).sort(),
    );
    expect(new Set(shared.map((c) => storedCell(out, c.id)!.predicted[0].what)).size).toBe(shared.length);
  });

  it("a failing kernel build fails its cells (BUILD-FAILED, with the reason) and no other", async () => {
    const out = tempDir("crg-matrix-");
    const r = recordingStages({ failKernel: "nomb" });
    const s = await runMatrix(plan, plan.cells, opts(out, r.stages));
    const byId = new Map(s.cells.map((c) => [c.id, c]));
    for (const c of plan.cells) {
      const got = byId.get(c.id)!;
      if (c.axes.kernel === "nomb") {
        expect(got.status).toBe("BUILD-FAILED");
        expect(got.failed_stage).toBe("kernel");
        expect(got.reason).toMatch(/kernel: make failed for nomb/);
      } else expect(["PASS", "FAIL"]).toContain(got.status);
    }
    expect(r.calls.kernel.filter((k) => k === "nomb")).toHaveLength(1);
  });

  it("a kernel that cannot boot the image (modules, no initrd) makes its cells SKIPPED, naming what is missing, never booted", async () => {
    const r = recordingStages();
    const stages = {
      ...r.stages,
      boot: async (c: PlannedCell) => {
        const blockers = bootBlockers(
          new Map([
            ["CONFIG_VIRTIO_BLK", "m"],
            ["CONFIG_BLK_DEV_NVME", "m"],
            ["CONFIG_VIRTIO_PCI", "y"],
            ["CONFIG_EXT4_FS", "m"],
            ["CONFIG_DEVTMPFS", "y"],
          ]),
        );
        if (c.axes.kernel === "nomb")
          throw new KernelCannotBootError("linux 6.12.57+deb13-cloud-amd64", blockers);
        return r.stages.boot(c, "", "");
      },
    };
    const out = tempDir("crg-matrix-");
    const s = await runMatrix(plan, plan.cells, opts(out, stages));
    const nomb = s.cells.filter((c) => c.axes.kernel === "nomb");
    expect(nomb.length).toBeGreaterThan(0);
    for (const c of nomb) {
      expect(c.status).toBe("SKIPPED");
      expect(c.reason).toMatch(
        /cannot boot the image: CONFIG_VIRTIO_BLK=m \/ CONFIG_BLK_DEV_NVME=m .*; CONFIG_EXT4_FS=m/,
      );
      expect(c.tests).toEqual([]);
    }
    expect(s.cells.filter((c) => c.axes.kernel !== "nomb").every((c) => c.status !== "SKIPPED")).toBe(true);
    // A kernel that builds them in has no blockers.
    expect(
      bootBlockers(
        new Map([
          ["CONFIG_VIRTIO_BLK", "y"],
          ["CONFIG_VIRTIO_PCI", "y"],
          ["CONFIG_EXT4_FS", "y"],
          ["CONFIG_DEVTMPFS", "y"],
        ]),
      ),
    ).toEqual([]);
  });

  it("an infrastructure error is ERROR, not a test failure, and is retried by the next run", async () => {
    const out = tempDir("crg-matrix-");
    const first = recordingStages({
      bootStatus: (c) => (c.id === "4.1_6.12_mb_native" ? "ERROR" : "COMPLETE"),
    });
    await runMatrix(plan, plan.cells, opts(out, first.stages));
    expect(storedCell(out, "4.1_6.12_mb_native")).toMatchObject({
      status: "ERROR",
      reason: "timeout: boot timeout after 180 s",
    });
    const second = recordingStages();
    const s = await runMatrix(plan, plan.cells, opts(out, second.stages));
    expect(second.calls.boot).toEqual(["4.1_6.12_mb_native"]);
    expect(s.kept).toHaveLength(5);
    expect(storedCell(out, "4.1_6.12_mb_native")!.status).toBe("PASS");
  });

  it("resumes: stored cells with the same inputs are kept; --force or changed inputs run them again", async () => {
    const out = tempDir("crg-matrix-");
    await runMatrix(plan, plan.cells, opts(out, recordingStages().stages));
    const again = recordingStages();
    const kept = await runMatrix(plan, plan.cells, opts(out, again.stages));
    expect(kept.kept).toHaveLength(6);
    expect(again.calls).toEqual({ kernel: [], image: [], boot: [] });

    // An interrupted run leaves cells without a result: only those run.
    const stale = storedCell(out, "3.17.1_6.12_none_native")!;
    await writeCell(out, { ...stale, inputs_key: "something else" });
    const resumed = recordingStages();
    await runMatrix(plan, plan.cells, opts(out, resumed.stages));
    expect(resumed.calls.boot).toEqual(["3.17.1_6.12_none_native"]);

    const forced = recordingStages();
    const f = await runMatrix(plan, plan.cells, opts(out, forced.stages, { force: true }));
    expect(f.ran).toHaveLength(6);
    expect(forced.calls.boot).toHaveLength(6);
  });

  it("a build takes the whole machine; boots share it up to its capacity", async () => {
    const out = tempDir("crg-matrix-");
    const r = recordingStages({ delayMs: 30 });
    await runMatrix(plan, plan.cells, opts(out, r.stages));
    expect(r.peak.buildWithOther).toBe(false);
    expect(r.peak.boot).toBe(2);
    const one = recordingStages({ delayMs: 10 });
    await runMatrix(plan, plan.cells, opts(tempDir("crg-matrix-"), one.stages, { bootWeight: 2 }));
    expect(one.peak.boot).toBe(1);
  });

  it("an image stage with its CRIU cached takes one core and overlaps a boot", async () => {
    const base = recordingStages({ delayMs: 5 });
    const spans: { kind: string; from: number; to: number }[] = [];
    const span = async <T>(kind: string, fn: () => Promise<T>) => {
      const from = Date.now();
      await sleep(40);
      const out = await fn();
      spans.push({ kind, from, to: Date.now() });
      return out;
    };
    const stages = (light: boolean): CellStages<string, string> => ({
      ...base.stages,
      imageIsLight: () => light,
      image: (c, k) => span("image", () => base.stages.image(c, k)),
      boot: (c, k, i) => span("boot", () => base.stages.boot(c, k, i)),
    });
    const overlaps = () =>
      spans.some(
        (a) => a.kind === "image" && spans.some((b) => b.kind === "boot" && a.from < b.to && b.from < a.to),
      );
    await runMatrix(plan, plan.cells, opts(tempDir("crg-matrix-"), stages(true)));
    expect(overlaps()).toBe(true);
    spans.length = 0;
    await runMatrix(plan, plan.cells, opts(tempDir("crg-matrix-"), stages(false)));
    expect(overlaps()).toBe(false);
  });

  it("the matrix command hands the runner every hook of the real stages, imageIsLight too", () => {
    // Dropped once: every image stage then took the whole machine and the boots waited.
    const real = realStages();
    const handed = indexedStages(real, {}, tempDir("crg-index-"));
    expect(Object.keys(handed).sort()).toEqual(Object.keys(real).sort());
    expect(handed.imageIsLight).toBe(real.imageIsLight);
    expect(handed.boot).toBe(real.boot);
    expect(handed.kernel).not.toBe(real.kernel);
  });

  it("each boot gets the cores shared among the boots still to come: one each while they are many, all for the last", async () => {
    expect(guestVcpus(2, 2, 6)).toBe(1);
    expect(guestVcpus(2, 2, 2)).toBe(1);
    expect(guestVcpus(2, 2, 1)).toBe(2);
    expect(guestVcpus(8, 2, 1)).toBe(2); // never more than boot.cpus
    expect(guestVcpus(8, 4, 2)).toBe(4);
    expect(guestVcpus(1, 2, 0)).toBe(1);
    const base = recordingStages({ delayMs: 5 });
    const given: { id: string; vcpus?: number }[] = [];
    const stages: CellStages<string, string> = {
      ...base.stages,
      boot: (c, k, i, vcpus) => (given.push({ id: c.id, vcpus }), base.stages.boot(c, k, i)),
    };
    const out = tempDir("crg-matrix-");
    await runMatrix(plan, plan.cells, opts(out, stages, { bootWeight: 2, adaptiveVcpus: true }));
    // Six boots arriving together: each shares the two cores with another (the last one too).
    expect(given.map((g) => g.vcpus)).toEqual([1, 1, 1, 1, 1, 1]);
    // The cell records what its guest got; without adaptiveVcpus the stage picks (boot.cpus).
    expect(storedCell(out, given[0].id)?.stages.boot?.vcpus).toBe(1);
    // A boot alone gets both; the share is read when the cores are granted, not when it asked.
    given.length = 0;
    await runMatrix(
      plan,
      plan.cells.slice(0, 1),
      opts(tempDir("crg-matrix-"), stages, { bootWeight: 2, adaptiveVcpus: true }),
    );
    expect(given.map((g) => g.vcpus)).toEqual([2]);
    given.length = 0;
    await runMatrix(plan, plan.cells, opts(tempDir("crg-matrix-"), stages, { bootWeight: 2 }));
    expect(given.every((g) => g.vcpus === undefined)).toBe(true);
  });

  it("Capacity serves waiters first come, first served", async () => {
    const cap = new Capacity(2);
    const order: string[] = [];
    const job = (name: string, w: number, ms: number) =>
      cap.run(w, async () => {
        order.push(`+${name}`);
        await sleep(ms);
        order.push(`-${name}`);
      });
    await Promise.all([job("boot1", 1, 20), job("build", 2, 5), job("boot2", 1, 5)]);
    // boot2 would fit beside boot1, but the build asked first.
    expect(order).toEqual(["+boot1", "-boot1", "+build", "-build", "+boot2", "-boot2"]);
    // A weight given as a function is read when the units are granted.
    let share = 2;
    const granted: number[] = [];
    const holder = cap.run(2, async () => {
      await sleep(10);
      share = 1;
    });
    await Promise.all([
      holder,
      cap.run(
        () => share,
        async (w) => void granted.push(w),
      ),
    ]);
    expect(granted).toEqual([1]);
  });
});
