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
import { diagnose, formatFindings } from "../../scripts/data/doctor.js";
import { loadYamlFile } from "../../scripts/lib/yaml-file.js";
import { CRIU_CATALOG_FILE, REPO_ROOT } from "../../scripts/lib/paths.js";
import { run } from "../../scripts/lib/exec.js";
import { UserError } from "../../scripts/lib/errors.js";
import { tempDir } from "../helpers/temp.js";

const catalog = loadCriuCatalog();
const kernelOptions = (
  loadYamlFile(CRIU_CATALOG_FILE).value as {
    kernel_options: { required: Record<string, string>; optional: Record<string, string> };
  }
).kernel_options;

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
  it("writes no CRIU version range by hand: each comes from the catalog fact its rule rests on", () => {
    const source = readFileSync(join(REPO_ROOT, "scripts/data/doctor.ts"), "utf8");
    const code = source.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ""); // comments may cite versions
    expect(code.match(/CRIU [<>]=? ?\d|[<>]=? ?\d+\.\d+/g) ?? []).toEqual([]);
  });

  it("takes each fix's 'CRIU >= X' from the catalog", () => {
    const noHugetlb = new Map([["CONFIG_CHECKPOINT_RESTORE", "y"]]);
    const old = diagnose({
      ...base,
      criu: resolveCriuVersion("3.17.1", catalog),
      kernelConfig: noHugetlb,
      withNftables: true,
    });
    expect(old.find((x) => x.id === "memfd-hugetlb")?.fix).toMatch(/or use CRIU >= 3\.18$/);
    expect(old.find((x) => x.id === "nftables-probe")?.fix).toMatch(/or CRIU >= 4\.0$/);
    const lost = diagnose({
      ...base,
      criu: resolveCriuVersion("3.17.1", catalog),
      kernelConfig: new Map([
        ["CONFIG_MEMBARRIER", "y"],
        ["CONFIG_HUGETLBFS", "y"],
        ["CONFIG_NF_TABLES_INET", "y"],
      ]),
    });
    expect(lost.find((x) => x.id === "membarrier-registration")?.fix).toBe("use CRIU >= 3.19");
    const vdso = diagnose({ ...base, criu: resolveCriuVersion("4.0", catalog), kernelVersion: "7.1.8" });
    expect(vdso.find((x) => x.id === "vdso-vvar-vclock")?.fix).toBe(
      "use CRIU >= 4.1, or a guest kernel < 6.13",
    );
    expect(vdso.find((x) => x.id === "sockopt-passcred")?.fix).toBe(
      "use CRIU >= 4.2, or a guest kernel < 6.16",
    );
  });

  const noMembarrier = new Map([
    ["CONFIG_CHECKPOINT_RESTORE", "y"],
    ["CONFIG_PROC_FS", "y"],
  ]);
  const base = { catalog, kernelOptions, guestSuite: "trixie", patches: [] as string[] };

  it("CRIU >= 3.19 on a kernel without MEMBARRIER fails, and the patch turns it into a warning", () => {
    const f = diagnose({ ...base, criu: resolveCriuVersion("4.1", catalog), kernelConfig: noMembarrier });
    const m = f.find((x) => x.id === "membarrier-probe")!;
    expect(m.severity).toBe("fail");
    expect(m.what).toContain("kerndat_has_membarrier_get_registrations failed");
    expect(m.fix).toContain("CONFIG_MEMBARRIER");
    const patched = diagnose({
      ...base,
      criu: resolveCriuVersion("4.1", catalog),
      kernelConfig: noMembarrier,
      patches: ["membarrier-probe-nonfatal"],
    });
    expect(patched.find((x) => x.id === "membarrier-probe")).toBeUndefined();
    expect(patched.find((x) => x.id === "membarrier-patched")?.severity).toBe("warn");
    const old = diagnose({
      ...base,
      criu: resolveCriuVersion("3.17.1", catalog),
      kernelConfig: noMembarrier,
    });
    expect(old.find((x) => x.id.startsWith("membarrier"))).toBeUndefined();
  });

  it("CRIU 3.17.1 on a kernel without HUGETLBFS fails (memfd_create ENOSYS is fatal before 3.18)", () => {
    const old = diagnose({
      ...base,
      criu: resolveCriuVersion("3.17.1", catalog),
      kernelConfig: noMembarrier,
    });
    const m = old.find((x) => x.id === "memfd-hugetlb")!;
    expect(m.severity).toBe("fail");
    expect(m.what).toContain("kerndat_has_memfd_hugetlb failed");
    expect(m.fix).toContain("CONFIG_HUGETLBFS");
    const withHugetlb = new Map([...noMembarrier, ["CONFIG_HUGETLBFS", "y"]]);
    expect(
      diagnose({ ...base, criu: resolveCriuVersion("3.17.1", catalog), kernelConfig: withHugetlb }).find(
        (x) => x.id === "memfd-hugetlb",
      ),
    ).toBeUndefined();
    expect(
      diagnose({ ...base, criu: resolveCriuVersion("3.18", catalog), kernelConfig: noMembarrier }).find(
        (x) => x.id === "memfd-hugetlb",
      ),
    ).toBeUndefined();
  });

  it("CRIU < 4.0 with libnftables on a kernel without nf_tables fails; static builds and 4.x do not", () => {
    const f = diagnose({
      ...base,
      criu: resolveCriuVersion("3.17.1", catalog),
      kernelConfig: noMembarrier,
      withNftables: true,
    });
    expect(f.find((x) => x.id === "nftables-probe")?.what).toContain("kerndat_has_nftables_concat failed");
    expect(
      diagnose({
        ...base,
        criu: resolveCriuVersion("3.17.1", catalog),
        kernelConfig: noMembarrier,
        withNftables: false,
      }).find((x) => x.id === "nftables-probe"),
    ).toBeUndefined();
    expect(
      diagnose({
        ...base,
        criu: resolveCriuVersion("4.1.1", catalog),
        kernelConfig: noMembarrier,
        withNftables: true,
      }).find((x) => x.id === "nftables-probe"),
    ).toBeUndefined();
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

  it("lists required kernel options that are missing, and only those", () => {
    const f = diagnose({ ...base, criu: resolveCriuVersion("3.17.1", catalog), kernelConfig: noMembarrier });
    const fails = f.filter((x) => x.severity === "fail").map((x) => x.id);
    expect(fails).toContain("kernel-FHANDLE");
    expect(fails).not.toContain("kernel-CHECKPOINT_RESTORE");
    expect(formatFindings(f, "CRIU 3.17.1")).toMatch(/FAIL kernel lacks CONFIG_FHANDLE/);
  });

  describe("predictions that depend on the kernel version", () => {
    const withMembarrier = new Map([...noMembarrier, ["CONFIG_MEMBARRIER", "y"], ["CONFIG_HUGETLBFS", "y"]]);
    const at = (criu: string, kernelVersion: string) =>
      diagnose({
        ...base,
        criu: resolveCriuVersion(criu, catalog),
        kernelConfig: withMembarrier,
        kernelVersion,
      });
    it("CRIU < 4.1 on a kernel with [vvar_vclock] will not start; 4.1 will, and 6.12 is fine", () => {
      const f = at("3.19", "7.1.8").find((x) => x.id === "vdso-vvar-vclock")!;
      expect(f).toMatchObject({ severity: "fail", test: "criu-check", expect: "FAIL" });
      expect(f.fix).toContain("< 6.13");
      expect(at("4.1.1", "7.1.8").find((x) => x.id === "vdso-vvar-vclock")).toBeUndefined();
      expect(at("3.19", "6.12.107").find((x) => x.id === "vdso-vvar-vclock")).toBeUndefined();
    });
    it("on 6.1 CRIU >= 3.19 is predicted to start and keep registrations; 3.17.1 to lose them", () => {
      const f = at("4.1.1", "6.1.176");
      expect(f.find((x) => x.id === "membarrier-before-6.3")).toMatchObject({
        severity: "info",
        test: "membarrier/registration",
        expect: "PASS",
      });
      expect(f.filter((x) => x.severity === "fail").map((x) => x.id)).not.toContain("membarrier-probe");
      expect(at("4.1.1", "6.12.107").find((x) => x.id === "membarrier-before-6.3")).toBeUndefined();
      // A lost registration is a loss, not a refusal: 3.17.1 still builds without --force.
      expect(at("3.17.1", "6.1.176").find((x) => x.id === "membarrier-registration")).toMatchObject({
        severity: "warn",
        expect: "FAIL",
      });
    });
    it("a TCP diag handler built as a module (a distribution kernel) predicts the TCP dump failing", () => {
      const cloud = new Map([...withMembarrier, ["CONFIG_INET_DIAG", "m"]]);
      const f = diagnose({
        ...base,
        criu: resolveCriuVersion("4.2.1", catalog),
        kernelConfig: cloud,
        kernelVersion: "6.12.117+deb13-cloud-amd64",
      });
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
