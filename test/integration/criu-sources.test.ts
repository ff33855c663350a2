/**
 * CRIU 3.19, the version the Kata checkpoint work got stuck on, from its real sources, as a
 * user runs it: the tag archive from a local mirror (../shared/criu-tarballs) end to end
 * through `smoke`; the same archive unpacked as --local-source and as a git checkout with a
 * local commit, each built; and every kind of bad source input refused in one line, exit 2,
 * with nothing cached.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crGuest, missingTools, withTestCache } from "../helpers/cli.js";
import {
  CRIU_TARBALLS,
  git,
  gitCheckoutOf,
  missingTarballs,
  unpackRelease,
} from "../helpers/criu-sources.js";
import type { RunResults } from "../../scripts/boot/stage.js";
import { tempDir } from "../helpers/temp.js";
import { testConfig } from "../helpers/test-cache.js";

const skip =
  missingTools(["qemu-system-x86_64", "guestfish", "debootstrap", "git", "rsync"]) ?? missingTarballs();
const config = testConfig();
const metadataOf = (out: string) => JSON.parse(readFileSync(/metadata: (\S+)/.exec(out)![1], "utf8"));
const criuArtifacts = () =>
  existsSync(join(config.cache_dir, "criu")) ? readdirSync(join(config.cache_dir, "criu")).sort() : [];

describe.skipIf(skip)("CRIU 3.19 from its real sources (integration)", () => {
  it(
    "smoke --criu 3.19 --criu-mirror: the tag archive, verified against its pin, built, booted, passing",
    { timeout: 40 * 60_000 },
    async () => {
      const r = await crGuest(["smoke", "--criu", "3.19", "--criu-mirror", CRIU_TARBALLS], 40 * 60_000);
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(0);
      const results = JSON.parse(readFileSync(/results: (\S+)/.exec(out)![1], "utf8")) as RunResults;
      expect(results.status, results.error ?? "").toBe("COMPLETE");
      expect(results.identities.criu.version).toBe("3.19");
      const status = (name: string) => results.tests.find((t) => t.name === name)?.status;
      expect(results.tests.find((t) => t.name === "criu-version")!.message).toBe("Version: 3.19");
      expect(status("criu-check")).toBe("PASS");
      for (const name of [
        "simple-process/dump-restore",
        "pidns-init/setsid",
        "sibling/dump-restore",
        "tcp-established/loopback",
      ])
        expect(status(name), name).toBe("PASS");
      // The catalog's fact: from 3.19 on, the membarrier registration survives a restore.
      expect(status("membarrier/registration")).toBe("PASS");
      // Where it came from, in the artifact's metadata.
      const plan = await crGuest(["criu", "--criu", "3.19", "--criu-mirror", CRIU_TARBALLS, "--plan"]);
      expect(plan.stdout).toMatch(/served by: local-mirror \(.*criu-3\.19\.tar\.gz\)/);
      const key = /local-mirror\s+cached \(key (\w+), sha256:990cdd14/.exec(plan.stdout)?.[1];
      expect(key, plan.stdout).toBeTruthy();
      const m = JSON.parse(readFileSync(join(config.cache_dir, "criu", key!, "metadata.json"), "utf8"));
      expect(m).toMatchObject({
        version: "3.19",
        provider: "local-mirror",
        identity: "sha256:990cdd147cb670a5d5d14216c2b5c2fc2b9a53ef19396569a6413807ba2a6aa2",
        link: "static",
      });
      // The same bytes from upstream are the same build: a cache hit, no download.
      const upstream = await crGuest([
        "criu",
        "--criu",
        "3.19",
        "--provider",
        "upstream",
        "--set",
        "criu.upstream_url_base=http://127.0.0.1:9/unreachable",
      ]);
      expect(upstream.exitCode, upstream.stdout + upstream.stderr).toBe(0);
      expect(upstream.stdout).toContain(`criu/${key}/criu (cached)`);
    },
  );

  it(
    "criu --criu 3.19 --local-source <the unpacked v3.19 tree>: built from a copy, the tree untouched",
    { timeout: 20 * 60_000 },
    async () => {
      const tree = unpackRelease("3.19");
      const before = readdirSync(tree).sort();
      const r = await crGuest(["criu", "--criu", "3.19", "--local-source", tree], 20 * 60_000);
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(0);
      expect(out).toMatch(/Version: 3\.19 \(local-source, static/);
      expect(metadataOf(out)).toMatchObject({
        version: "3.19",
        provider: "local-source",
        from: tree,
        identity: expect.stringMatching(/^tree:/),
      });
      expect(readdirSync(tree).sort()).toEqual(before);
      expect(existsSync(join(tree, "criu/criu"))).toBe(false);
    },
  );

  it(
    "a git checkout with a local commit: built at that commit, recorded in metadata.json; version from the tree",
    { timeout: 20 * 60_000 },
    async () => {
      const { dir, head } = gitCheckoutOf("3.19");
      writeFileSync(join(dir, "scratch.txt"), "untracked: not part of the build\n");
      const r = await crGuest(["criu", "--local-source", dir], 20 * 60_000);
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(0);
      expect(metadataOf(out)).toMatchObject({
        version: "3.19",
        provider: "local-source",
        commit: head,
        identity: `git:${head}`,
      });
      // The git provider over file:// builds the same commit: the same content key.
      const bare = join(tempDir("crg-bare-"), "criu.git");
      git(dir, "clone", "--quiet", "--bare", dir, bare);
      const viaGit = await crGuest(["criu", "--git", `file://${bare}`, "--ref", "criu-dev", "--plan"]);
      expect(viaGit.exitCode, viaGit.stdout + viaGit.stderr).toBe(0);
      expect(viaGit.stdout).toContain(`git: file://${bare} criu-dev -> ${head}`);
    },
  );

  it(
    "bad sources: one line naming the input and the fix, exit 2, nothing cached",
    { timeout: 10 * 60_000 },
    async () => {
      const before = criuArtifacts();
      const tree = unpackRelease("3.19");
      const notCriu = tempDir("crg-not-criu-");
      writeFileSync(join(notCriu, "README"), "hello\n");
      const two = join(tempDir("crg-two-"), "two.tar.gz");
      const { execFileSync } = await import("node:child_process");
      execFileSync("tar", ["-czf", two, "-C", join(tree, ".."), "criu-3.19", "-C", notCriu, "README"]);
      const badMirror = tempDir("crg-bad-mirror-");
      // Written, not copied: a copy keeps the mirror's read-only mode, which only root can truncate.
      writeFileSync(
        join(badMirror, "criu-3.19.tar.gz"),
        readFileSync(join(CRIU_TARBALLS, "criu-3.19.tar.gz")).subarray(0, 700_000),
      );
      const bare = join(tempDir("crg-bare-"), "criu.git");
      const { dir } = gitCheckoutOf("3.19");
      git(dir, "clone", "--quiet", "--bare", dir, bare);
      const cases: [string[], RegExp][] = [
        [
          ["criu", "--criu", "4.1", "--local-source", tree],
          new RegExp(`the local directory ${tree} is CRIU 3\\.19, not 4\\.1\\.1`),
        ],
        [["criu", "--criu", "3.19", "--local-source", notCriu], /is not a CRIU source tree/],
        [["criu", "--local-source", two], /two\.tar\.gz has 2 top directories/],
        [
          ["criu", "--criu", "3.19", "--criu-mirror", badMirror],
          /checksum mismatch for .*criu-3\.19\.tar\.gz: it has sha256 [0-9a-f]{64}, criu-builds\/versions\.yaml pins 990cdd14/,
        ],
        [["criu", "--git", `file://${bare}`, "--ref", "no-such-ref"], /git ref 'no-such-ref' does not exist/],
        [
          ["criu", "--git", "file:///nonexistent/criu.git", "--ref", "criu-dev"],
          /cannot fetch from git URL file:\/\/\/nonexistent\/criu\.git/,
        ],
        [["smoke", "--criu", "4.1", "--local-source", tree], /is CRIU 3\.19, not 4\.1\.1/],
      ];
      for (const [args, message] of cases) {
        const r = await crGuest(args, 5 * 60_000);
        const what = args.join(" ");
        expect(r.exitCode, `${what}\n${r.stdout}${r.stderr}`).toBe(2);
        const errors = r.stderr.split("\n").filter((l) => l.startsWith("error: "));
        expect(errors, what).toHaveLength(1);
        expect(errors[0], what).toMatch(message);
        expect(r.stderr, what).toMatch(/^fix: /m);
        expect(r.stderr, what).not.toMatch(/\n\s+at .*\.ts:\d+/); // no stack trace
      }
      expect(criuArtifacts()).toEqual(before);
    },
  );

  it(
    "Ctrl-C during a CRIU build: children stopped, nothing half-built left, exit 130",
    { timeout: 10 * 60_000 },
    async () => {
      const tree = unpackRelease("3.19");
      // A tree nobody built before: the build really starts.
      writeFileSync(join(tree, "criu/interrupt-test.c"), `/* ${Date.now()} */\n`);
      const { spawn } = await import("node:child_process");
      const { CLI } = await import("../helpers/cli.js");
      const child = spawn(CLI, withTestCache(["criu", "--criu", "3.19", "--local-source", tree]), {
        cwd: tmpdir(),
        stdio: ["ignore", "pipe", "pipe"],
      });
      let err = "";
      child.stderr.on("data", (d) => (err += d));
      // Wait until make runs in the chroot, then interrupt.
      const { execFileSync } = await import("node:child_process");
      const building = () =>
        /make -j\d+ NO_GNUTLS=1 criu/.test(execFileSync("ps", ["-eo", "args"]).toString());
      const deadline = Date.now() + 5 * 60_000;
      while (!building() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 300));
      expect(building(), err).toBe(true);
      await new Promise((r) => setTimeout(r, 2000));
      child.kill("SIGINT");
      const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
      expect(code, err).toBe(130);
      expect(err).toMatch(/interrupted/);
      const leftovers = readdirSync(join(config.cache_dir, "criu")).filter((n) => n.startsWith(".tmp-"));
      expect(leftovers).toEqual([]);
      // No make of that build survives its parent.
      expect(building()).toBe(false);
    },
  );
});
