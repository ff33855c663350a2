/** Checks a document cr-guest wrote against its published JSON Schema (schemas/*.schema.json). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { expect } from "vitest";
import { SCHEMAS_DIR } from "../../scripts/schemas.js";

const ajv = new Ajv2020({ allErrors: true, strict: false });

export function expectValid(name: "results" | "cell" | "matrix" | "bisect", doc: unknown): void {
  const validate =
    ajv.getSchema(name) ??
    (ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS_DIR, `${name}.schema.json`), "utf8")), name),
    ajv.getSchema(name)!);
  expect(validate(doc), `${name}: ${JSON.stringify(validate.errors)}`).toBe(true);
}
