/**
 * CRIU source patches (criu-builds/patches/): selection by version range, a dry run that
 * proves a patch applies before any build, and application. Selection is pure.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import semver from "semver";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { sha256 } from "../lib/hash.js";
import { CRIU_PATCHES_DIR } from "../lib/paths.js";
import { didYouMean } from "../lib/suggest.js";
import { loadYamlFile } from "../lib/yaml-file.js";
import { semverOf } from "./catalog.js";

export interface PatchSpec {
  name: string;
  file: string;
  criu: string;
  why: string;
}

export interface SelectedPatch extends PatchSpec {
  path: string;
  sha256: string;
}

export function loadPatchCatalog(dir = CRIU_PATCHES_DIR): Map<string, PatchSpec> {
  const file = join(dir, "patches.yaml");
  const doc = loadYamlFile(file).value as { patches?: Record<string, Omit<PatchSpec, "name">> };
  return new Map(Object.entries(doc?.patches ?? {}).map(([name, p]) => [name, { name, ...p }]));
}

/** The requested patches for a version; a patch outside its range is an error, not a skip. */
export function selectPatches(names: string[], version: string, catalog: Map<string, PatchSpec>, dir = CRIU_PATCHES_DIR): SelectedPatch[] {
  return names.map((name) => {
    const spec = catalog.get(name);
    if (!spec)
      throw new UserError(`unknown CRIU patch '${name}'${didYouMean(name, catalog.keys())}`, `known patches: ${[...catalog.keys()].join(", ")}`);
    if (!semver.satisfies(semverOf(version), spec.criu))
      throw new UserError(
        `patch '${name}' applies to CRIU ${spec.criu}, not to ${version}`,
        name === "membarrier-probe-nonfatal" ? "CRIU before 3.19 has no membarrier probe to patch: drop the patch" : "drop the patch for this version",
      );
    const path = join(dir, spec.file);
    return { ...spec, path, sha256: sha256(readFileSync(path)) };
  });
}

/** Dry-runs every patch first (nothing is changed unless all apply), then applies them. */
export async function applyPatches(tree: string, patches: SelectedPatch[], version: string): Promise<void> {
  for (const p of patches) {
    const dry = await run(["patch", "-p1", "--dry-run", "--batch", "--forward", "-i", p.path], { cwd: tree, timeoutMs: 60_000, allowFailure: true });
    if (dry.exitCode !== 0)
      throw new UserError(
        `patch '${p.name}' does not apply to CRIU ${version}:\n${(dry.stdout + dry.stderr).trim()}`,
        `add a variant of ${p.file} for this source layout, or narrow its range in criu-builds/patches/patches.yaml`,
      );
  }
  for (const p of patches) await run(["patch", "-p1", "--batch", "--forward", "-i", p.path], { cwd: tree, timeoutMs: 60_000 });
}
