import { describe, expect, it } from "vitest";
import { CommandError, UserError } from "../../scripts/lib/errors.js";
import {
  failedPhaseOf,
  fromPhase,
  phaseSeconds,
  runPhases,
  type Phase,
  type PhaseTiming,
} from "../../scripts/lib/phases.js";
import { runSteps, withProgressSink } from "../../scripts/lib/progress.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("runPhases", () => {
  it("runs the phases in order over one state, timing each and recording skips", async () => {
    const state = { seen: [] as string[], cached: true };
    const phases: Phase<typeof state>[] = [
      { name: "plan", run: async (s) => void s.seen.push("plan") },
      {
        name: "build",
        skip: (s) => (s.cached ? "cached" : false),
        run: async (s) => void s.seen.push("build"),
      },
      {
        name: "publish",
        run: async (s) => {
          await sleep(30);
          s.seen.push("publish");
        },
      },
    ];
    const ended: string[] = [];
    const timings = await runPhases(state, phases, {
      ended: (t, skipped) => ended.push(`${t.name}:${t.status}${skipped ? `(${skipped})` : ""}`),
    });
    expect(state.seen).toEqual(["plan", "publish"]);
    expect(timings.map((t) => [t.name, t.status])).toEqual([
      ["plan", "done"],
      ["build", "skipped"],
      ["publish", "done"],
    ]);
    expect(timings[2].seconds).toBeGreaterThanOrEqual(0.02);
    expect(ended).toEqual(["plan:done", "build:skipped(cached)", "publish:done"]);
    expect(phaseSeconds(timings)).toEqual({ plan: timings[0].seconds, publish: timings[2].seconds });
  });

  it("stops at a failing phase, names it in the error and keeps the error's class, hint and exit code", async () => {
    const ran: string[] = [];
    const timings: PhaseTiming[] = [];
    const err = await runPhases(
      {},
      [
        { name: "disk", run: async () => void ran.push("disk") },
        {
          name: "inject",
          run: async () => {
            throw new CommandError("guestfish failed", ["guestfish"], 1, false, "", "read the log");
          },
        },
        { name: "publish", run: async () => void ran.push("publish") },
      ],
      { stage: "image", ended: (t) => timings.push(t) },
    ).catch((e: unknown) => e);
    expect(ran).toEqual(["disk"]);
    expect(err).toBeInstanceOf(CommandError);
    const e = err as CommandError;
    expect(e.message).toBe("image inject: guestfish failed");
    expect([e.hint, e.exitCode]).toEqual(["read the log", 3]);
    expect(failedPhaseOf(e)).toBe("image inject");
    expect(timings.map((t) => `${t.name}:${t.status}`)).toEqual(["disk:done", "inject:failed"]);
  });

  it("names the innermost phase once when phases nest", async () => {
    const inner = () =>
      runPhases({}, [
        {
          name: "rootfs",
          run: async () => {
            throw new UserError("mmdebstrap failed");
          },
        },
      ]);
    const err = await runPhases({}, [{ name: "base", run: async () => void (await inner()) }], {
      stage: "image",
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe("rootfs: mmdebstrap failed");
    expect(failedPhaseOf(err)).toBe("rootfs");
  });

  it("turns a thrown non-Error into an Error naming the phase", async () => {
    const err = await runPhases({}, [
      {
        name: "x",
        run: async () => {
          throw "plain";
        },
      },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe("x: plain");
  });

  it("passes the log and title callbacks to each phase", async () => {
    const lines: string[] = [];
    const titles: string[] = [];
    await runPhases(
      {},
      [
        {
          name: "a",
          run: async (_s, log, setTitle) => {
            log("line");
            setTitle("A, 3 of 3");
          },
        },
      ],
      { log: (l) => lines.push(l), setTitle: (t) => titles.push(t) },
    );
    expect([lines, titles]).toEqual([["line"], ["A, 3 of 3"]]);
  });
});

describe("runSteps (the phases shown as progress lines)", () => {
  it("inside a sink, shows each step's title, skips as told and returns the timings by step name", async () => {
    const titles: string[] = [];
    const lines: string[] = [];
    const ctx = { n: 0 };
    const timings = await withProgressSink({ title: (t) => titles.push(t), line: (l) => lines.push(l) }, () =>
      runSteps(ctx, [
        {
          title: "Resolve linux 6.12",
          name: "source",
          run: async (c, log) => {
            c.n++;
            log("fetched");
          },
        },
        { title: "Build", skip: () => "cached", run: async (c) => void c.n++ },
        { title: "Check", run: async (c) => void c.n++ },
      ]),
    );
    expect(ctx.n).toBe(2);
    expect(titles).toEqual(["Resolve linux 6.12", "Check"]);
    expect(lines).toEqual(["fetched"]);
    expect(timings.map((t) => `${t.name}:${t.status}`)).toEqual([
      "source:done",
      "Build:skipped",
      "Check:done",
    ]);
  });
});

describe("runSteps without a sink (listr2 lines on stderr)", () => {
  it("returns the timings and rethrows a failing step's error, named", async () => {
    const ctx = { n: 0 };
    const timings = await runSteps(ctx, [
      { title: "One", run: async (c) => void c.n++ },
      { title: "Two", name: "two", skip: () => "cached", run: async (c) => void c.n++ },
    ]);
    expect(ctx.n).toBe(1);
    expect(timings.map((t) => `${t.name}:${t.status}`)).toEqual(["One:done", "two:skipped"]);
    const err = await runSteps(ctx, [
      {
        title: "Build",
        name: "build",
        run: async () => {
          throw new UserError("make failed", "read the log", 3);
        },
      },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect([(err as UserError).message, (err as UserError).exitCode]).toEqual(["build: make failed", 3]);
  });
});

describe("fromPhase", () => {
  it("returns what an earlier phase set, and names what is missing otherwise", () => {
    expect(fromPhase(0, "the count")).toBe(0);
    expect(() => fromPhase(undefined, "the kernel source")).toThrow(
      "the kernel source is not set: the phase that makes it has not run",
    );
  });
});
