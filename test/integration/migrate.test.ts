/**
 * A migration pair end to end, as CI can afford it (one CRIU-only pair on the 6.12 kernel the
 * suite builds anyway): CRIU 4.1.1 dumps in boot A, the transfer disk carries the images and
 * each case's state, CRIU 4.2.1 restores in boot B from one image holding both; crit of both
 * reads the dump.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { repoData } from "../../scripts/data/repo-data.js";
import { tempDir } from "../helpers/temp.js";
import { expectChecksMatch, expectFeaturesMatch, expectProbesMatch } from "../helpers/criu-map-sources.js";
import { join } from "node:path";
import { crGuest, missingTools } from "../helpers/cli.js";
import type { PairResult } from "../../scripts/migrate/run.js";
import type { RunResults } from "../../scripts/boot/stage.js";
import { verifyTransferDisk } from "../../scripts/boot/transfer-disk.js";
import { testCacheDir } from "../helpers/test-cache.js";

const skip = missingTools(["qemu-system-x86_64", "guestfish", "debootstrap", "sgdisk", "mkfs.ext4"]);
const CACHE = testCacheDir();

describe.skipIf(skip)("migration (integration)", () => {
  it(
    "4.1.1 -> 4.2.1 on 6.12: dumped in boot A, restored in boot B, each case with its evidence",
    { timeout: 60 * 60_000 },
    async () => {
      const r = await crGuest(
        ["migrate", "--from-criu", "4.1", "--to-criu", "4.2", "--kernel", "6.12", "--json"],
        60 * 60_000,
      );
      expect(r.stdout.trim().startsWith("{"), r.stderr).toBe(true);
      const pair = JSON.parse(r.stdout) as PairResult;
      expect(pair.id).toBe("4.1.1_6.12_unpatched-to-4.2.1_6.12_unpatched");
      expect(pair.identities.from.criu?.version).toBe("4.1.1");
      expect(pair.identities.to.criu?.version).toBe("4.2.1");
      expect(pair.status, `${pair.reason}\n${r.stderr.slice(-3000)}`).not.toBe("ERROR");
      // Both boots ran, on one image, and the transfer disk boot B read is the one boot A wrote.
      const runA = JSON.parse(
        readFileSync(join(CACHE, pair.runs.dump!, "results.json"), "utf8"),
      ) as RunResults;
      const runB = JSON.parse(
        readFileSync(join(CACHE, pair.runs.restore!, "results.json"), "utf8"),
      ) as RunResults;
      expect(runA.identities.criu.version).toBe("4.1.1");
      expect(runB.identities.criu.version).toBe("4.2.1");
      expect(runA.identities.image.key).toBe(runB.identities.image.key);
      expect(runA.guest.transfer_status).toBe("written");
      expect(runB.guest.transfer_status).toBe("read");
      expect(verifyTransferDisk(join(CACHE, pair.transfer!.disk)).sha256).toBe(pair.transfer!.sha256);
      // Boot A only dumps, boot B only restores: no feature checks, every migrating case in both.
      expect(runA.tests.some((t) => t.name.startsWith("feature/"))).toBe(false);
      for (const name of [
        "simple-process/dump-restore",
        "pidns-init/setsid",
        "tcp-established/loopback",
        "kata-container/dump-restore",
      ]) {
        const c = pair.cases.find((x) => x.name === name);
        expect(c, name).toBeDefined();
        expect(c!.dump?.status, `${name}: ${c!.message}`).toBe("PASS");
        expect(c!.dump?.message).toMatch(/dumped with 4\.1\.1; handed over/);
        expect(c!.status, `${name}: ${c!.message}`).toBe("PASS");
      }
      // The counter of simple-process went on in boot B from the value boot A dumped.
      expect(pair.cases.find((x) => x.name === "simple-process/dump-restore")!.message).toMatch(
        /counts on from the dump/,
      );
      // crit of both CRIUs, made from their own source trees, decoded boot A's dumps (per direction).
      expect(pair.crit.map((c) => [c.version, c.role])).toEqual([
        ["4.1.1", "dump"],
        ["4.2.1", "restore"],
      ]);
      for (const c of pair.crit) {
        expect(c.status, `crit ${c.version}: ${c.message}`).toBe("ok");
        expect(c.cases.find((x) => x.name === "simple-process/dump-restore")?.message).toMatch(
          /^inventory img_version \d+; ps: \d+ sh/,
        );
      }
      expect(existsSync(join(CACHE, "migrate", pair.id, "pair.json"))).toBe(true);
    },
  );

  it(
    "the kernel requirements map against CRIU 4.2.1's own source (the orig tarball the pair's build downloaded)",
    { timeout: 5 * 60_000 },
    () => {
      const tarball = join(CACHE, "downloads", "criu_4.2.1.orig.tar.xz");
      expect(existsSync(tarball), `${tarball}: the 4.2.1 build above downloads it`).toBe(true);
      const dir = tempDir("crg-criu-4.2.1-");
      execFileSync("tar", ["-xf", tarball, "-C", dir], { timeout: 120_000 });
      const tree = join(dir, readdirSync(dir)[0]);
      const map = repoData().kernelRequirements;
      expectFeaturesMatch(map, "4.2.1", tree);
      expectChecksMatch(map, "4.2.1", tree);
      expectProbesMatch(map, "4.2.1", tree);
    },
  );
});
