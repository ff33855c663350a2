/**
 * Writes the published JSON Schemas into schemas/ (for editors and other tools), from the zod
 * schemas the code itself reads with: the outputs (results.json, cell.json, matrix.json) and
 * the inputs (pipeline.yaml, matrix.yaml and the repository's data files).
 * `make schemas`; a test fails when the committed files differ from what this writes.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { REPO_ROOT } from "./lib/paths.js";
import { OUTPUT_DOCUMENTS, jsonSchemaOf, type OutputDocument } from "./lib/output-schemas.js";
import { USER_CONFIG_SCHEMA } from "./lib/config.js";
import { MATRIX_SCHEMA } from "./matrix/spec.js";
import { CRIU_CATALOG_SCHEMA } from "./data/criu-catalog.js";
import { KERNEL_CATALOG_SCHEMA } from "./data/kernel-catalog.js";
import { CRIU_PATCHES_SCHEMA } from "./data/criu-patches.js";
import { AGENT_PATCHES_SCHEMA } from "./data/agent-patches.js";
import { FINDINGS_SCHEMA } from "./data/findings.js";
import { SCENARIOS_SCHEMA } from "./data/scenarios.js";
import { ALLOWLIST_SCHEMA } from "./data/allowlist.js";
import { KERNEL_REQUIREMENTS_SCHEMA } from "./data/kernel-requirements.js";
import { BOOT_PROFILE_SCHEMA } from "./data/boot-profiles.js";

export const SCHEMAS_DIR = join(REPO_ROOT, "schemas");

/** The YAML files cr-guest reads, by schema file name, with what they are. */
export const INPUT_DOCUMENTS: Record<string, { schema: z.ZodType; title: string }> = {
  pipeline: {
    schema: USER_CONFIG_SCHEMA,
    title: "cr-guest pipeline config (pipeline.yaml, or a --config file: any subset of the keys)",
  },
  "matrix-spec": { schema: MATRIX_SCHEMA, title: "cr-guest version matrix (matrix.yaml)" },
  "criu-versions": {
    schema: CRIU_CATALOG_SCHEMA,
    title: "cr-guest CRIU catalog (criu-builds/versions.yaml)",
  },
  "kernel-versions": {
    schema: KERNEL_CATALOG_SCHEMA,
    title: "cr-guest kernel catalog (kernel-versions.yaml)",
  },
  "criu-patches": {
    schema: CRIU_PATCHES_SCHEMA,
    title: "cr-guest CRIU patches (criu-builds/patches/patches.yaml)",
  },
  "agent-patches": {
    schema: AGENT_PATCHES_SCHEMA,
    title: "cr-guest kata-agent patches (agent-patches/patches.yaml)",
  },
  findings: { schema: FINDINGS_SCHEMA, title: "cr-guest findings rules (criu-builds/findings.yaml)" },
  scenarios: { schema: SCENARIOS_SCHEMA, title: "cr-guest scenarios (scenarios.yaml)" },
  allowlist: {
    schema: ALLOWLIST_SCHEMA,
    title: "cr-guest kernel allowlist (kernel-fragments/allowlist.yaml)",
  },
  "kernel-requirements": {
    schema: KERNEL_REQUIREMENTS_SCHEMA,
    title: "cr-guest kernel requirements of CRIU's checks (criu-builds/kernel-requirements.yaml)",
  },
  "boot-profile": {
    schema: BOOT_PROFILE_SCHEMA,
    title: "cr-guest boot profile: how another runtime boots its guest, cited (boot-profiles/*.yaml)",
  },
};

function inputSchemaOf(name: string): Record<string, unknown> {
  const d = INPUT_DOCUMENTS[name];
  // Refinements (semver ranges, file existence) are checked by cr-guest, not expressible here.
  const js = z.toJSONSchema(d.schema, {
    target: "draft-2020-12",
    io: "input",
    unrepresentable: "any",
  }) as Record<string, unknown>;
  return { $id: `https://cr-guest.invalid/schemas/${name}.schema.json`, title: d.title, ...js };
}

export function schemaFiles(): Record<string, string> {
  const text = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  return {
    ...Object.fromEntries(
      (Object.keys(OUTPUT_DOCUMENTS) as OutputDocument[]).map((d) => [
        `${d}.schema.json`,
        text(jsonSchemaOf(d)),
      ]),
    ),
    ...Object.fromEntries(
      Object.keys(INPUT_DOCUMENTS).map((n) => [`${n}.schema.json`, text(inputSchemaOf(n))]),
    ),
  };
}

if (process.argv[1] && /schemas\.[tj]s$/.test(process.argv[1])) {
  mkdirSync(SCHEMAS_DIR, { recursive: true });
  for (const [name, text] of Object.entries(schemaFiles())) {
    writeFileSync(join(SCHEMAS_DIR, name), text);
    console.log(join(SCHEMAS_DIR, name));
  }
}
