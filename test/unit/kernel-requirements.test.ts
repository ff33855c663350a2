/**
 * The kernel requirements map (criu-builds/kernel-requirements.yaml): its schema and loader
 * errors, the map held against every catalog CRIU version's real sources (the feature names
 * of cr-check.c, the checks cr_check runs, the probes kerndat_init runs and which are fatal,
 * every function it cites), and its Kconfig symbols against linux 6.12.107's Kconfig.
 */
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parse } from "yaml";
import {
  CRIU_REF,
  KERNEL_REF,
  KERNEL_REQUIREMENTS_FILE,
  allSymbols,
  featureNames,
  loadKernelRequirements,
  requirementsFor,
  type KernelRequirements,
} from "../../scripts/data/kernel-requirements.js";
import {
  buildSymbolsFixture,
  readSymbolsFixture,
  symbolFacts,
} from "../../scripts/kernel/requirement-symbols.js";
import { parseKernelKconfig } from "../../scripts/kernel/kconfig.js";
import { loadCriuCatalog, semverOf } from "../../scripts/data/criu-catalog.js";
import { loadPatchCatalog } from "../../scripts/data/criu-patches.js";
import { SCHEMAS_DIR } from "../../scripts/schemas.js";
import { CRIU_TARBALLS, missingTarballs } from "../helpers/criu-sources.js";
import {
  body,
  expectChecksMatch,
  expectFeaturesMatch,
  expectProbesMatch,
} from "../helpers/criu-map-sources.js";

const fixture = readSymbolsFixture();
const knownSymbols = new Set(Object.keys(fixture.symbols));
const knownPatches = new Set(loadPatchCatalog().keys());
const map = loadKernelRequirements(undefined, { knownSymbols, knownPatches });
const committed = readFileSync(KERNEL_REQUIREMENTS_FILE, "utf8");

const tmp = () => mkdtempSync(join(tmpdir(), "crg-kreq-"));

/** A copy of the map with `from` replaced by `to` (which must occur once), loaded. */
function loadEdited(from: string, to: string, o = { knownSymbols, knownPatches }): KernelRequirements {
  expect(committed.split(from).length, `'${from}' occurs once in the map`).toBe(2);
  const f = join(tmp(), "kernel-requirements.yaml");
  writeFileSync(f, committed.replace(from, to));
  return loadKernelRequirements(f, o);
}

/** The line of the first occurrence of `text` in the committed map. */
const lineOf = (text: string) => committed.slice(0, committed.indexOf(text)).split("\n").length;

describe("the kernel requirements map", () => {
  it("loads: features, plain and --all checks, probes, with every symbol in linux 6.12.107's Kconfig", () => {
    const kinds = (k: string) => map.entries.filter((r) => r.kind === k);
    expect(kinds("feature").length).toBe(45);
    expect(kinds("check").filter((r) => r.mode === "plain").length).toBeGreaterThanOrEqual(17);
    expect(kinds("check").filter((r) => r.mode === "all").length).toBeGreaterThanOrEqual(40);
    expect(kinds("probe").length).toBeGreaterThanOrEqual(50);
    expect(map.kernelTree).toBe(fixture.kernel);
    for (const sym of allSymbols(map)) expect(knownSymbols, sym).toContain(sym);
  });

  it("is valid under its published JSON Schema", () => {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    const validate = ajv.compile(
      JSON.parse(readFileSync(join(SCHEMAS_DIR, "kernel-requirements.schema.json"), "utf8")),
    );
    expect(validate(parse(committed)), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ ...parse(committed), feature: { uffd: { criu: 1 } } })).toBe(false);
  });

  it("says what each version's feature names are; a check running a feature's function gets its needs", () => {
    expect(featureNames(map, "3.17.1")).toContain("uffd-noncoop");
    expect(featureNames(map, "3.17.1")).not.toContain("ipv6_freebind");
    expect(featureNames(map, "3.18")).toContain("ipv6_freebind");
    expect(featureNames(map, "4.0")).toEqual(expect.arrayContaining(["pagemap_scan", "overlayfs_maps"]));
    expect(featureNames(map, "4.1.1")).not.toContain("breakpoints");
    expect(featureNames(map, "4.2")).toEqual(
      expect.arrayContaining(["timer_cr_ids", "breakpoints", "pagemap_scan_guard_pages"]),
    );
    const check = map.entries.find((r) => r.kind === "check" && r.name === "check_uffd")!;
    expect(check.sameAs).toBe("feature/uffd");
    expect(check.needs.all_of).toEqual(["USERFAULTFD"]);
    expect(check.sources.some((s) => KERNEL_REF.test(s))).toBe(true);
    // Versions differ: 3.18 dies without IPv6, later versions only lose the feature.
    const freebind = (v: string) =>
      requirementsFor(map, v).find((r) => r.kind === "probe" && r.name === "kerndat_has_ipv6_freebind")!;
    expect(freebind("3.18").needs.all_of).toEqual(["IPV6"]);
    expect(freebind("3.19").effect).toBe("every CRIU command fails at start");
    expect(freebind("3.19").needs).toEqual({});
    expect(requirementsFor(map, "3.17.1").some((r) => r.name === "kerndat_has_ipv6_freebind")).toBe(false);
  });

  it("holds the start-up facts the doctor and the EXPERT trap rely on", () => {
    const probe = (name: string, v = "4.1.1") =>
      requirementsFor(map, v).find((r) => r.kind === "probe" && r.name === name)!;
    const fatal = "every CRIU command fails at start";
    expect(probe("kerndat_fdinfo_has_lock")).toMatchObject({
      effect: fatal,
      needs: { all_of: ["FILE_LOCKING"] },
    });
    expect(probe("kerndat_has_membarrier_get_registrations")).toMatchObject({
      effect: fatal,
      needs: { all_of: ["MEMBARRIER"] },
      avoidedByPatches: ["membarrier-probe-nonfatal"],
    });
    expect(probe("kerndat_has_membarrier_get_registrations", "3.18")).toBeUndefined();
    const fdinfo = map.entries.find((r) => r.name === "check_fdinfo_ext")!;
    expect(fdinfo.needs.all_of).toContain("EXPORTFS");
    expect(fdinfo.effect).toBe("plain criu check fails");
    // The kernel's own Kconfig, as the fixture records it: FILE_LOCKING and MEMBARRIER show
    // only with EXPERT, EXPORTFS has no prompt and comes from FHANDLE, RSEQ selects MEMBARRIER.
    expect(fixture.symbols.FILE_LOCKING.prompt_if).toBe("EXPERT");
    expect(fixture.symbols.MEMBARRIER.prompt_if).toBe("EXPERT");
    expect(fixture.symbols.MEMBARRIER.selected_by.join(" ")).toMatch(/\bRSEQ\b/);
    expect(fixture.symbols.EXPORTFS.prompt_if).toBeNull();
    expect(fixture.symbols.EXPORTFS.selected_by).toContain("FHANDLE");
  });
});

describe("the map's errors name the file, the line and the fix", () => {
  it("malformed YAML", () => {
    expect(() => loadEdited('kernel_tree: "6.12.107"', "kernel_tree: [6.12.107")).toThrow(
      /malformed YAML at .*kernel-requirements\.yaml:\d+/,
    );
  });

  it("an unknown key, with the key meant", () => {
    const at = lineOf("  uffd:\n") + 3;
    expect(() =>
      loadEdited(
        "    needs: { all_of: [USERFAULTFD], runtime: [root] }\n    sources: [criu/kerndat.c:kerndat_uffd@v4.2",
        "    neds: { all_of: [USERFAULTFD], runtime: [root] }\n    sources: [criu/kerndat.c:kerndat_uffd@v4.2",
      ),
    ).toThrow(
      new RegExp(
        `kernel-requirements\\.yaml:${at}: unknown key 'feature\\.uffd\\.neds' \\(did you mean 'needs'\\?\\)`,
      ),
    );
  });

  it("a misspelt effect or runtime condition, with the value meant", () => {
    expect(() =>
      loadEdited(
        "    needs: { all_of: [TIMERFD, CHECKPOINT_RESTORE] }\n    sources: [criu/timerfd.c:check_timerfd@v4.2, fs/Makefile:27@6.12.107, fs/timerfd.c:353@6.12.107]\n    effect: the feature check fails",
        "    needs: { all_of: [TIMERFD, CHECKPOINT_RESTORE] }\n    sources: [criu/timerfd.c:check_timerfd@v4.2, fs/Makefile:27@6.12.107, fs/timerfd.c:353@6.12.107]\n    effect: the feature check fail",
      ),
    ).toThrow(/feature\.timerfd\.effect must be one of .*did you mean 'the feature check fails'/);
    expect(() =>
      loadEdited(
        "needs: { all_of: [TUN], runtime: [dev_net_tun] }",
        "needs: { all_of: [TUN], runtime: [dev_net_tn] }",
      ),
    ).toThrow(/feature\.tun\.needs\.runtime\.0 must be one of .*did you mean 'dev_net_tun'/);
  });

  it("a symbol written with CONFIG_, or one the kernel does not define", () => {
    expect(() => loadEdited("all_of: [AIO]", "all_of: [CONFIG_AIO]")).toThrow(
      /feature\.aio_remap\.needs\.all_of\.0: .*without CONFIG_/,
    );
    const at = lineOf("  uffd:\n") + 3;
    expect(() =>
      loadEdited(
        "    needs: { all_of: [USERFAULTFD], runtime: [root] }\n    sources: [criu/kerndat.c:kerndat_uffd@v4.2",
        "    needs: { all_of: [USERFALTFD], runtime: [root] }\n    sources: [criu/kerndat.c:kerndat_uffd@v4.2",
      ),
    ).toThrow(
      new RegExp(
        `kernel-requirements\\.yaml:${at}: feature/uffd needs CONFIG_USERFALTFD, which linux 6\\.12\\.107 does not define \\(did you mean 'USERFAULTFD'\\?\\)`,
      ),
    );
  });

  it("claims without their sources, overlapping ranges, dangling references", () => {
    expect(() =>
      loadEdited(
        "sources: [criu/cr-check.c:check_aio_remap@v4.2, fs/Makefile:30@6.12.107, kernel/sys_ni.c:39@6.12.107,\n      fs/aio.c:387@6.12.107]",
        "sources: [criu/cr-check.c:check_aio_remap@v4.2]",
      ),
    ).toThrow(/feature\/aio_remap names Kconfig symbols but cites no kernel source/);
    expect(() => loadEdited("fs/Makefile:30@6.12.107", "fs/Makefile:30@6.1.176")).toThrow(
      /kernel source fs\/Makefile:30@6\.1\.176 is not of the kernel_tree 6\.12\.107/,
    );
    expect(() =>
      loadEdited(
        '    - criu: ">=3.18.0"\n      probes: [criu/kerndat.c:kerndat_has_memfd_hugetlb@v4.2]',
        '    - criu: ">=3.17.1"\n      probes: [criu/kerndat.c:kerndat_has_memfd_hugetlb@v4.2]',
      ),
    ).toThrow(/probe\/kerndat_has_memfd_hugetlb: CRIU range >=3\.17\.1 overlaps >=3\.17\.1 <3\.18\.0/);
    expect(() => loadEdited("same_as: feature/uffd,", "same_as: feature/ufd,")).toThrow(
      /check\/check_uffd runs feature\/ufd, but no such feature covers CRIU >=3\.17\.1 \(did you mean 'uffd'\?\)/,
    );
    expect(() => loadEdited("feeds: [fdinfo_lock]", "feeds: [fdinfo_locks]")).toThrow(
      /probe\/kerndat_fdinfo_has_lock feeds 'fdinfo_locks', which is no feature/,
    );
    expect(() =>
      loadEdited("avoided_by_patches: [membarrier-probe-nonfatal]", "avoided_by_patches: [membarier-probe]"),
    ).toThrow(/unknown CRIU patch 'membarier-probe'/);
    expect(() =>
      loadEdited(
        '  check_prctl_cat2:\n    criu: ">=3.17.1"\n    mode: all\n',
        '  check_prctl_cat2:\n    criu: ">=3.17.1"\n',
      ),
    ).toThrow(/check\/check_prctl_cat2 needs mode: plain or all/);
  });
});

/** A CRIU version's source archive in the mirror: the tag archive, or Debian's orig tarball. */
function archiveOf(version: string): string | undefined {
  return [`criu-${version}.tar.gz`, `v${version}.tar.gz`, `criu_${version}.orig.tar.xz`]
    .map((n) => join(CRIU_TARBALLS, n))
    .find((p) => existsSync(p));
}

const unpacked = new Map<string, string>();
const cleanup: string[] = [];
afterAll(() => cleanup.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** The release tree of a version (unpacked once per test run). */
function treeOf(version: string): string {
  let tree = unpacked.get(version);
  if (!tree) {
    const dir = tmp();
    cleanup.push(dir);
    execFileSync("tar", ["-xf", archiveOf(version)!, "-C", dir], { timeout: 120_000 });
    tree = join(dir, readdirSync(dir)[0]);
    unpacked.set(version, tree);
  }
  return tree;
}

describe.skipIf(missingTarballs())("the map against each catalog version's CRIU sources", () => {
  const versions = [...loadCriuCatalog().versions.keys()];
  const present = versions.filter((v) => archiveOf(v));
  const absent = versions.filter((v) => !archiveOf(v));
  if (present.length && absent.length)
    console.warn(`not in ${CRIU_TARBALLS}, so not read by this test: CRIU ${absent.join(", ")}`);

  it("every catalog version's archive that the mirror holds is read (the older ones at least)", () => {
    expect(present).toEqual(expect.arrayContaining(["3.17.1", "3.18", "3.19", "4.0", "4.1", "4.1.1", "4.2"]));
  });

  it.each(present)("CRIU %s: each --feature name has an entry, and no entry names one it lacks", (v) => {
    expectFeaturesMatch(map, v, treeOf(v));
  });

  it.each(present)("CRIU %s: the checks of plain `criu check` and of --all are the map's", (v) => {
    expectChecksMatch(map, v, treeOf(v));
  });

  it.each(present)(
    "CRIU %s: kerndat's probes are the map's, fatal exactly where the source returns the error",
    (v) => expectProbesMatch(map, v, treeOf(v)),
  );

  it("every CRIU function the map cites is defined in that file at that tag", () => {
    const refs = new Set(
      map.entries.flatMap((r) => [...r.probes, ...r.sources]).filter((s) => CRIU_REF.test(s)),
    );
    const byVersion = new Map(present.map((v) => [semverOf(v), v]));
    let read = 0;
    for (const ref of refs) {
      const [, file, fn, tag] = CRIU_REF.exec(ref)!;
      const v = byVersion.get(semverOf(tag));
      if (!v) continue; // a tag the mirror does not hold (4.2.1)
      const path = join(treeOf(v), file);
      expect(existsSync(path), `${ref}: no ${file}`).toBe(true);
      expect(body(readFileSync(path, "utf8"), fn), `${ref}: ${fn} not defined in ${file}`).not.toBe("");
      read++;
    }
    expect(read).toBeGreaterThan(100);
  });
});

// The fixture against the real tree it was generated from: test/integration/kernel.test.ts,
// where the suite's kernel source is unpacked.
describe("the map's Kconfig symbols against the kernel's Kconfig", () => {
  it("the fixture's generator refuses a symbol the Kconfig lacks, and a tree that is not the map's kernel", () => {
    const small = join(__dirname, "../fixtures/kconfig");
    expect(() => symbolFacts(parseKernelKconfig(small), ["USERFAULTFD_NO_SUCH"])).toThrow(
      /the kernel's Kconfig defines no CONFIG_USERFAULTFD_NO_SUCH/,
    );
    expect(() => buildSymbolsFixture(small, map)).toThrow(/is not a kernel source tree \(no Makefile\)/);
    const other = tmp();
    writeFileSync(join(other, "Makefile"), "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 176\n");
    expect(() => buildSymbolsFixture(other, map)).toThrow(
      /is linux 6\.1\.176, the map's kernel_tree is 6\.12\.107/,
    );
  });

  it("a map naming a symbol outside the fixture is refused until the fixture is regenerated", () => {
    const without = new Set([...knownSymbols].filter((s) => s !== "VETH"));
    expect(() =>
      loadEdited(
        "probes: [criu/cr-check.c:check_link_nsid@v4.2",
        "probes: [criu/cr-check.c:check_link_nsid@v4.2",
        { knownSymbols: without, knownPatches },
      ),
    ).toThrow(/feature\/link_nsid needs CONFIG_VETH, which linux 6\.12\.107 does not define/);
  });
});
