/**
 * Applying CRIU source patches: a dry run that proves every patch applies before any is
 * applied. The catalog and selection are data (data/criu-patches.ts).
 */
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import type { SelectedPatch } from "../data/criu-patches.js";

/** Dry-runs every patch first (nothing is changed unless all apply), then applies them. */
export async function applyPatches(tree: string, patches: SelectedPatch[], version: string): Promise<void> {
  for (const p of patches) {
    const dry = await run(["patch", "-p1", "--dry-run", "--batch", "--forward", "-i", p.path], {
      cwd: tree,
      timeoutMs: 60_000,
      allowFailure: true,
    });
    if (dry.exitCode !== 0)
      throw new UserError(
        `patch '${p.name}' does not apply to CRIU ${version}:\n${(dry.stdout + dry.stderr).trim()}`,
        `add a variant of ${p.file} for this source layout, or narrow its range in criu-builds/patches/patches.yaml`,
      );
  }
  for (const p of patches)
    await run(["patch", "-p1", "--batch", "--forward", "-i", p.path], { cwd: tree, timeoutMs: 60_000 });
}
