/**
 * A proof end to end, as a maintainer runs it: `explain --prove TUN` builds the default kernel
 * again without CONFIG_TUN (an incremental make from the suite's kernel: TUN touches a few
 * files, where USERFAULTFD rebuilds most of mm/), boots it with the checks and features beside
 * the default kernel's run, and finds exactly feature/tun and feature/tun_ns failing. The
 * variant's own run then says why, from its .config, as every report does.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { crGuest, missingTools } from "../helpers/cli.js";
import { testCacheDir } from "../helpers/test-cache.js";
import type { RunResults } from "../../scripts/boot/stage.js";

const skip = missingTools(["make", "gcc", "qemu-system-x86_64", "guestfish", "mmdebstrap", "sgdisk"]);

describe.skipIf(skip)("explain --prove (integration)", () => {
  it(
    "--dry-run plans one variant, one build and two boots, without building",
    { timeout: 20 * 60_000 },
    async () => {
      const r = await crGuest(["explain", "--prove", "TUN", "--dry-run", "--json"], 20 * 60_000);
      expect(r.exitCode, r.stderr).toBe(0);
      const plan = JSON.parse(r.stdout);
      expect(plan.variants).toEqual([
        [{ symbol: "TUN", predicted: expect.arrayContaining(["feature/tun", "feature/tun_ns"]) }],
      ]);
      expect(plan.variants[0][0].predicted).toHaveLength(2);
      expect([plan.builds, plan.boots]).toEqual([1, 2]);
    },
  );

  it(
    "proves TUN: exactly tun and tun_ns fail without it, and the variant's run names CONFIG_TUN as the cause",
    { timeout: 75 * 60_000 },
    async () => {
      const r = await crGuest(["explain", "--prove", "TUN", "--json"], 75 * 60_000);
      expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
      const report = JSON.parse(r.stdout);
      const tun = report.outcomes.find((o: { symbol: string }) => o.symbol === "TUN");
      expect(tun.status, JSON.stringify(tun)).toBe("proven");
      expect([...tun.failed].sort()).toEqual(["feature/tun", "feature/tun_ns"]);
      const batch = report.batches[0];
      // The variant differs from the default kernel where reported, and TUN is off in it.
      expect(batch.config_diff).toContainEqual({ symbol: "TUN", base: "y", variant: "n" });
      expect(batch.verdict.unpredicted).toEqual([]);
      expect(batch.run.status).toBe("COMPLETE");

      const results = JSON.parse(
        readFileSync(join(testCacheDir(), batch.run.dir, "results.json"), "utf8"),
      ) as { tests: (RunResults["tests"][number] & { cause?: { text: string } })[] };
      const feature = results.tests.find((t) => t.name === "feature/tun")!;
      expect(feature.status).toBe("FAIL");
      expect(feature.cause?.text).toMatch(/CONFIG_TUN/);
      expect(results.tests.find((t) => t.name === "feature/uffd")!.status).toBe("PASS");

      // A second run resumes: the batch's outcome is kept, nothing is built or booted again.
      const again = await crGuest(["explain", "--prove", "TUN", "--json"], 10 * 60_000);
      expect(again.exitCode, again.stderr.slice(-2000)).toBe(0);
      expect(again.stderr).toMatch(/kept from an earlier run/);
      expect(JSON.parse(again.stdout).batches[0].run).toEqual(batch.run);
    },
  );
});
