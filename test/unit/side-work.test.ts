/**
 * The cold pipeline's overlap: what is fetched beside the kernel (pure plan), and branches
 * that stop each other: real commands, killed when the other branch fails.
 */
import { describe, expect, it } from "vitest";
import { loadCriuCatalog } from "../../scripts/data/criu-catalog.js";
import { loadPatchCatalog } from "../../scripts/data/criu-patches.js";
import { resolveAndPlanCriu } from "../../scripts/criu/stage.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { runSideWork, sideLanes, sideWorkPlan } from "../../scripts/side-work.js";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Branch, BranchCancelledError, branchArgv, run } from "../../scripts/lib/exec.js";
import { runConcurrently, withProgressSink } from "../../scripts/lib/progress.js";
import { tempDir } from "../helpers/temp.js";

const catalog = loadCriuCatalog();
const patches = loadPatchCatalog();
const setup = (...set: string[]) => {
  const config = loadConfig({ set });
  return {
    config,
    plan: resolveAndPlanCriu(config, { strict: true }, { criu: catalog, criuPatches: patches }),
  };
};
const kinds = (items: { kind: string }[]) => items.map((i) => i.kind);

describe("side work plan", () => {
  it("a cold static build from the network: CRIU's lane (source, build chroot, helpers, the build) beside the guest rootfs", () => {
    const { config, plan } = setup("criu.version=4.1.1", "criu.providers=[upstream]");
    const items = sideWorkPlan(config, { criu: true, image: true }, plan, false);
    expect(sideLanes(items).map(kinds)).toEqual([
      ["criu-source", "build-chroot", "guest-helpers", "criu-build", "image"],
      ["guest-rootfs", "image-base"],
    ]);
    expect(items.find((i) => i.kind === "build-chroot")).toMatchObject({
      suite: config.criu.static_build_suite,
    });
    expect(items.find((i) => i.kind === "guest-rootfs")).toMatchObject({ suite: plan.guestSuite });
  });

  it("the image is made here only when all it needs is: no agent, no second CRIU, a CRIU built here", () => {
    const { config, plan } = setup("criu.version=4.1.1", "criu.providers=[upstream]");
    const withImage = (items: { kind: string }[]) => kinds(items).filter((k) => k.startsWith("image"));
    expect(withImage(sideWorkPlan(config, { criu: true, image: true }, plan, false))).toEqual([
      "image-base",
      "image",
    ]);
    expect(withImage(sideWorkPlan(config, { criu: true, image: true, moreCriu: true }, plan, false))).toEqual(
      [],
    );
    expect(withImage(sideWorkPlan(config, { criu: true, image: true }, plan, true))).toEqual([]);
    const agent = setup("criu.version=4.1.1", "criu.providers=[upstream]", "agent.binary=/some/kata-agent");
    expect(withImage(sideWorkPlan(agent.config, { criu: true, image: true }, agent.plan, false))).toEqual([]);
    expect(kinds(sideWorkPlan(agent.config, { criu: true, image: true }, agent.plan, false))).toContain(
      "guest-rootfs",
    );
  });

  it("a cached CRIU needs neither its source, its chroot nor a build; a local copy is not fetched", () => {
    const { config, plan } = setup("criu.version=4.1.1", "criu.providers=[upstream]");
    expect(kinds(sideWorkPlan(config, { criu: true, image: true }, plan, true))).toEqual([
      "guest-helpers",
      "guest-rootfs",
    ]);
    expect(kinds(sideWorkPlan(config, { criu: true, image: false }, plan, false))).toEqual([
      "criu-source",
      "build-chroot",
      "criu-build",
    ]);
    const local = setup(
      "criu.version=4.1.1",
      "criu.providers=[local-mirror]",
      "criu.local_mirror=/work/shared/criu-tarballs",
    );
    expect(kinds(sideWorkPlan(local.config, { criu: true, image: false }, local.plan, false))).toEqual([
      "build-chroot",
      "criu-build",
    ]);
  });

  it("a dynamic build's rootfs waits for its runtime packages; an existing image has none to make; Debian's binary is its stage's", () => {
    const dyn = setup("criu.version=4.1.1", "criu.providers=[upstream]", "criu.link=dynamic");
    expect(kinds(sideWorkPlan(dyn.config, { criu: true, image: true }, dyn.plan, false))).toEqual([
      "criu-source",
      "build-chroot",
      "guest-helpers",
      "criu-build",
    ]);
    const existing = setup("criu.version=4.1.1", "criu.providers=[upstream]", "image.base=/some/kata.img");
    expect(
      kinds(sideWorkPlan(existing.config, { criu: true, image: true }, existing.plan, false)),
    ).not.toContain("guest-rootfs");
    const binary = setup("criu.version=4.1.1", "criu.providers=[debian-binary]");
    expect(kinds(sideWorkPlan(binary.config, { criu: true, image: true }, binary.plan, false))).toEqual([
      "guest-helpers",
    ]);
  });
});

describe("side work lanes", () => {
  const quiet = { title: () => undefined, line: () => undefined };
  const noBuild = () => Promise.reject(new Error("no CRIU build in this test"));
  const base = () => ({
    ...setup("criu.version=4.1.1", "criu.providers=[upstream]"),
    buildCriu: noBuild,
    sink: quiet,
  });

  it("CRIU's build gets the kernel's .config once configured; a failed kernel fails it without a build", async () => {
    const b = base();
    const items = sideWorkPlan(b.config, { criu: true, image: false }, b.plan, false).filter(
      (i) => i.kind === "criu-build",
    );
    const side = new Branch("the side work", "idle");
    let built = 0;
    const buildCriu = async () => void built++ as never;
    const failed = Promise.reject(new Error("the kernel build failed: make exited 2"));
    await expect(
      side.run(() => runSideWork({ ...b, items, kernelConfigured: failed, buildCriu })),
    ).rejects.toThrow(/the kernel build failed/);
    expect(built).toBe(0);
    let release!: () => void;
    const configured = new Promise<{ config: Map<string, string>; version: string }>(
      (res) => (release = () => res({ config: new Map([["CONFIG_MEMBARRIER", "y"]]), version: "6.12.107" })),
    );
    const seen: string[] = [];
    const running = new Branch("another side work", "idle").run(() =>
      runSideWork({
        ...b,
        items,
        kernelConfigured: configured,
        buildCriu: async (k) => (
          seen.push(`${k.version} ${k.config.get("CONFIG_MEMBARRIER")}`),
          { cached: false } as never
        ),
      }),
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([]);
    release();
    expect((await running).criu).toEqual({ cached: false });
    expect(seen).toEqual(["6.12.107 y"]);
  });

  it("a failing lane cancels the other: its wait for the kernel ends, the error is the failing lane's", async () => {
    const b = base();
    // A mirror nothing answers on: the rootfs bootstrap fails at once, for real.
    const config = {
      ...b.config,
      cache_dir: tempDir("crg-side-"),
      debian: { ...b.config.debian, mirror: "http://127.0.0.1:9/debian" },
    };
    const items = sideWorkPlan(config, { criu: true, image: true }, b.plan, false).filter(
      (i) => i.kind === "criu-build" || i.kind === "guest-rootfs",
    );
    expect(sideLanes(items)).toHaveLength(2);
    const t0 = Date.now();
    const side = new Branch("the side work", "idle");
    try {
      const never = new Promise<never>(() => undefined);
      await expect(
        side.run(() => runSideWork({ ...b, config, items, kernelConfigured: never })),
      ).rejects.toThrow(/mmdebstrap/);
      expect(side.cancelled).toBe("guest lane failed");
      expect(Date.now() - t0).toBeLessThan(60_000);
      // Nothing half-built is left as an artifact.
      const chroots = join(config.cache_dir, "chroots");
      expect(existsSync(chroots) ? readdirSync(chroots) : []).toEqual([]);
    } finally {
      rmSync(config.cache_dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe("branches", () => {
  it("run their commands at the idle CPU priority when asked, children included", async () => {
    expect(branchArgv(["make", "-j2"], "normal")).toEqual(["make", "-j2"]);
    expect(branchArgv(["debootstrap", "x"], "idle")).toEqual(["chrt", "--idle", "0", "debootstrap", "x"]);
    // A grandchild's policy, as the kernel reports it.
    const idle = await new Branch("side", "idle").run(() =>
      run(["sh", "-c", "sh -c 'chrt -p $$'"], { timeoutMs: 5000 }),
    );
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
    // Well before the slow branch's sleep of 30 s would have ended on its own.
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it("a cancelled branch starts no new command", async () => {
    const b = new Branch("done branch");
    b.cancel("the other branch failed");
    await expect(b.run(() => run(["true"], { timeoutMs: 5000 }))).rejects.toBeInstanceOf(
      BranchCancelledError,
    );
  });
});
