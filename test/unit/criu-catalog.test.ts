import { describe, expect, it } from "vitest";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  criuFrom,
  firstCriuWith,
  guestSuiteFor,
  hasFact,
  loadCriuCatalog,
  resolveCriuVersion,
  suitesFrom,
} from "../../scripts/data/criu-catalog.js";
import { applyPatches } from "../../scripts/criu/patches.js";
import { loadPatchCatalog, selectPatches } from "../../scripts/data/criu-patches.js";
import { diagnose, formatFindings, type DoctorInput, type Finding } from "../../scripts/data/doctor.js";
import type { BuildCondition } from "../../scripts/data/kernel-findings.js";
import { readDotConfig } from "../../scripts/data/fragments.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { run } from "../../scripts/lib/exec.js";
import { UserError } from "../../scripts/lib/errors.js";
import { tempDir } from "../helpers/temp.js";

const catalog = loadCriuCatalog();
describe("CRIU catalog", () => {
  it("has every version the pipeline supports", () => {
    for (const v of ["3.17.1", "3.18", "3.19", "4.0", "4.1", "4.1.1", "4.2", "4.2.1"])
      expect(catalog.versions.has(v), v).toBe(true);
  });
  it("resolves a series to its newest release", () => {
    expect(resolveCriuVersion("4.1", catalog).version).toBe("4.1.1");
    expect(resolveCriuVersion("4.2", catalog).version).toBe("4.2.1");
    expect(resolveCriuVersion("4.2.0", catalog).version).toBe("4.2"); // a full version is exact
    expect(resolveCriuVersion("3.19", catalog).version).toBe("3.19");
    expect(resolveCriuVersion("3.17", catalog).version).toBe("3.17.1");
    expect(resolveCriuVersion("latest", catalog).version).toBe("4.2.1");
  });
  it("rejects an unknown version listing the known ones", () => {
    expect(() => resolveCriuVersion("3.16", catalog)).toThrow(/unknown CRIU version '3.16'/);
    try {
      resolveCriuVersion("5.0", catalog);
    } catch (err) {
      expect((err as { hint: string }).hint).toMatch(/3\.17\.1.*4\.2\.1|4\.2\.1.*3\.17\.1/);
    }
  });
  it("answers facts by version range", () => {
    expect(hasFact(catalog, "membarrier_get_registrations_probe", "3.17.1")).toBe(false);
    expect(hasFact(catalog, "membarrier_get_registrations_probe", "3.19")).toBe(true);
    expect(hasFact(catalog, "membarrier_get_registrations_probe", "4.2.1")).toBe(true);
    expect(suitesFrom(catalog, "trixie")).toEqual(["trixie", "sid"]);
  });

  it("answers kernel-aware facts by both ranges, and never for an unknown kernel", () => {
    const fact = "membarrier_registrations_without_get_registrations";
    expect(hasFact(catalog, fact, "4.1.1", "6.1.176")).toBe(true);
    expect(hasFact(catalog, fact, "4.1.1", "6.12.117+deb13-cloud-amd64")).toBe(false);
    expect(hasFact(catalog, fact, "3.17.1", "6.1.176")).toBe(false);
    expect(hasFact(catalog, fact, "4.1.1")).toBe(false);
    expect(hasFact(catalog, "vdso_vvar_vclock_unknown", "3.19", "7.1.8")).toBe(true);
    expect(hasFact(catalog, "vdso_vvar_vclock_unknown", "3.19", "6.12.107")).toBe(false);
    expect(hasFact(catalog, "vdso_vvar_vclock_unknown", "4.1", "7.1.8")).toBe(false);
    // A fact without a kernel range holds whatever the kernel.
    expect(hasFact(catalog, "restores_membarrier_registration", "4.1.1", "6.1.176")).toBe(true);
  });
});

describe("the first CRIU with a fact (what a fix text's 'CRIU >= X' comes from)", () => {
  it("is the oldest catalog version from which on every version has the fact, or lacks a fixed bug", () => {
    expect(firstCriuWith(catalog, "membarrier_get_registrations_probe")).toBe("3.19");
    expect(firstCriuWith(catalog, "memfd_hugetlb_enosys_fatal", false)).toBe("3.18");
    expect(firstCriuWith(catalog, "nftables_probe_fatal", false)).toBe("4.0");
    expect(criuFrom(catalog, "vdso_vvar_vclock_unknown", false)).toBe("CRIU >= 4.1");
    expect(criuFrom(catalog, "sockopt_passcred_refused", false)).toBe("CRIU >= 4.2");
  });

  it("follows the catalog, skips a version the fact holds for in between, and refuses a fact the newest lacks", () => {
    const c = {
      ...catalog,
      facts: {
        middle: { criu: ">=3.18.0 <4.1.0", says: "" },
        gap: { criu: ">=3.18.0 <3.19.0 || >=4.1.0", says: "" },
      },
    };
    expect(firstCriuWith(c, "middle", false)).toBe("4.1");
    expect(firstCriuWith(c, "gap")).toBe("4.1");
    expect(() => firstCriuWith(c, "middle")).toThrow(/newest catalog CRIU lacks fact 'middle'/);
    expect(() => firstCriuWith(c, "nope")).toThrow(/unknown CRIU fact 'nope'/);
  });
});

describe("CRIU patches", () => {
  const patches = loadPatchCatalog();
  it("selects the membarrier patch for >= 3.19 and refuses it before", () => {
    const [p] = selectPatches(["membarrier-probe-nonfatal"], "4.1.1", patches);
    expect(p.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(() => selectPatches(["membarrier-probe-nonfatal"], "3.17.1", patches)).toThrow(
      /applies to CRIU >=3.19.0, not to 3.17.1/,
    );
    expect(() => selectPatches(["membarier"], "4.1.1", patches)).toThrow(
      /did you mean 'membarrier-probe-nonfatal'/,
    );
  });

  it("dry-runs before applying: a tree the patch does not fit is left untouched", async () => {
    const tree = tempDir("crg-patch-");
    mkdirSync(join(tree, "criu"));
    const unrelated = "int main(void) { return 0; }\n";
    writeFileSync(join(tree, "criu/kerndat.c"), unrelated);
    const [p] = selectPatches(["membarrier-probe-nonfatal"], "4.1.1", patches);
    await expect(applyPatches(tree, [p], "4.1.1")).rejects.toThrow(/does not apply to CRIU 4.1.1/);
    const after = await run(["cat", join(tree, "criu/kerndat.c")], { timeoutMs: 5000 });
    expect(after.stdout).toBe(unrelated);
  });
});

describe("doctor", () => {
  it("writes no CRIU version range by hand: each comes from the catalog fact its rule rests on, or the map", () => {
    for (const file of ["scripts/data/doctor.ts", "scripts/data/kernel-findings.ts"]) {
      const source = readFileSync(join(REPO_ROOT, file), "utf8");
      const code = source.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ""); // comments may cite versions
      expect(code.match(/CRIU [<>]=? ?\d|[<>]=? ?\d+\.\d+/g) ?? [], file).toEqual([]);
    }
  });

  // The .config cr-guest's default fragments give linux 6.12.107 (trimmed to its set lines).
  const real = readDotConfig(join(REPO_ROOT, "test/fixtures/kernel-config/linux-6.12.107-cr-guest.config"));
  const without = (...symbols: string[]) =>
    new Map([...real.values].filter(([k]) => !symbols.includes(k.replace(/^CONFIG_/, ""))));
  const data = repoData();
  const fragments = ["guest-base", "checkpoint-restore"].map((n) => data.fragments.get(n)!);
  const base = {
    catalog,
    requirements: data.kernelRequirements,
    guestSuite: "trixie",
    criuBuild: ["compat"] as BuildCondition[],
    patches: [] as string[],
    kernelVersion: real.version,
  };
  const on = (criu: string, kernelConfig: Map<string, string>, more: Partial<DoctorInput> = {}) =>
    diagnose({ ...base, criu: resolveCriuVersion(criu, catalog), kernelConfig, ...more });
  const fails = (f: Finding[]) => f.filter((x) => x.severity === "fail").map((x) => x.id);

  it("finds nothing that fails on the real .config of the default fragments, for every catalog CRIU", () => {
    expect(real.version).toBe("6.12.107");
    for (const v of catalog.versions.keys()) {
      expect(fails(on(v, real.values)), v).toEqual([]);
      expect(fails(on(v, real.values, { criuBuild: ["compat", "libnftables"] })), v).toEqual([]);
    }
  });

  it("warns of exactly the features that failed in the guest runs of that kernel (static CRIU 4.1.1 and 4.2.1)", () => {
    // The failing feature/ tests of the runs on this .config's kernel (cache key e78f973ae98cc8d3,
    // results.json of runs 6b3f40fc112be80d and 65a3e0e0c4e62f29, 2026-12-06).
    const failedIn: Record<string, string[]> = {
      "4.1.1": ["apparmor_stacking", "loginuid", "network_lock_nftables", "nftables"],
      "4.2.1": [
        "apparmor_stacking",
        "loginuid",
        "network_lock_nftables",
        "nftables",
        "pagemap_scan_guard_pages",
        "timer_cr_ids",
      ],
    };
    for (const [v, failed] of Object.entries(failedIn)) {
      const f = on(v, real.values);
      expect(
        f
          .filter((x) => x.test?.startsWith("feature/"))
          .map((x) => x.test!.slice(8))
          .sort(),
        v,
      ).toEqual(failed);
    }
  });

  it("a config without FILE_LOCKING: every CRIU command fails at start, named by its probe and symbol", () => {
    const f = on("4.1", without("FILE_LOCKING"));
    const probe = f.find((x) => x.id === "probe/kerndat_fdinfo_has_lock")!;
    expect(probe).toMatchObject({ severity: "fail", test: "criu-check", expect: "FAIL" });
    expect(probe.what).toBe(
      'CRIU 4.1.1: every CRIU command will fail at start ("kerndat_fdinfo_has_lock failed when initializing kerndat"): start-up probe kerndat_fdinfo_has_lock needs FILE_LOCKING, not built into this kernel',
    );
    expect(probe.why).toMatch(
      /^criu\/kerndat\.c:kerndat_fdinfo_has_lock@v4\.2 \(CRIU >= 3\.17\.1\): opens \/proc\/locks/,
    );
    expect(probe.fix).toBe("set CONFIG_FILE_LOCKING=y in a kernel fragment");
    // What CRIU would then lose is said too; and nothing about scenarios CRIU cannot reach.
    expect(f.find((x) => x.id === "feature/fdinfo_lock")).toMatchObject({
      severity: "warn",
      test: "feature/fdinfo_lock",
    });
  });

  it("a config without EXPORTFS fails plain criu check, but CRIU starts: the scenario predictions stay", () => {
    const f = on("4.1", without("EXPORTFS"), { kernelVersion: "6.1.176" });
    expect(fails(f)).toEqual(["check/check_fdinfo_ext"]);
    expect(f[0].what).toBe(
      "CRIU 4.1.1: plain criu check will fail: its check check_fdinfo_ext needs EXPORTFS, not built into this kernel",
    );
    expect(f[0]).toMatchObject({ test: "criu-check", expect: "FAIL" });
    expect(f.find((x) => x.id === "membarrier-before-6.3")).toBeDefined();
  });

  it("a feature the config lacks is a warning naming its test; the fix names the default fragment's line", () => {
    const f = on("4.2.1", without("USERFAULTFD"), { fragments });
    expect(fails(f)).toEqual([]);
    const uffd = f.find((x) => x.id === "feature/uffd")!;
    expect(uffd).toMatchObject({ severity: "warn", test: "feature/uffd", expect: "FAIL" });
    expect(uffd.fix).toMatch(
      /^set CONFIG_USERFAULTFD=y in a kernel fragment \(the default fragments do: kernel-fragments\/checkpoint-restore\.conf:\d+\)$/,
    );
    expect(f.find((x) => x.id === "feature/uffd-noncoop")?.severity).toBe("warn");
  });

  it("CRIU >= 3.19 on a kernel without MEMBARRIER fails with CRIU's own message; the patch turns it into a warning", () => {
    const noMembarrier = without("MEMBARRIER", "RSEQ");
    const f = on("4.1", noMembarrier);
    const m = f.find((x) => x.id === "probe/kerndat_has_membarrier_get_registrations")!;
    expect(m.severity).toBe("fail");
    expect(m.what).toContain('"kerndat_has_membarrier_get_registrations failed when initializing kerndat"');
    expect(m.fix).toBe(
      "set CONFIG_MEMBARRIER=y in a kernel fragment, or build CRIU with the membarrier-probe-nonfatal patch (--patch membarrier-probe-nonfatal)",
    );
    const patched = on("4.1", noMembarrier, { patches: ["membarrier-probe-nonfatal"] });
    expect(fails(patched)).toEqual([]);
    expect(patched.find((x) => x.id === "probe/kerndat_has_membarrier_get_registrations")).toMatchObject({
      severity: "warn",
      fix: "set CONFIG_MEMBARRIER=y for full fidelity",
    });
    expect(
      patched.find((x) => x.id === "probe/kerndat_has_membarrier_get_registrations")?.test,
    ).toBeUndefined();
    expect(fails(on("3.17.1", noMembarrier))).toEqual([]);
  });

  it("takes each fix's 'CRIU >= X' from the map and the catalog", () => {
    const hugetlb = on("3.17.1", without("HUGETLBFS")).find(
      (x) => x.id === "probe/kerndat_has_memfd_hugetlb",
    )!;
    expect(hugetlb.what).toContain('"kerndat_has_memfd_hugetlb failed when initializing kerndat"');
    expect(hugetlb.fix).toBe("set CONFIG_HUGETLBFS=y in a kernel fragment, or use CRIU >= 3.18");
    expect(fails(on("3.18", without("HUGETLBFS")))).toEqual([]);
    // A CRIU < 4.0 linked with libnftables needs nf_tables at start; the static build and 4.0 do not.
    const nft = (criu: string, criuBuild: BuildCondition[]) =>
      on(criu, without("NF_TABLES_INET"), { criuBuild }).find(
        (x) => x.id === "probe/kerndat_has_nftables_concat",
      );
    expect(nft("3.19", ["compat", "libnftables"])?.fix).toBe(
      "set CONFIG_NF_TABLES_INET=y in a kernel fragment, or use a CRIU built without libnftables (criu.link: static), or use CRIU >= 4.0",
    );
    expect(nft("3.19", ["compat"])).toBeUndefined();
    expect(nft("4.0", ["compat", "libnftables"])).toBeUndefined();
    const lost = on("3.17.1", real.values, { kernelVersion: "6.1.176" });
    expect(lost.find((x) => x.id === "membarrier-registration")?.fix).toBe("use CRIU >= 3.19");
    const vdso = on("4.0", real.values, { kernelVersion: "7.1.8" });
    expect(vdso.find((x) => x.id === "vdso-vvar-vclock")?.fix).toBe(
      "use CRIU >= 4.1, or a guest kernel < 6.13",
    );
    expect(vdso.find((x) => x.id === "sockopt-passcred")?.fix).toBe(
      "use CRIU >= 4.2, or a guest kernel < 6.16",
    );
  });

  it("a trixie-linked CRIU 4.x in a bookworm userland will not start; static is fine", () => {
    const f = diagnose({
      ...base,
      criu: resolveCriuVersion("4.1.1", catalog),
      guestSuite: "bookworm",
      binarySuite: "trixie",
    });
    expect(f.find((x) => x.id === "glibc")?.what).toContain("will not start in a bookworm userland");
    expect(diagnose({ ...base, criu: resolveCriuVersion("4.1.1", catalog), guestSuite: "bookworm" })).toEqual(
      [],
    );
  });

  it("formats the findings with the count of what will fail", () => {
    const text = formatFindings(on("4.1", without("FILE_LOCKING", "EXPORTFS")), "CRIU 4.1.1");
    expect(text).toMatch(/^ {2}FAIL CRIU 4\.1\.1: every CRIU command will fail at start/m);
    expect(text).toMatch(/^2 problem\(s\) that will fail$/m);
  });

  describe("predictions that depend on the kernel version", () => {
    const at = (criu: string, kernelVersion: string) => on(criu, real.values, { kernelVersion });
    it("CRIU < 4.1 on a kernel with [vvar_vclock] will not start; 4.1 will, and 6.12 is fine", () => {
      const f = at("3.19", "7.1.8").find((x) => x.id === "vdso-vvar-vclock")!;
      expect(f).toMatchObject({ severity: "fail", test: "criu-check", expect: "FAIL" });
      expect(f.fix).toContain("< 6.13");
      expect(at("4.1.1", "7.1.8").find((x) => x.id === "vdso-vvar-vclock")).toBeUndefined();
      expect(at("3.19", "6.12.107").find((x) => x.id === "vdso-vvar-vclock")).toBeUndefined();
      // The map's vDSO probe says the same through the catalog's fact, not a second finding.
      expect(at("3.19", "7.1.8").filter((x) => x.id.startsWith("probe/"))).toEqual([]);
    });
    it("on 6.1 CRIU >= 3.19 is predicted to start and keep registrations; 3.17.1 to lose them", () => {
      const f = at("4.1.1", "6.1.176");
      expect(f.find((x) => x.id === "membarrier-before-6.3")).toMatchObject({
        severity: "info",
        test: "membarrier/registration",
        expect: "PASS",
      });
      expect(fails(f)).toEqual([]);
      expect(at("4.1.1", "6.12.107").find((x) => x.id === "membarrier-before-6.3")).toBeUndefined();
      // A lost registration is a loss, not a refusal: 3.17.1 still builds without --force.
      expect(at("3.17.1", "6.1.176").find((x) => x.id === "membarrier-registration")).toMatchObject({
        severity: "warn",
        expect: "FAIL",
      });
    });
    it("a TCP diag handler built as a module (a distribution kernel) predicts the TCP dump failing", () => {
      const cloud = new Map([...real.values, ["CONFIG_INET_DIAG", "m"]]);
      const f = on("4.2.1", cloud, { kernelVersion: "6.12.117+deb13-cloud-amd64" });
      expect(f.find((x) => x.id === "inet-diag-module")).toMatchObject({
        severity: "warn",
        test: "tcp-established",
        expect: "FAIL",
      });
      expect(at("4.2.1", "6.12.107").find((x) => x.id === "inet-diag-module")).toBeUndefined();
    });
    it("predicts nothing about registrations where CRIU will not start", () => {
      const f = at("3.17.1", "7.1.8");
      expect(f.find((x) => x.id === "vdso-vvar-vclock")).toBeDefined();
      expect(f.find((x) => x.id === "membarrier-registration")).toBeUndefined();
    });
  });
});

describe("guest suite", () => {
  const defaults = { guest_suite: "", static_guest_suite: "trixie", static_build_suite: "bookworm" };
  // Written out, so a catalog change that moves a version's suite shows here.
  const expected: Record<string, { static: string; dynamic: string; "debian-binary": string }> = {
    "3.17.1": { static: "trixie", dynamic: "bookworm", "debian-binary": "bookworm" },
    "3.18": { static: "trixie", dynamic: "bookworm", "debian-binary": "bookworm" },
    "3.19": { static: "trixie", dynamic: "bookworm", "debian-binary": "bookworm" },
    "4.0": { static: "trixie", dynamic: "trixie", "debian-binary": "trixie" },
    "4.1": { static: "trixie", dynamic: "trixie", "debian-binary": "trixie" },
    "4.1.1": { static: "trixie", dynamic: "trixie", "debian-binary": "trixie" },
    "4.2": { static: "trixie", dynamic: "trixie", "debian-binary": "trixie" },
    "4.2.1": { static: "trixie", dynamic: "sid", "debian-binary": "sid" },
  };
  it("covers every catalog version", () => {
    expect(Object.keys(expected).sort()).toEqual([...catalog.versions.keys()].sort());
  });
  for (const [version, want] of Object.entries(expected))
    it(`of CRIU ${version}: static in the configured default, dynamic and Debian's binary in min_suite`, () => {
      const entry = catalog.versions.get(version)!;
      for (const kind of ["static", "dynamic", "debian-binary"] as const)
        expect(guestSuiteFor(entry, catalog, kind, defaults), kind).toBe(want[kind]);
      // A static build never takes min_suite: another default moves every version with it.
      expect(guestSuiteFor(entry, catalog, "static", { ...defaults, static_guest_suite: "sid" })).toBe("sid");
      expect(guestSuiteFor(entry, catalog, "static", { ...defaults, static_guest_suite: "bookworm" })).toBe(
        "bookworm",
      );
      // criu.guest_suite wins for every kind (the doctor judges a binary in an older suite).
      for (const kind of ["static", "dynamic", "debian-binary"] as const)
        expect(guestSuiteFor(entry, catalog, kind, { ...defaults, guest_suite: "sid" }), kind).toBe("sid");
    });
  it("Debian's binary takes its package's suite when that is later than min_suite", () => {
    const entry = { version: "9.9", min_suite: "bookworm", binary: { version: "9.9-1", suite: "trixie" } };
    expect(guestSuiteFor(entry, catalog, "debian-binary", defaults)).toBe("trixie");
    expect(guestSuiteFor(entry, catalog, "dynamic", defaults)).toBe("bookworm");
  });
  it("refuses a static build in a suite older than the one it is built in (exit 2, naming the key)", () => {
    const entry = catalog.versions.get("4.2.1")!;
    const older = { ...defaults, static_build_suite: "trixie", guest_suite: "bookworm" };
    const err = (() => {
      try {
        guestSuiteFor(entry, catalog, "static", older);
      } catch (e) {
        return e as UserError;
      }
    })();
    expect(err).toBeInstanceOf(UserError);
    expect(err!.exitCode).toBe(2);
    expect(err!.message).toMatch(
      /static CRIU 4\.2\.1 built in trixie \(glibc 2\.41\) does not run in bookworm \(glibc 2\.36\)/,
    );
    expect(err!.message).toContain("criu.guest_suite");
    expect(err!.hint).toMatch(/criu\.guest_suite to trixie or sid/);
    // The same through the default names the default's key.
    expect(() => guestSuiteFor(entry, catalog, "static", { ...defaults, static_build_suite: "sid" })).toThrow(
      /criu\.static_guest_suite asks for/,
    );
    // A dynamic build is made in its guest suite: nothing to refuse.
    expect(guestSuiteFor(entry, catalog, "dynamic", older)).toBe("bookworm");
  });
  it("names the key of an unknown suite", () => {
    const entry = catalog.versions.get("4.1.1")!;
    expect(() => guestSuiteFor(entry, catalog, "dynamic", { ...defaults, guest_suite: "buster" })).toThrow(
      /unknown guest suite 'buster' \(criu\.guest_suite\)/,
    );
    expect(() =>
      guestSuiteFor(entry, catalog, "static", { ...defaults, static_guest_suite: "trixi" }),
    ).toThrow(/'trixi' \(criu\.static_guest_suite\)/);
    expect(() =>
      guestSuiteFor(entry, catalog, "static", { ...defaults, static_build_suite: "jessie" }),
    ).toThrow(/'jessie' \(criu\.static_build_suite\)/);
  });
});
