/**
 * The findings rules (criu-builds/findings.yaml): which test failing with which message means
 * what, in plain words; a sentence's {criu} is the CRIU range of the catalog fact it names.
 */
import { join } from "node:path";
import { z } from "zod";
import { UserError } from "../lib/errors.js";
import { CRIU_BUILDS_DIR } from "../lib/paths.js";
import { loadYamlFile } from "../lib/yaml-file.js";
import { checkYaml } from "../lib/yaml-schema.js";
import type { CriuCatalog } from "./criu-catalog.js";

export const FINDINGS_FILE = join(CRIU_BUILDS_DIR, "findings.yaml");

const RuleSchema = z.strictObject({
  id: z.string(),
  test: z.string(),
  status: z.enum(["PASS", "FAIL", "SKIP", "ERROR", "any"]).optional(),
  /** A regular expression over the test's message and error lines. */
  message: z.string().refine((m) => {
    try {
      new RegExp(m);
      return true;
    } catch {
      return false;
    }
  }, "must be a regular expression"),
  say: z.string(),
  /** The catalog fact whose CRIU range the sentence states as {criu}. */
  fact: z.string().optional(),
});

export const FINDINGS_SCHEMA = z.strictObject({ findings: z.array(RuleSchema) });

export type FindingRule = z.infer<typeof RuleSchema>;

/** ">=3.19.0" -> ">= 3.19", "<3.18.0" -> "< 3.18": a semver range as a reader writes it. */
export function readableRange(range: string): string {
  return range.replace(/([<>]=?|=)\s*(\d+)\.(\d+)\.(\d+)/g, (_m, op, a, b, c) => `${op} ${a}.${b}${c === "0" ? "" : `.${c}`}`);
}

/** The rules, each sentence's {criu} filled in from the catalog fact it names. */
export function loadFindingRules(catalog: CriuCatalog, file = FINDINGS_FILE): FindingRule[] {
  const src = loadYamlFile(file);
  const doc = checkYaml(FINDINGS_SCHEMA, src, { what: "findings" });
  return doc.findings.map((f, i) => {
    const where = `${file}:${src.lineOf(["findings", i]) ?? "?"}`;
    if (f.say.includes("{criu}") && !f.fact) throw new UserError(`${where}: finding ${f.id} writes {criu} but names no fact`, "add fact: <a fact of criu-builds/versions.yaml>");
    const fact = f.fact ? catalog.facts[f.fact] : undefined;
    if (f.fact && !fact) throw new UserError(`${where}: finding ${f.id} names fact '${f.fact}', which criu-builds/versions.yaml does not have`, `facts: ${Object.keys(catalog.facts).join(", ")}`);
    return { ...f, say: fact ? f.say.replaceAll("{criu}", readableRange(fact.criu)) : f.say, status: f.status ?? "FAIL" };
  });
}
