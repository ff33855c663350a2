/**
 * CRIU source patches (criu-builds/patches/patches.yaml): the catalog, each patch's content
 * hash taken once at load, and selection by version range (pure).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import semver from "semver";
import { z } from "zod";
import { UserError } from "../lib/errors.js";
import { sha256 } from "../lib/hash.js";
import { CRIU_PATCHES_DIR } from "../lib/paths.js";
import { didYouMean } from "../lib/suggest.js";
import { loadYamlFile } from "../lib/yaml-file.js";
import { checkYaml } from "../lib/yaml-schema.js";
import { semverOf } from "./criu-catalog.js";

const semverRange = z
  .string()
  .refine((r) => semver.validRange(r) !== null, 'must be a semver range, e.g. ">=3.19.0"');

export const CRIU_PATCHES_SCHEMA = z.strictObject({
  patches: z.record(z.string(), z.strictObject({ file: z.string(), criu: semverRange, why: z.string() })),
});

export interface PatchSpec {
  name: string;
  file: string;
  criu: string;
  why: string;
  /** The patch file, and the sha256 of its content (part of every build key that applies it). */
  path: string;
  sha256: string;
}

export type SelectedPatch = PatchSpec;

export function loadPatchCatalog(dir = CRIU_PATCHES_DIR): Map<string, PatchSpec> {
  const file = join(dir, "patches.yaml");
  const src = loadYamlFile(file);
  const doc = checkYaml(CRIU_PATCHES_SCHEMA, src, { what: "patch catalog" });
  return new Map(
    Object.entries(doc.patches).map(([name, p]) => {
      const path = join(dir, p.file);
      let text: Buffer;
      try {
        text = readFileSync(path);
      } catch {
        throw new UserError(
          `${file}:${src.lineOf(["patches", name, "file"]) ?? "?"}: patch '${name}' names ${p.file}, which does not exist`,
          `add ${path} or fix the name`,
        );
      }
      return [name, { name, ...p, path, sha256: sha256(text) }];
    }),
  );
}

/** The requested patches for a version; a patch outside its range is an error, not a skip. */
export function selectPatches(
  names: string[],
  version: string,
  catalog: Map<string, PatchSpec>,
): SelectedPatch[] {
  return names.map((name) => {
    const spec = catalog.get(name);
    if (!spec)
      throw new UserError(
        `unknown CRIU patch '${name}'${didYouMean(name, catalog.keys())}`,
        `known patches: ${[...catalog.keys()].join(", ")}`,
      );
    if (!semver.satisfies(semverOf(version), spec.criu))
      throw new UserError(
        `patch '${name}' applies to CRIU ${spec.criu}, not to ${version}`,
        name === "membarrier-probe-nonfatal"
          ? "CRIU before 3.19 has no membarrier probe to patch: drop the patch"
          : "drop the patch for this version",
      );
    return spec;
  });
}
