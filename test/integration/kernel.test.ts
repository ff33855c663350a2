/**
 * The kernel stage end to end, as a user runs it: build the default kernel from the Debian
 * mirror source, verify it, boot it under QEMU to an init that checks /proc/config.gz, then
 * hit the cache. Real builds: this takes ~11 minutes cold, ~2 with a warm ccache.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { allSymbols, CRIU_REF, KERNEL_REF } from "../../scripts/data/kernel-requirements.js";
import {
  buildSymbolsFixture,
  readSymbolsFixture,
  symbolFacts,
} from "../../scripts/kernel/requirement-symbols.js";
import { join } from "node:path";
import { crGuest, missingTools } from "../helpers/cli.js";
import { writeKataTree } from "../helpers/kata-tree.js";
import { readdirSync } from "node:fs";
import { repoData } from "../../scripts/data/repo-data.js";
import { loadFragmentFile, mergeFragments, parseDotConfig } from "../../scripts/data/fragments.js";
import { parseKernelKconfig } from "../../scripts/kernel/kconfig.js";
import { referenceDisagreements } from "../../scripts/kernel/verify.js";
import { FRAGMENTS_DIR } from "../../scripts/lib/paths.js";
import { bootVm } from "../../scripts/lib/qemu.js";
import { run } from "../../scripts/lib/exec.js";
import { mkdirSync, symlinkSync, copyFileSync, chmodSync } from "node:fs";
import { tempDir } from "../helpers/temp.js";
import { testCacheDir } from "../helpers/test-cache.js";
import type { RunResult } from "../../scripts/lib/exec.js";

const skip = missingTools([
  "make",
  "gcc",
  "flex",
  "bison",
  "bc",
  "qemu-system-x86_64",
  "busybox",
  "cpio",
  "gpgv",
  "xz",
]);

describe.skipIf(skip)("kernel stage (integration)", () => {
  describe("the default kernel", () => {
    // Built here, or taken from the run's cache if another file built it first: every
    // assertion below holds either way.
    let build: RunResult;
    let out = "";
    let kernelPath: string | undefined;
    beforeAll(async () => {
      build = await crGuest(["kernel", "--boot-check"], 70 * 60_000);
      out = build.stdout + build.stderr;
      kernelPath = /kernel: (\S+vmlinuz)/.exec(out)?.[1];
    }, 75 * 60_000);

    it(
      "is built (or cached), verified and booted, then hits the cache",
      { timeout: 5 * 60_000 },
      async () => {
        expect(build.exitCode, out).toBe(0);
        expect(out).toMatch(/requested symbols landed in the final \.config/);
        expect(out).toContain("verification PASSED");
        expect(kernelPath, out).toBeDefined();
        expect(statSync(kernelPath!).size).toBeGreaterThan(1_000_000);
        const meta = JSON.parse(readFileSync(join(kernelPath!, "..", "metadata.json"), "utf8"));
        expect(meta.version).toMatch(/^6\.12\.\d+$/);
        expect(meta.verify.passed).toBe(true);
        expect(meta.verify.ok).toBe(meta.verify.checked);
        expect(meta.source.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(meta.fragments.map((f: { name: string }) => f.name)).toEqual([
          "guest-base",
          "checkpoint-restore",
        ]);
        const config = readFileSync(join(kernelPath!, "..", "config"), "utf8");
        for (const sym of ["CONFIG_CHECKPOINT_RESTORE=y", "CONFIG_MEMBARRIER=y", "CONFIG_IKCONFIG_PROC=y"])
          expect(config).toContain(sym);
        // The guest saw its own config: --boot-check boots the kernel whether built now or cached.
        expect(out).toMatch(/boot check: booted .* all requested symbols seen/);

        const again = await crGuest(["kernel"], 60_000);
        expect(again.exitCode, again.stdout + again.stderr).toBe(0);
        expect(again.stdout).toContain(`kernel: ${kernelPath} (cached)`);
      },
    );

    it(
      "a guest that never finishes booting is a timeout within the deadline, not a hang",
      { timeout: 120_000 },
      async () => {
        expect(kernelPath, out).toBeDefined();
        const dir = tempDir("crg-hang-");
        const root = join(dir, "root");
        mkdirSync(join(root, "bin"), { recursive: true });
        copyFileSync("/bin/busybox", join(root, "bin/busybox"));
        chmodSync(join(root, "bin/busybox"), 0o755);
        for (const a of ["sh", "sleep"]) symlinkSync("busybox", join(root, "bin", a));
        writeFileSync(join(root, "init"), "#!/bin/sh\necho CRG-HANGING\nwhile :; do sleep 1000; done\n", {
          mode: 0o755,
        });
        const cpio = join(dir, "hang.cpio");
        await run(["cpio", "--quiet", "-o", "-H", "newc", "-F", cpio], {
          cwd: root,
          input: "init\nbin\nbin/busybox\nbin/sh\nbin/sleep\n",
          timeoutMs: 30_000,
        });
        const t0 = Date.now();
        const r = await bootVm({
          kernel: kernelPath!,
          initrd: cpio,
          append: [],
          accel: "tcg",
          timeoutMs: 15_000,
          consoleLog: join(dir, "console.log"),
          endMarker: "CRG-NEVER",
        });
        expect(r.status).toBe("timeout");
        expect(r.console).toContain("CRG-HANGING");
        // The point is the deadline: ended by it (15 s), with room for QEMU's start and stop.
        expect(Date.now() - t0).toBeLessThan(15_000 + 45_000);
      },
    );

    it(
      "the kernel requirements map against the source tree it was built from: the symbols fixture is what its Kconfig says, every kernel line cited exists",
      { timeout: 120_000 },
      () => {
        expect(kernelPath, out).toBeDefined();
        const map = repoData().kernelRequirements;
        const meta = JSON.parse(readFileSync(join(kernelPath!, "..", "metadata.json"), "utf8"));
        expect(meta.version).toBe(map.kernelTree);
        const srctree = join(testCacheDir(), "sources", `linux-${map.kernelTree}-debian-dfsg`, "tree");
        expect(buildSymbolsFixture(srctree, map)).toEqual(readSymbolsFixture());
        const cited = map.entries.flatMap((r) => r.sources).filter((s) => !CRIU_REF.test(s));
        for (const ref of new Set(cited)) {
          const [, path, line] = KERNEL_REF.exec(ref)!;
          const file = join(srctree, path);
          expect(existsSync(file), ref).toBe(true);
          if (line)
            expect(readFileSync(file, "utf8").split("\n").length, ref).toBeGreaterThanOrEqual(Number(line));
        }
      },
    );
  });

  it(
    "--prebuilt verifies Debian's cloud kernel against the same fragments and names what it lacks",
    { timeout: 10 * 60_000 },
    async () => {
      const r = await crGuest(["kernel", "--prebuilt", "--cloud-suite", "trixie"], 9 * 60_000);
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(1); // a distribution kernel lacks some of our options
      expect(out).toMatch(
        /Debian linux-image-6\.12\.\d+\S*-cloud-amd64 \S+: \d+\/\d+ requested symbols landed/,
      );
      expect(out).toMatch(/CONFIG_IKCONFIG_PROC\s+y\s+n/);
      expect(out).toMatch(/CONFIG_TUN\s+y\s+m\s+.*module/);
      const vmlinuz = /kernel: (\S+vmlinuz)/.exec(out)![1];
      expect(statSync(vmlinuz).size).toBeGreaterThan(1_000_000);
      const meta = JSON.parse(readFileSync(join(vmlinuz, "..", "metadata.json"), "utf8"));
      expect(meta.kind).toBe("debian-cloud");
      expect(meta.verify.passed).toBe(false);
      expect(meta.source.sha256).toMatch(/^[0-9a-f]{64}$/);
    },
  );

  it(
    "--check-config reports a nonexistent symbol with a suggestion and exits 1",
    { timeout: 20 * 60_000 },
    async () => {
      const dir = tempDir("crg-frag-");
      const bad = join(dir, "typo.conf");
      // PROC_FS has a prompt only with EXPERT: turning it off needs both (and springs the EXPERT trap).
      writeFileSync(
        bad,
        "CONFIG_MEMBARIER=y # typo of MEMBARRIER\nCONFIG_EXPERT=y # expert\n# CONFIG_PROC_FS is not set\n",
      );
      const r = await crGuest(["kernel", "--check-config", "--fragment", bad], 15 * 60_000);
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(1);
      expect(out).toContain("CONFIG_MEMBARIER");
      expect(out).toContain("did you mean CONFIG_MEMBARRIER?");
      // Turning PROC_FS off drops CHECKPOINT_RESTORE, explained from Kconfig.
      expect(out).toMatch(
        /CONFIG_CHECKPOINT_RESTORE\s+y\s+n\s+unmet dependency \(init\/Kconfig:\d+\): depends on PROC_FS \[PROC_FS=n\]/,
      );
      // The exact trap: measured by a second configure, and PROC_FS (set by the fragment) is not in it.
      expect(out).toMatch(
        /warning: CONFIG_EXPERT=y over allnoconfig turns off \d+ options that are on without it/,
      );
    },
  );

  it(
    "the EXPERT trap over --fragment-set minimal fails --criu 4.1: what fails every command at start first (FILE_LOCKING, MEMBARRIER), none of it under 'also'; --config-out keeps the .config",
    { timeout: 20 * 60_000 },
    async () => {
      const dir = tempDir("crg-trap-");
      const frag = join(dir, "trap.conf");
      writeFileSync(
        frag,
        "CONFIG_EXPERT=y # the Kata C/R work's fragment\nCONFIG_CHECKPOINT_RESTORE=y # c/r\n",
      );
      const kept = join(dir, "final.config");
      const r = await crGuest(
        [
          "kernel",
          "--check-config",
          "--fragment-set",
          "minimal",
          "--fragment",
          frag,
          "--criu",
          "4.1",
          "--config-out",
          kept,
          "--json",
        ],
        15 * 60_000,
      );
      expect(r.exitCode, r.stderr).toBe(1);
      const doc = JSON.parse(r.stdout);
      expect(doc.verified).toBe(true);
      expect(doc.passed).toBe(false);
      type Trapped = { symbol: string; criu: boolean; consequence: string | null };
      const atStart = (doc.expert_trap as Trapped[]).filter((t) =>
        t.consequence?.startsWith("every CRIU command fails at start"),
      );
      expect(atStart.map((t) => t.symbol)).toEqual(
        expect.arrayContaining(["CONFIG_FILE_LOCKING", "CONFIG_MEMBARRIER"]),
      );
      expect(doc.expert_trap.slice(0, atStart.length)).toEqual(atStart);
      for (const cr of ["CONFIG_EXPORTFS", "CONFIG_SIGNALFD", "CONFIG_TIMERFD", "CONFIG_POSIX_TIMERS"])
        expect((doc.expert_trap as Trapped[]).find((t) => t.symbol === cr)?.criu, cr).toBe(true);
      expect(doc.verdicts).toHaveLength(1);
      expect(doc.verdicts[0]).toMatchObject({ starts: false, features: { ok: 0 } });
      // Exact: nothing the final .config has on is listed (the old guess named EVENTFD).
      const final = readFileSync(kept, "utf8");
      for (const t of doc.expert_trap)
        expect(final, t.symbol).not.toMatch(new RegExp(`^${t.symbol}=[ym]$`, "m"));
      expect(final).toMatch(/^CONFIG_EXPERT=y$/m);
      expect(
        doc.findings
          .filter((f: { severity: string }) => f.severity === "fail")
          .map((f: { id: string }) => f.id),
      ).toContain("probe/kerndat_has_membarrier_get_registrations");
      expect(r.stderr).toMatch(
        /CONFIG_FILE_LOCKING off: every CRIU command fails at start \(start-up probe kerndat_fdinfo_has_lock\)/,
      );
      expect(r.stderr).toMatch(/CRIU 4\.1\.\d+ with this \.config: every CRIU command fails at start/);
    },
  );

  it(
    "a Kata fragments tree: Kata's selection, its whitelisted misses apart, our C/R fragments on top",
    { timeout: 20 * 60_000 },
    async () => {
      const tree = writeKataTree(tempDir("crg-kata-"));
      const r = await crGuest(
        [
          "kernel",
          "--check-config",
          "--kata-fragments",
          tree,
          "--fragment",
          join(FRAGMENTS_DIR, "guest-base.conf"),
          "--fragment",
          join(FRAGMENTS_DIR, "checkpoint-restore.conf"),
          "--json",
        ],
        15 * 60_000,
      );
      expect(r.exitCode, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.passed).toBe(true);
      const by = (status: string) =>
        doc.symbols
          .filter((x: { status: string }) => x.status === status)
          .map((x: { symbol: string }) => x.symbol)
          .sort();
      expect(by("whitelisted")).toEqual(["CONFIG_MEMCG_SWAP", "CONFIG_NF_NAT_IPV4", "CONFIG_RETPOLINE"]);
      // !x86_64 and !confidential files were left out, as build-kernel.sh leaves them out.
      expect(doc.symbols.map((x: { symbol: string }) => x.symbol)).not.toContain("CONFIG_S390_GUEST");
      expect(doc.symbols.map((x: { symbol: string }) => x.symbol)).not.toContain("CONFIG_DEBUG_FS");
      expect(r.stderr).toMatch(/Whitelisted by Kata \(3, accepted misses, not failures\)/);
      // Without our fragments the tree's misses that Kata does not whitelist still fail.
      const bad = await crGuest(
        ["kernel", "--check-config", "--kata-fragments", join(tree, "x86_64")],
        60_000,
      );
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr).toMatch(/is not a Kata fragments tree: it has no common\/ directory/);
    },
  );

  it(
    "bad input: --config-out into a missing directory and an unknown --criu are one line each, exit 2, before any work",
    { timeout: 120_000 },
    async () => {
      const out = await crGuest(
        ["kernel", "--check-config", "--config-out", "/nonexistent-dir/x.config"],
        60_000,
      );
      expect(out.exitCode).toBe(2);
      expect(out.stderr).toMatch(
        /--config-out \/nonexistent-dir\/x\.config: the directory \/nonexistent-dir does not exist/,
      );
      const criu = await crGuest(["kernel", "--check-config", "--criu", "3.16"], 60_000);
      expect(criu.exitCode).toBe(2);
      expect(criu.stderr).toMatch(/unknown CRIU version '3\.16'/);
    },
  );

  it(
    "6.1 (Kata 3.x guests' kernel line): its whole Kconfig tree parses and --check-config passes, as JSON",
    { timeout: 20 * 60_000 },
    async () => {
      // 6.1's aic7xxx help text sits at its help keyword's indent: once read as a `source`.
      const r = await crGuest(["kernel", "--kernel", "6.1", "--check-config", "--json"], 15 * 60_000);
      expect(r.exitCode, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.passed).toBe(true);
      expect(doc.checked).toBeGreaterThan(50);
      const mb = doc.symbols.find((x: { symbol: string }) => x.symbol === "CONFIG_MEMBARRIER");
      expect(mb).toMatchObject({ status: "ok", final: "y" });
      expect(r.stderr).toMatch(
        /linux 6\.1\.\d+ \(allnoconfig, fragment set default\): \d+\/\d+ requested symbols landed/,
      );
    },
  );

  it(
    "the Kconfig reader agrees with scripts/kconfig on every requested symbol, on whole 6.1 and 6.12 trees",
    { timeout: 20 * 60_000 },
    async () => {
      const dir = tempDir("crg-ref-");
      const procOff = join(dir, "proc-off.conf");
      // Turning PROC_FS off (it has a prompt only with EXPERT) drops CHECKPOINT_RESTORE and more.
      writeFileSync(procOff, "CONFIG_EXPERT=y # expert\n# CONFIG_PROC_FS is not set\n");
      const data = repoData();
      const defaults = ["guest-base", "checkpoint-restore"].map((n) => data.fragments.get(n)!);
      const cases = [
        { kernel: "6.1", extra: [] as string[] },
        { kernel: "6.12", extra: [] as string[] },
        { kernel: "6.12", extra: [procOff] },
      ];
      for (const c of cases) {
        const out = join(dir, `${c.kernel}-${c.extra.length}.config`);
        const r = await crGuest(
          [
            "kernel",
            "--kernel",
            c.kernel,
            "--check-config",
            "--config-out",
            out,
            ...c.extra.flatMap((f) => ["--fragment", f]),
            "--json",
          ],
          15 * 60_000,
        );
        const doc = JSON.parse(r.stdout);
        const version = /linux (\d+\.\d+\.\d+) \(/.exec(r.stderr)?.[1];
        const source = readdirSync(join(testCacheDir(), "sources")).find((d) =>
          d.startsWith(`linux-${version}-`),
        );
        expect(source, r.stderr).toBeDefined();
        const kconfig = parseKernelKconfig(join(testCacheDir(), "sources", source!, "tree"));
        // Every Kconfig symbol the kernel requirements map names exists in this pinned kernel too.
        expect(() => symbolFacts(kconfig, allSymbols(data.kernelRequirements)), version).not.toThrow();
        const requested = mergeFragments([...defaults, ...c.extra.map(loadFragmentFile)]);
        const final = parseDotConfig(readFileSync(out, "utf8"));
        // Both ways: what the reader says lands did land, what it says cannot land did not.
        expect(referenceDisagreements(requested, final, kconfig), `${c.kernel} ${c.extra.join(" ")}`).toEqual(
          [],
        );
        const missed = doc.symbols
          .filter((x: { status: string }) => x.status === "mismatch")
          .map((x: { symbol: string }) => x.symbol);
        expect(missed.length > 0, "the PROC_FS case must judge symbols that did not land").toBe(
          c.extra.length > 0,
        );
      }
    },
  );
});
