/**
 * Writes the published JSON Schemas of results.json, cell.json and matrix.json into schemas/
 * (for editors and other tools), from the zod schemas the code itself reads them with.
 * `make schemas`; a test fails when the committed files differ from what this writes.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./lib/paths.js";
import { OUTPUT_DOCUMENTS, jsonSchemaOf, type OutputDocument } from "./lib/output-schemas.js";

export const SCHEMAS_DIR = join(REPO_ROOT, "schemas");

export function schemaFiles(): Record<string, string> {
  return Object.fromEntries((Object.keys(OUTPUT_DOCUMENTS) as OutputDocument[]).map((d) => [`${d}.schema.json`, `${JSON.stringify(jsonSchemaOf(d), null, 2)}\n`]));
}

if (process.argv[1] && /schemas\.[tj]s$/.test(process.argv[1])) {
  mkdirSync(SCHEMAS_DIR, { recursive: true });
  for (const [name, text] of Object.entries(schemaFiles())) {
    writeFileSync(join(SCHEMAS_DIR, name), text);
    console.log(join(SCHEMAS_DIR, name));
  }
}
