/**
 * The repository's data files and the user's YAML: one zod schema each, checked on load with
 * file:line and "did you mean"; the published JSON Schemas accept the files as they are.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parse } from "yaml";
import { repoData } from "../../scripts/data/repo-data.js";
import { loadCriuCatalog } from "../../scripts/data/criu-catalog.js";
import { loadFindingRules } from "../../scripts/data/findings.js";
import { loadAllowlist } from "../../scripts/data/allowlist.js";
import { loadAgentPatches } from "../../scripts/data/agent-patches.js";
import { AGENT_PATCHES_DIR, CRIU_CATALOG_FILE, REPO_ROOT } from "../../scripts/lib/paths.js";
import { SCHEMAS_DIR } from "../../scripts/schemas.js";
import { tempDir } from "../helpers/temp.js";

const FILES: Record<string, string> = {
  pipeline: "pipeline.yaml",
  "matrix-spec": "matrix.yaml",
  "criu-versions": "criu-builds/versions.yaml",
  "kernel-versions": "kernel-versions.yaml",
  "criu-patches": "criu-builds/patches/patches.yaml",
  "agent-patches": "agent-patches/patches.yaml",
  findings: "criu-builds/findings.yaml",
  scenarios: "scenarios.yaml",
  allowlist: "kernel-fragments/allowlist.yaml",
  "boot-profile": "boot-profiles/kata-4.1.0.yaml",
};

const tmp = () => tempDir("crg-data-");

describe("repository data", () => {
  it("loads once: every catalog, the patches, the findings rules and the fragments", () => {
    const d = repoData();
    expect(repoData()).toBe(d);
    expect(d.criu.versions.has("4.1.1")).toBe(true);
    expect(d.kernels.size).toBeGreaterThan(0);
    expect(d.criuPatches.get("membarrier-probe-nonfatal")?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(d.findings.length).toBeGreaterThan(0);
    expect([...d.fragments.keys()]).toEqual(
      expect.arrayContaining(["guest-base", "checkpoint-restore", "no-membarrier"]),
    );
    expect(d.kernelRequirements.entries.some((r) => r.name === "kerndat_fdinfo_has_lock")).toBe(true);
  });

  it("each file as committed is valid under its published JSON Schema", () => {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    for (const [name, file] of Object.entries(FILES)) {
      const validate = ajv.compile(
        JSON.parse(readFileSync(join(SCHEMAS_DIR, `${name}.schema.json`), "utf8")),
      );
      // YAML 1.2 as the yaml package reads it; unquoted numbers that mean strings are quoted in these files.
      const ok = validate(parse(readFileSync(join(REPO_ROOT, file), "utf8")));
      expect(ok, `${file}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });

  it("a typo in the CRIU catalog is named with its file, line and the key meant", () => {
    const f = join(tmp(), "versions.yaml");
    writeFileSync(
      f,
      readFileSync(CRIU_CATALOG_FILE, "utf8").replace(/^(\s+)min_suite: trixie/m, "$1min_suit: trixie"),
    );
    const line =
      readFileSync(f, "utf8")
        .split("\n")
        .findIndex((l) => l.includes("min_suit:")) + 1;
    expect(() => loadCriuCatalog(f)).toThrow(
      new RegExp(
        `versions\\.yaml:${line}: unknown key 'versions\\.[0-9.]+\\.min_suit' \\(did you mean 'min_suite'\\?\\)`,
      ),
    );
    writeFileSync(
      f,
      readFileSync(CRIU_CATALOG_FILE, "utf8").replace(
        /provider_order: \[local-source,/,
        "provider_order: [local-sourse,",
      ),
    );
    expect(() => loadCriuCatalog(f)).toThrow(
      /provider_order\.0 must be one of .*got "local-sourse" \(did you mean 'local-source'\?\)/,
    );
  });

  it("findings, allowlist and agent patches refuse what they cannot use", () => {
    const d = tmp();
    const findings = join(d, "findings.yaml");
    writeFileSync(
      findings,
      "findings:\n  - id: x\n    test: criu-check\n    message: '(['\n    say: broken\n",
    );
    expect(() => loadFindingRules(repoData().criu, findings)).toThrow(
      /findings\.yaml:4: findings\.0\.message: must be a regular expression/,
    );
    writeFileSync(
      findings,
      "findings:\n  - id: x\n    test: criu-check\n    message: x\n    fact: no_such_fact\n    say: CRIU {criu} x\n",
    );
    expect(() => loadFindingRules(repoData().criu, findings)).toThrow(
      /findings\.yaml:2: finding x names fact 'no_such_fact'/,
    );
    const allow = join(d, "allowlist.yaml");
    writeFileSync(allow, "accepted:\n  - symbol: CONFIG_X\n    kernels: '>=6.1'\n");
    expect(() => loadAllowlist(allow)).toThrow(/allowlist\.yaml:2: accepted\.0 needs the key 'reason'/);
    copyFileSync(join(AGENT_PATCHES_DIR, "patches.yaml"), join(d, "patches.yaml"));
    writeFileSync(
      join(d, "patches.yaml"),
      readFileSync(join(d, "patches.yaml"), "utf8").replace('fixed_in: ">=4.1.0"', "fixed_in: soon"),
    );
    expect(() => loadAgentPatches(d)).toThrow(/patches\.yaml:\d+: fixed_in: must be a semver range/);
  });
});
