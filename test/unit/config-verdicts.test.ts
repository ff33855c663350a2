/**
 * What a .config gives each CRIU before a build (issue 28 point 4): the verdict line and its
 * --json document, for the CRIU a command plans or for every catalog version, on the real
 * .config of the default fragments (trimmed to its set lines) and that config minus a symbol.
 * The doctor's CLI is run on the same file: a config without FILE_LOCKING fails it.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configVerdicts } from "../../scripts/criu/config-verdicts.js";
import { resolveAndPlanCriu } from "../../scripts/criu/stage.js";
import { readDotConfig } from "../../scripts/data/fragments.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { formatVerdict, judgeConfig, verdictDocument } from "../../scripts/data/requirement-check.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { crGuest } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";
import { testConfig } from "../helpers/test-cache.js";

const FIXTURE = join(REPO_ROOT, "test/fixtures/kernel-config/linux-6.12.107-cr-guest.config");
const real = readDotConfig(FIXTURE);
const without = (...symbols: string[]) =>
  new Map([...real.values].filter(([k]) => !symbols.includes(k.replace(/^CONFIG_/, ""))));
const kernel = (config = real.values) => ({ config, version: real.version });
const staticBuild = (version: string, patches: string[] = []) => ({
  version,
  build: ["compat" as const],
  patches,
});
const judge = (config: Map<string, string>, version = "4.1.1", patches: string[] = []) =>
  judgeConfig(repoData().kernelRequirements, kernel(config), staticBuild(version, patches));

describe("the verdict of a .config for a CRIU", () => {
  it("counts what the default fragments give CRIU 4.1.1: criu check passes, the features a static build lacks", () => {
    expect(formatVerdict(judge(real.values))).toBe(
      "CRIU 4.1.1 with this .config: criu check passes; 38/42 features; missing: loginuid (AUDIT), nftables (a CRIU built with libnftables), apparmor_stacking (SECURITY_APPARMOR), network_lock_nftables (a CRIU built with libnftables)",
    );
  });

  it("without FILE_LOCKING: every CRIU command fails at start, with the probe and the symbol; --json holds the counts", () => {
    const v = judge(without("FILE_LOCKING"));
    expect(v.starts).toBe(false);
    const doc = verdictDocument(v);
    expect(doc.line).toBe(
      "CRIU 4.1.1 with this .config: every CRIU command fails at start (kerndat_fdinfo_has_lock (FILE_LOCKING)); 0/42 features",
    );
    expect(doc).toMatchObject({
      criu: "4.1.1",
      starts: false,
      check_passes: false,
      features: { ok: 0, total: 42 },
      fatal: [{ name: "kerndat_fdinfo_has_lock", needs: ["FILE_LOCKING"] }],
    });
  });

  it("without USERFAULTFD: criu check still passes, uffd and uffd-noncoop are missing", () => {
    const line = formatVerdict(judge(without("USERFAULTFD")));
    expect(line).toMatch(
      /criu check passes; 36\/42 features; missing: .*uffd \(USERFAULTFD\), uffd-noncoop \(USERFAULTFD\)/,
    );
  });

  it("without EXPORTFS: plain criu check fails on check_fdinfo_ext", () => {
    const v = judge(without("EXPORTFS"));
    expect(v.starts).toBe(true);
    expect(verdictDocument(v).plain).toEqual([{ name: "check_fdinfo_ext", needs: ["EXPORTFS"] }]);
    expect(formatVerdict(v)).toMatch(/criu check fails \(check_fdinfo_ext \(EXPORTFS\)\)/);
  });

  it("a patch that tolerates the fatal membarrier probe: CRIU starts, and the line says thanks to what", () => {
    const v = judge(without("MEMBARRIER", "RSEQ"), "4.1.1", ["membarrier-probe-nonfatal"]);
    expect(v.starts).toBe(true);
    expect(verdictDocument(v).tolerated).toEqual([
      {
        name: "kerndat_has_membarrier_get_registrations",
        needs: ["MEMBARRIER"],
        patches: ["membarrier-probe-nonfatal"],
      },
    ]);
    expect(formatVerdict(judge(without("MEMBARRIER", "RSEQ")))).toMatch(/every CRIU command fails at start/);
  });
});

describe("configVerdicts: which CRIU versions a command judges", () => {
  it("with no CRIU planned: every catalog version, oldest first, as the configured link mode builds it", () => {
    const config = testConfig();
    const vs = configVerdicts(config, kernel());
    expect(vs.map((v) => v.criu)).toEqual(["3.17.1", "3.18", "3.19", "4.0", "4.1", "4.1.1", "4.2", "4.2.1"]);
    expect(vs.every((v) => v.checkPasses)).toBe(true);
    // The static build lacks libnftables: its nftables features are missing in each.
    expect(vs.every((v) => v.features.missing.some((x) => x.req.name === "nftables"))).toBe(true);
    const dynamic = configVerdicts(testConfig("criu.link=dynamic"), kernel());
    expect(dynamic.some((v) => v.features.missing.some((x) => x.req.name === "nftables"))).toBe(false);
  });

  it("with a planned CRIU: that one, with its patches", () => {
    const config = testConfig('criu.version="4.1"', 'criu.patches=["membarrier-probe-nonfatal"]');
    const plan = resolveAndPlanCriu(config, { strict: true });
    const [v, ...rest] = configVerdicts(config, kernel(without("MEMBARRIER", "RSEQ")), plan);
    expect(rest).toEqual([]);
    expect(v.criu).toBe("4.1.1");
    expect(v.starts).toBe(true);
    expect(v.tolerated.map((x) => x.req.name)).toEqual(["kerndat_has_membarrier_get_registrations"]);
  });
});

describe("cr-guest doctor --kernel-config", () => {
  it(
    "fails a config without FILE_LOCKING for CRIU 4.1 (exit 1): every CRIU command will fail at start; --json holds the counts",
    { timeout: 60_000 },
    async () => {
      const file = join(tempDir("crg-doctor-config-"), "config");
      writeFileSync(
        file,
        `# Linux/x86_64 6.12.107 Kernel Configuration\n${[...without("FILE_LOCKING")].map(([k, v]) => `${k}=${v}`).join("\n")}\n`,
      );
      const r = await crGuest(["doctor", "--criu", "4.1", "--kernel-config", file]);
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stdout).toContain(
        "CRIU 4.1.1 with this .config: every CRIU command fails at start (kerndat_fdinfo_has_lock (FILE_LOCKING)); 0/42 features",
      );
      expect(r.stdout).toMatch(
        /FAIL CRIU 4\.1\.1: every CRIU command will fail at start \("kerndat_fdinfo_has_lock failed/,
      );
      const j = await crGuest(["doctor", "--criu", "4.1", "--kernel-config", file, "--json"]);
      expect(j.exitCode).toBe(1);
      const doc = JSON.parse(j.stdout);
      expect(doc.passed).toBe(false);
      expect(doc.verdicts).toHaveLength(1);
      expect(doc.verdicts[0]).toMatchObject({ criu: "4.1.1", starts: false, features: { ok: 0, total: 42 } });
      const good = await crGuest(["doctor", "--criu", "4.1", "--kernel-config", FIXTURE, "--json"]);
      expect(good.exitCode, good.stderr).toBe(0);
      expect(JSON.parse(good.stdout).verdicts[0]).toMatchObject({
        check_passes: true,
        features: { ok: 38, total: 42 },
      });
    },
  );
});
