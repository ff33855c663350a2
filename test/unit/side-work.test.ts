/**
 * The cold pipeline's overlap: what is fetched beside the kernel (pure plan), and branches
 * that stop each other: real commands, killed when the other branch fails.
 */
import { describe, expect, it } from "vitest";
import { loadCriuCatalog } from "../../scripts/data/criu-catalog.js";
import { loadPatchCatalog } from "../../scripts/data/criu-patches.js";
import { resolveAndPlanCriu } from "../../scripts/criu/stage.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { sideWorkPlan } from "../../scripts/side-work.js";
import { Branch, BranchCancelledError, branchArgv, run } from "../../scripts/lib/exec.js";
import { runConcurrently, withProgressSink } from "../../scripts/lib/progress.js";

const catalog = loadCriuCatalog();
const patches = loadPatchCatalog();
const setup = (...set: string[]) => {
  const config = loadConfig({ set });
  return { config, plan: resolveAndPlanCriu(config, { strict: true }, { criu: catalog, criuPatches: patches }) };
};
const kinds = (items: { kind: string }[]) => items.map((i) => i.kind);

describe("side work plan", () => {
  it("a cold static build from the network: source, build chroot, guest rootfs, helpers", () => {
    const { config, plan } = setup("criu.version=4.1.1", "criu.providers=[upstream]");
    const items = sideWorkPlan(config, { criu: true, image: true }, plan, false);
    expect(kinds(items)).toEqual(["criu-source", "build-chroot", "guest-rootfs", "guest-helpers"]);
    expect(items[1]).toMatchObject({ suite: config.criu.static_build_suite });
    expect(items[2]).toMatchObject({ suite: plan.guestSuite });
  });

  it("a cached CRIU needs neither its source nor its chroot; a local copy is not fetched", () => {
    const { config, plan } = setup("criu.version=4.1.1", "criu.providers=[upstream]");
    expect(kinds(sideWorkPlan(config, { criu: true, image: true }, plan, true))).toEqual(["guest-rootfs", "guest-helpers"]);
    expect(kinds(sideWorkPlan(config, { criu: true, image: false }, plan, false))).toEqual(["criu-source", "build-chroot"]);
  });

  it("a dynamic build's rootfs waits for its runtime packages; an existing image has none to make", () => {
    const dyn = setup("criu.version=4.1.1", "criu.providers=[upstream]", "criu.link=dynamic");
    expect(kinds(sideWorkPlan(dyn.config, { criu: true, image: true }, dyn.plan, false))).toEqual(["criu-source", "build-chroot", "guest-helpers"]);
    const existing = setup("criu.version=4.1.1", "criu.providers=[upstream]", "image.base=/some/kata.img");
    expect(kinds(sideWorkPlan(existing.config, { criu: true, image: true }, existing.plan, false))).not.toContain("guest-rootfs");
  });
});

describe("branches", () => {
  it("run their commands at the idle CPU priority when asked, children included", async () => {
    expect(branchArgv(["make", "-j2"], "normal")).toEqual(["make", "-j2"]);
    expect(branchArgv(["debootstrap", "x"], "idle")).toEqual(["chrt", "--idle", "0", "debootstrap", "x"]);
    // A grandchild's policy, as the kernel reports it.
    const idle = await new Branch("side", "idle").run(() => run(["sh", "-c", "sh -c 'chrt -p $$'"], { timeoutMs: 5000 }));
    expect(idle.stdout).toMatch(/scheduling policy: SCHED_IDLE/);
    const normal = await run(["sh", "-c", "chrt -p $$"], { timeoutMs: 5000 });
    expect(normal.stdout).toMatch(/scheduling policy: SCHED_OTHER/);
  });

  it("a failing branch kills the other's running command and is the error thrown", async () => {
    const t0 = Date.now();
    let slowError: unknown;
    const quiet = { title: () => undefined, line: () => undefined };
    const attempt = withProgressSink(quiet, () =>
      runConcurrently([
        {
          title: "slow",
          branch: new Branch("the slow branch"),
          run: async () => {
            try {
              await run(["sleep", "30"], { timeoutMs: 60_000 });
            } catch (err) {
              slowError = err;
              throw err;
            }
          },
        },
        {
          title: "failing",
          branch: new Branch("the failing branch", "idle"),
          run: async () => {
            await run(["sleep", "0.2"], { timeoutMs: 5000 });
            await run(["false"], { timeoutMs: 5000 });
          },
        },
      ]),
    );
    await expect(attempt).rejects.toThrow(/command exited with code 1: chrt --idle 0 false/);
    expect(slowError).toBeInstanceOf(BranchCancelledError);
    expect(String(slowError)).toMatch(/the slow branch stopped before sleep ended: failing failed/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("a cancelled branch starts no new command", async () => {
    const b = new Branch("done branch");
    b.cancel("the other branch failed");
    await expect(b.run(() => run(["true"], { timeoutMs: 5000 }))).rejects.toBeInstanceOf(BranchCancelledError);
  });
});
