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
import { readableRange, type CriuCatalog } from "./criu-catalog.js";

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
  /** The catalog fact whose CRIU range the sentence states as {criu} (and kernel range as {kernel}). */
  fact: z.string().optional(),
  /** fact: only cells where that fact holds (CRIU and kernel versions in its ranges) are evidence. */
  scope: z.enum(["all", "fact"]).optional(),
});

export const FINDINGS_SCHEMA = z.strictObject({ findings: z.array(RuleSchema) });

export type FindingRule = z.infer<typeof RuleSchema> & {
  /** With scope: fact, the ranges a cell's versions must be in to count. */
  holds?: { criu: string; kernel?: string };
};

/** The rules, each sentence's {criu} and {kernel} filled in from the catalog fact it names. */
export function loadFindingRules(catalog: CriuCatalog, file = FINDINGS_FILE): FindingRule[] {
  const src = loadYamlFile(file);
  const doc = checkYaml(FINDINGS_SCHEMA, src, { what: "findings" });
  return doc.findings.map((f, i) => {
    const where = `${file}:${src.lineOf(["findings", i]) ?? "?"}`;
    const needsFact = f.say.includes("{criu}") || f.say.includes("{kernel}") || f.scope === "fact";
    if (needsFact && !f.fact)
      throw new UserError(
        `${where}: finding ${f.id} writes {criu}, {kernel} or scope: fact but names no fact`,
        "add fact: <a fact of criu-builds/versions.yaml>",
      );
    const fact = f.fact ? catalog.facts[f.fact] : undefined;
    if (f.fact && !fact)
      throw new UserError(
        `${where}: finding ${f.id} names fact '${f.fact}', which criu-builds/versions.yaml does not have`,
        `facts: ${Object.keys(catalog.facts).join(", ")}`,
      );
    if (f.say.includes("{kernel}") && !fact?.kernel)
      throw new UserError(
        `${where}: finding ${f.id} writes {kernel}, but fact '${f.fact}' has no kernel range`,
        "drop {kernel}, or name a fact with kernel:",
      );
    const say = fact
      ? f.say
          .replaceAll("{criu}", readableRange(fact.criu))
          .replaceAll("{kernel}", fact.kernel ? readableRange(fact.kernel) : "")
      : f.say;
    return {
      ...f,
      say,
      status: f.status ?? "FAIL",
      ...(f.scope === "fact" && fact ? { holds: { criu: fact.criu, kernel: fact.kernel } } : {}),
    };
  });
}
