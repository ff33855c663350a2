/**
 * Bisects end to end on real inputs, kept small for CI (the long runs are by hand, in
 * docs/bisect.md):
 * - `bisect criu` over CRIU's real history (the git bundle of ../shared/criu-git): the commit
 *   that made the membarrier probe fatal (2ba872782, "dump: use MEMBARRIER_CMD_GET_REGISTRATIONS
 *   when available") against its parent, with membarrier-enosys/check on the suite's kernel
 *   (a seccomp filter makes membarrier() ENOSYS, as a kernel without CONFIG_MEMBARRIER does):
 *   two CRIU builds by commit, the ends confirmed, the culprit re-run;
 * - `git bisect run cr-guest smoke --local-source . --test ... --bisect-exit` in a plain
 *   checkout of the same history, one commit further back: the step it runs is the one the
 *   bisect above built (a clean checkout's CRIU is keyed by its commit), so it costs a lookup;
 * - `bisect config` between the default kernel and one without CONFIG_TUN, test feature/tun:
 *   one incremental variant build;
 * - bad input: a ref that does not exist, good equal to bad, an unknown test.
 */
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CLI, crGuest, missingTools, unavailable } from "../helpers/cli.js";
import { testCacheDir } from "../helpers/test-cache.js";
import { run } from "../../scripts/lib/exec.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { expectValid } from "../helpers/schemas.js";

const BUNDLE = resolve(REPO_ROOT, "../shared/criu-git/criu-tags.bundle");
const CULPRIT = "2ba872782";
/** The culprit against its parent, with the test that shows it on the suite's own kernel. */
const BISECT_CULPRIT = [
  "bisect",
  "criu",
  "--git",
  BUNDLE,
  "--good",
  `${CULPRIT}^`,
  "--bad",
  CULPRIT,
  "--test",
  "membarrier-enosys/check",
];
const skip =
  missingTools(["make", "gcc", "qemu-system-x86_64", "guestfish", "mmdebstrap", "sgdisk", "git"]) ||
  (existsSync(BUNDLE) ? undefined : unavailable(`${BUNDLE} is missing (CRIU's history as a git bundle)`));

describe.skipIf(skip)("bisect (integration)", () => {
  it(
    "refuses bad input with exit 2 and the fix, before building anything",
    { timeout: 5 * 60_000 },
    async () => {
      const missing = await crGuest(
        ["bisect", "criu", "--git", BUNDLE, "--good", "v3.18", "--bad", "v9.99", "--test", "criu-check"],
        120_000,
      );
      expect(missing.exitCode).toBe(2);
      expect(missing.stderr).toMatch(/git ref 'v9.99' does not exist/);
      const same = await crGuest(
        ["bisect", "criu", "--git", BUNDLE, "--good", "v3.18", "--bad", "v3.18", "--test", "criu-check"],
        120_000,
      );
      expect(same.exitCode).toBe(2);
      expect(same.stderr).toMatch(/--good and --bad are both v3.18/);
      const test = await crGuest(
        ["bisect", "criu", "--git", BUNDLE, "--good", "v3.18", "--bad", "v3.19", "--test", "criu-chek"],
        120_000,
      );
      expect(test.exitCode).toBe(2);
      expect(test.stderr).toMatch(/did you mean 'criu-check'/);
      const plan = await crGuest(
        [
          "bisect",
          "criu",
          "--git",
          BUNDLE,
          "--good",
          "v3.18",
          "--bad",
          "v3.19",
          "--test",
          "criu-check",
          "--dry-run",
          "--json",
        ],
        120_000,
      );
      expect(plan.exitCode, plan.stderr).toBe(0);
      const doc = JSON.parse(plan.stdout);
      expect(doc.candidates).toHaveLength(171);
      expect(doc.worst_case).toEqual({ steps: 12, builds: 10, boots: 12 });
    },
  );

  it(
    `bisect criu names ${CULPRIT} (the membarrier probe made fatal), confirmed; git bisect run agrees in a plain checkout`,
    { timeout: 60 * 60_000 },
    async () => {
      const r = await crGuest([...BISECT_CULPRIT, "--json"], 50 * 60_000);
      expect(r.exitCode, r.stderr.slice(-4000)).toBe(0);
      const report = JSON.parse(r.stdout);
      expectValid("bisect", report);
      expect(report.answer.kind).toBe("found");
      expect(report.answer.confirmed).toBe(true);
      expect(report.answer.culprit.id).toMatch(new RegExp(`^${CULPRIT}`));
      expect(report.answer.culprit.title).toBe("dump: use MEMBARRIER_CMD_GET_REGISTRATIONS when available");
      expect(report.steps.map((s: { role: string; verdict: string }) => `${s.role}:${s.verdict}`)).toEqual([
        "good-end:good",
        "bad-end:bad",
        "confirm-culprit:bad",
        "confirm-parent:good",
      ]);
      for (const s of report.steps) expect(existsSync(s.evidence), s.evidence).toBe(true);
      expect(readFileSync(report.files.markdown, "utf8")).toMatch(
        /first bad: 2ba872782\S* dump: use MEMBARRIER/,
      );
      // The bad step's own record says why: the probe CRIU 3.18 (the tree's version) should tolerate.
      const bad = report.steps.find((s: { role: string }) => s.role === "bad-end");
      expect(bad.reason).toMatch(/membarrier probe is fatal although it should be tolerated/);

      // Done again: the state answers at once (nothing built, nothing booted).
      const again = await crGuest(BISECT_CULPRIT, 5 * 60_000);
      expect(again.exitCode).toBe(0);
      expect(again.stdout).toMatch(/resuming after 4 step\(s\)/);

      // git bisect run in a plain checkout: one step (the parent, built above), then the answer.
      const dir = mkdtempSync(join(tmpdir(), "criu-checkout-"));
      const git = (...args: string[]) =>
        run(["git", ...args], { cwd: join(dir, "criu"), timeoutMs: 5 * 60_000, allowFailure: true });
      await run(["git", "clone", "--quiet", BUNDLE, "criu"], {
        cwd: dir,
        timeoutMs: 5 * 60_000,
        allowFailure: true,
      });
      await git("checkout", "--quiet", CULPRIT);
      await git("bisect", "start", CULPRIT, `${CULPRIT}~2`);
      const bisect = await git(
        "bisect",
        "run",
        CLI,
        "smoke",
        "--local-source",
        ".",
        "--test",
        "membarrier-enosys/check",
        "--bisect-exit",
        "--cache-dir",
        testCacheDir(),
      );
      expect(bisect.exitCode, bisect.stdout.slice(-3000) + bisect.stderr.slice(-3000)).toBe(0);
      expect(bisect.stdout).toMatch(new RegExp(`${CULPRIT}\\S* is the first bad commit`));
    },
  );

  it(
    "bisect config finds CONFIG_TUN between the default kernel and one without it, and where it was set",
    { timeout: 45 * 60_000 },
    async () => {
      const frag = join(mkdtempSync(join(tmpdir(), "no-tun-")), "no-tun.conf");
      writeFileSync(frag, "# CONFIG_TUN is not set\n");
      const r = await crGuest(
        [
          "bisect",
          "config",
          "--good",
          "default",
          "--bad",
          `default+${frag}`,
          "--test",
          "feature/tun",
          "--criu",
          "4.1.1",
          "--json",
        ],
        40 * 60_000,
      );
      expect(r.exitCode, r.stderr.slice(-4000)).toBe(0);
      const summary = JSON.parse(r.stdout);
      expect(summary.complete).toBe(true);
      expect(summary.found).toEqual([
        { symbol: "TUN", good: "y", bad: "n", set_by: `${frag}:1 (# CONFIG_TUN is not set)` },
      ]);
      expect(summary.rounds[0].answer).toMatchObject({ kind: "found", confirmed: true });
    },
  );
});
