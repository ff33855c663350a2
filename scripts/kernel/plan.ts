/** Pure planning for the kernel stage: which version, which fragments, which cache key. */
import { cpus } from "node:os";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { cacheKey } from "../lib/hash.js";
import { didYouMean } from "../lib/suggest.js";
import { loadFragmentFile, loadNamedFragment, mergeFragments, renderConfigFragment, type Fragment, type RequestedConfig } from "./fragments.js";
import { resolveKernelVersion, type KernelCatalog, type KernelVersionEntry } from "./versions.js";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FRAGMENTS_DIR } from "../lib/paths.js";

/** Bump when the build recipe changes in a way that changes the output. */
export const KERNEL_RECIPE_VERSION = 1;

export interface KernelPlan {
  entry: KernelVersionEntry;
  fragments: Fragment[];
  requested: RequestedConfig;
  jobs: number;
}

export function planKernel(config: PipelineConfig, catalog: KernelCatalog, extraFragments: string[] = []): KernelPlan {
  const entry = resolveKernelVersion(config.kernel.version, catalog);
  const setNames = config.fragment_sets[config.kernel.fragment_set];
  const fragments = setNames.map((name) => {
    if (!existsSync(join(FRAGMENTS_DIR, `${name}.conf`)))
      throw new UserError(
        `fragment set '${config.kernel.fragment_set}' names '${name}', but kernel-fragments/${name}.conf does not exist`,
        "fix fragment_sets in the config",
      );
    return loadNamedFragment(name);
  });
  for (const file of [...config.kernel.extra_fragments, ...extraFragments]) fragments.push(loadFragmentFile(file));
  const requested = mergeFragments(fragments);
  const jobs = config.kernel.jobs > 0 ? config.kernel.jobs : cpus().length;
  return { entry, fragments, requested, jobs };
}

export interface KernelKeyInputs {
  version: string;
  source: { provider: string; sha256: string; patches: string[] };
  base: string;
  fragment: string;
  toolchain: string[];
}

/** The kernel artifact key: everything that changes the built bzImage, nothing else. */
export function kernelCacheKey(plan: KernelPlan, base: string, source: KernelKeyInputs["source"], toolchain: string[]): string {
  const inputs: KernelKeyInputs & { recipe: number; arch: string } = {
    version: plan.entry.version,
    source,
    base,
    fragment: renderConfigFragment(plan.requested),
    toolchain,
    recipe: KERNEL_RECIPE_VERSION,
    arch: "x86_64",
  };
  return cacheKey(inputs);
}

export function fragmentSetNames(config: PipelineConfig): string {
  const names = Object.keys(config.fragment_sets);
  return `${names.join(", ")}${didYouMean(config.kernel.fragment_set, names)}`;
}
