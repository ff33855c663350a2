/**
 * The kata-agent setsid patches (agent-patches/patches.yaml): which Kata versions need one,
 * and which variant applies to which source layout. Selection is pure.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import semver from "semver";
import { z } from "zod";
import { UserError } from "../lib/errors.js";
import { sha256 } from "../lib/hash.js";
import { AGENT_PATCHES_DIR } from "../lib/paths.js";
import { loadYamlWith } from "../lib/yaml-schema.js";

const semverRange = z
  .string()
  .refine((r) => semver.validRange(r) !== null, 'must be a semver range, e.g. ">=4.1.0"');

export const AGENT_PATCHES_SCHEMA = z.strictObject({
  /** The file the patch changes, relative to a kata-containers tree. */
  file: z.string(),
  fixed_in: semverRange,
  variants: z.array(z.strictObject({ patch: z.string(), kata: semverRange })),
});

export type AgentPatchCatalog = z.infer<typeof AGENT_PATCHES_SCHEMA> & { dir: string };

export function loadAgentPatches(dir = AGENT_PATCHES_DIR): AgentPatchCatalog {
  return {
    ...loadYamlWith(AGENT_PATCHES_SCHEMA, join(dir, "patches.yaml"), { what: "agent patch catalog" }),
    dir,
  };
}

export function selectAgentPatch(
  version: string,
  catalog: AgentPatchCatalog,
): { path: string; name: string; sha256: string } | undefined {
  if (semver.satisfies(version, catalog.fixed_in)) return undefined;
  const variant = catalog.variants.find((v) => semver.satisfies(version, v.kata));
  if (!variant)
    throw new UserError(
      `no setsid patch for Kata ${version} (variants cover ${catalog.variants.map((v) => v.kata).join(", ")}; fixed in ${catalog.fixed_in})`,
      "add a variant to agent-patches/ for this source layout",
    );
  const path = join(catalog.dir, variant.patch);
  return { path, name: variant.patch, sha256: sha256(readFileSync(path)) };
}
