/**
 * The matrix as data: validation errors that name file and line, expansion into cells,
 * exclusions, inclusions, overrides, patches that do not apply, sharing of stages, filters.
 */
import { CRIU_TARBALLS, missingTarballs } from "../helpers/criu-sources.js";
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { mkdirSync, writeFileSync } from "node:fs";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { UserError } from "../../scripts/lib/errors.js";
import {
  CELL_DATA_PATHS,
  dataHash,
  filterCells,
  loadMatrixSpec,
  planMatrix,
  planPairs,
  ruleMatches,
  sharedStages,
} from "../../scripts/matrix/spec.js";
import { pairId } from "../../scripts/migrate/pair.js";
import { tempDir } from "../helpers/temp.js";

const fixture = (name: string) => join(REPO_ROOT, "test/fixtures/matrix", name);
const errorOf = (fn: () => unknown): UserError => {
  try {
    fn();
  } catch (err) {
    return err as UserError;
  }
  throw new Error("expected an error");
};

describe("matrix spec", () => {
  it("expands the product, drops excluded cells and patches out of range, adds included cells, applies overrides", () => {
    const plan = planMatrix(loadMatrixSpec(fixture("small.yaml")));
    expect(plan.cells.map((c) => c.id).sort()).toEqual(
      [
        "3.17.1_6.12_none_native",
        "3.17.1_nomb_none_native",
        "4.1_6.12_mb_native",
        "4.1_6.12_none_native",
        "4.1_nomb_mb_native",
        "4.1_nomb_none_native",
      ].sort(),
    );
    const excluded = Object.fromEntries(plan.excluded.map((e) => [e.id, e.reason]));
    expect(excluded["3.17.1_6.12_mb_native"]).toMatch(/applies to CRIU >=3.19.0, not to 3.17.1/);
    expect(excluded["3.17.1_nomb_mb_native"]).toMatch(/excluded by rule/);
    // "4.1" resolves to the newest 4.1.x of the catalog.
    expect(plan.cells.find((c) => c.id === "4.1_6.12_none_native")!.criuVersion).toBe("4.1.1");
    // The included cell was excluded by the range rule but is in, with the override applied.
    const inc = plan.cells.find((c) => c.id === "3.17.1_nomb_none_native")!;
    expect(inc.config.boot.deadline_minutes).toBe(7);
    expect(inc.config.kernel.fragment_set).toBe("no-membarrier");
    expect(plan.cells.find((c) => c.id === "3.17.1_6.12_none_native")!.config.boot.deadline_minutes).not.toBe(
      7,
    );
  });

  it("shares stages: one kernel per variant, one CRIU build per version+patches, one image per build", () => {
    const plan = planMatrix(loadMatrixSpec(fixture("small.yaml")));
    expect(sharedStages(plan.cells)).toEqual({ kernels: 2, criuBuilds: 3, images: 3, boots: 6 });
    const [a, b] = ["4.1_6.12_mb_native", "4.1_nomb_mb_native"].map((id) =>
      plan.cells.find((c) => c.id === id)!,
    );
    expect(a.groups.criu).toBe(b.groups.criu);
    expect(a.groups.kernel).not.toBe(b.groups.kernel);
    expect(a.inputsKey).not.toBe(b.inputsKey);
  });

  it("the default matrix: CRIU 3.17.1, 3.19, 4.1.1, 4.2.1 on 6.1, 6.12 with and without MEMBARRIER, 7.1 and Debian's cloud kernel, the patch where it applies", () => {
    const plan = planMatrix(loadMatrixSpec(join(REPO_ROOT, "matrix.yaml")));
    const runnable = plan.cells.filter((c) => !c.skip);
    expect(new Set(runnable.map((c) => c.criuVersion))).toEqual(
      new Set(["3.17.1", "3.19", "4.1.1", "4.2.1"]),
    );
    expect(new Set(runnable.map((c) => c.axes.kernel))).toEqual(
      new Set(["6.1", "6.12", "6.12-no-membarrier", "7.1", "debian-cloud"]),
    );
    // The patch runs on the 6.12 pair only (the kernels with and without MEMBARRIER).
    expect(new Set(runnable.filter((c) => c.patches.length).map((c) => c.axes.kernel))).toEqual(
      new Set(["6.12", "6.12-no-membarrier"]),
    );
    expect(runnable.find((c) => c.id === "4.1.1_debian-cloud_unpatched_native")?.config.kernel.kind).toBe(
      "debian-cloud",
    );
    expect(
      runnable
        .filter((c) => c.patches.includes("membarrier-probe-nonfatal"))
        .every((c) => c.criuVersion !== "3.17.1"),
    ).toBe(true);
    expect(sharedStages(plan.cells).kernels).toBe(5);
    // 3.19 has a pinned tag archive: upstream would serve it.
    const c319 = plan.cells.find((c) => c.id === "3.19_6.12_unpatched_native")!;
    expect(c319.criuCandidates.find((c) => c.key)?.provider).toBe("upstream");
    // Without the network providers it is skipped, with every way to give a source.
    const offline = planMatrix(loadMatrixSpec(join(REPO_ROOT, "matrix.yaml")), {
      set: ["criu.providers=[local-source, git, local-mirror, debian-source, debian-binary]"],
    });
    const skipped = offline.cells.filter((c) => c.skip);
    expect(skipped.map((c) => c.criuVersion)).toEqual(Array(7).fill("3.19"));
    for (const flag of ["--criu-mirror", "--local-source", "--git"]) expect(skipped[0].skip).toContain(flag);
  });

  it.skipIf(missingTarballs())(
    "with a local mirror, the 3.19 cells are served from it and share one build per patch set",
    () => {
      const plan = planMatrix(loadMatrixSpec(join(REPO_ROOT, "matrix.yaml")), {
        set: [`criu.local_mirror=${CRIU_TARBALLS}`],
      });
      const cells = plan.cells.filter((c) => c.criuVersion === "3.19");
      expect(cells).toHaveLength(7);
      for (const c of cells) expect(c.criuCandidates.find((x) => x.key)?.provider).toBe("local-mirror");
      expect(new Set(cells.map((c) => c.groups.criu)).size).toBe(2);
      // Offline providers come first: 4.1.1 is built from the mirror's tag archive (other bytes
      // than Debian's orig tarball, so another build); 4.2.1, not in the mirror, is unchanged.
      const base = planMatrix(loadMatrixSpec(join(REPO_ROOT, "matrix.yaml")));
      expect(
        plan.cells.find((c) => c.id === "4.1.1_6.12_unpatched_native")!.criuCandidates.find((x) => x.key)
          ?.provider,
      ).toBe("local-mirror");
      const id = "4.2.1_6.12_unpatched_native";
      expect(plan.cells.find((c) => c.id === id)!.criuCandidates.find((x) => x.key)?.provider).toBe(
        "debian-source",
      );
      expect(plan.cells.find((c) => c.id === id)!.groups.criu).toBe(
        base.cells.find((c) => c.id === id)!.groups.criu,
      );
    },
  );

  it("filters cells as a user reproduces one CI cell: --criu 4.1 --kernel 6.12", () => {
    const plan = planMatrix(loadMatrixSpec(join(REPO_ROOT, "matrix.yaml")));
    const cells = filterCells(plan, { criu: ["4.1"], kernel: ["6.12"], patches: ["unpatched"] });
    expect(cells.map((c) => c.id)).toEqual(["4.1.1_6.12_unpatched_native"]);
    const e = errorOf(() => filterCells(plan, { kernel: ["6.13"] }));
    expect(e.message).toMatch(/no cell of matrix 'default' matches/);
    expect(e.hint).toMatch(/kernel 6\.1\|6\.12\|6\.12-no-membarrier\|7\.1\|debian-cloud/);
  });

  it("rules match ids, and semver ranges on the resolved CRIU version", () => {
    const cell = { criu: "4.1", kernel: "6.12", patches: "none", suite: "native" };
    expect(ruleMatches({ criu: ">=3.19" }, cell, "4.1.1")).toBe(true);
    expect(ruleMatches({ criu: "<4" }, cell, "4.1.1")).toBe(false);
    expect(ruleMatches({ criu: "4.1", kernel: "nomb" }, cell, "4.1.1")).toBe(false);
    expect(ruleMatches({}, cell, "4.1.1")).toBe(true);
  });

  it("bad input names the file and line and the fix", () => {
    const key = errorOf(() => loadMatrixSpec(fixture("bad-key.yaml")));
    expect(key.message).toMatch(
      /bad-key\.yaml:5: 'criu\.verison' is not a pipeline config key \(did you mean 'version'\?\)/,
    );
    const rule = errorOf(() => loadMatrixSpec(fixture("bad-rule.yaml")));
    expect(rule.message).toMatch(/bad-rule\.yaml:8: kernel '6\.13' is not a value of that axis/);
    expect(rule.hint).toContain("kernel values: 6.12");
    const yaml = errorOf(() => loadMatrixSpec(fixture("malformed.yaml")));
    expect(yaml.message).toMatch(/malformed YAML at .*malformed\.yaml:\d+/);
    const top = errorOf(() => loadMatrixSpec(fixture("unknown-top.yaml")));
    expect(top.message).toMatch(/unknown-top\.yaml:2: unknown key 'axis' \(did you mean 'axes'\?\)/);
  });
});

describe("migration pairs in matrix.yaml", () => {
  it("the default matrix's pairs: a base cell and one changed axis, each side with its cell's config", () => {
    const spec = loadMatrixSpec(join(REPO_ROOT, "matrix.yaml"));
    const pairs = planPairs(spec);
    expect(pairs.map((p) => pairId(p.pair))).toEqual([
      "4.1.1_6.12_unpatched-to-4.2.1_6.12_unpatched",
      "3.17.1_6.12_unpatched-to-4.1.1_6.12_unpatched",
      "4.2.1_6.12_unpatched-to-4.1.1_6.12_unpatched",
      "4.1.1_6.12_unpatched-to-4.1.1_6.1_unpatched",
      "4.1.1_6.1_unpatched-to-4.1.1_6.12_unpatched",
    ]);
    const kernelPair = pairs[3].pair;
    expect(kernelPair.to.sets).toContain('kernel.version="6.1"');
    expect(kernelPair.from.sets).toContain('criu.version="4.1.1"');
    expect(pairs[0].to).toMatchObject({
      criu: "4.2.1",
      kernel: "6.12",
      patches: "unpatched",
      suite: "native",
    });
  });

  it("a pair that changes no axis or two, or names an unknown value, is refused at its line", () => {
    const dir = tempDir("crg-pairs-");
    const axes = `axes:\n  criu: [{ id: "4.1.1", set: { criu.version: "4.1.1" } }, { id: "4.2.1", set: { criu.version: "4.2.1" } }]\n  kernel: [{ id: "6.12" }, { id: "6.1" }]\n  patches: [{ id: unpatched }]\n  suite: [{ id: native }]\n`;
    const file = (name: string, migrate: string) => {
      const f = join(dir, name);
      writeFileSync(f, `${axes}migrate:\n${migrate}`);
      return f;
    };
    expect(
      errorOf(() =>
        loadMatrixSpec(
          file("two.yaml", '  - { base: { criu: "4.1.1" }, to: { criu: "4.2.1", kernel: "6.1" } }\n'),
        ),
      ).message,
    ).toMatch(
      /two\.yaml:7: a pair changes exactly one axis from its base cell, this one changes criu and kernel/,
    );
    expect(
      errorOf(() =>
        loadMatrixSpec(file("none.yaml", '  - { base: { criu: "4.1.1" }, to: { criu: "4.1.1" } }\n')),
      ).message,
    ).toMatch(/none\.yaml:7: .* this one changes nothing/);
    const unknown = errorOf(() =>
      loadMatrixSpec(file("unknown.yaml", '  - { base: { criu: "4.1.1" }, to: { kernel: "6.13" } }\n')),
    );
    expect(unknown.message).toMatch(/unknown\.yaml:7: kernel '6\.13' is not a value of that axis/);
    const range = errorOf(() =>
      loadMatrixSpec(file("range.yaml", '  - { base: { criu: "<4.2" }, to: { criu: "4.2.1" } }\n')),
    );
    expect(range.message).toMatch(/range\.yaml:7: criu '<4\.2' must be an id of axis 'criu', not a range/);
  });
});

describe("cell inputs", () => {
  it("a stored cell is stale when the guest runner or scenario data changes, not only the config", () => {
    const dir = tempDir("crg-data-");
    mkdirSync(join(dir, "guest"));
    writeFileSync(join(dir, "guest", "run-tests"), "echo one\n");
    const before = dataHash(["guest"], [], dir);
    expect(dataHash(["guest"], [], dir)).toBe(before);
    writeFileSync(join(dir, "guest", "run-tests"), "echo two\n");
    expect(dataHash(["guest"], [], dir)).not.toBe(before);
    const scen = join(dir, "scenarios.yaml");
    writeFileSync(scen, "scenarios: []\n");
    const withScen = dataHash(["guest"], [scen], dir);
    writeFileSync(scen, "scenarios: [{name: x}]\n");
    expect(dataHash(["guest"], [scen], dir)).not.toBe(withScen);
    expect(CELL_DATA_PATHS).toEqual(
      expect.arrayContaining([
        "guest",
        "kernel-fragments",
        "criu-builds/versions.yaml",
        "criu-builds/patches",
      ]),
    );
    // The findings rules word the report: rewording one never reruns a cell.
    expect(CELL_DATA_PATHS.some((p) => "criu-builds/findings.yaml".startsWith(p))).toBe(false);
  });
});
