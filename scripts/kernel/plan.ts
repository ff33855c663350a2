/** Pure planning for the kernel stage: which version, which fragments, which cache key. */
import { cpus } from "node:os";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { cacheKey } from "../lib/hash.js";
import { didYouMean } from "../lib/suggest.js";
import {
  forKernel,
  loadFragmentFile,
  mergeFragments,
  renderConfigFragment,
  type Fragment,
  type RequestedConfig,
} from "../data/fragments.js";
import { resolveKernelVersion, type KernelVersionEntry } from "../data/kernel-catalog.js";
import type { RepoData } from "../data/repo-data.js";
import { readKataTree, whitelistFor, type KataTree, type WhitelistEntry } from "../data/kata-fragments.js";

/** Kata's name for the architecture this builds for (its fragments/<arch>/ directory). */
const KATA_ARCH = "x86_64";

/** Bump when the build recipe changes in a way that changes the output. */
export const KERNEL_RECIPE_VERSION = 1;

export interface KernelPlan {
  entry: KernelVersionEntry;
  fragments: Fragment[];
  requested: RequestedConfig;
  jobs: number;
  /** Misses the Kata tree accepts (whitelist.conf and whitelist-<version>.conf). */
  whitelist: WhitelistEntry[];
  /** The Kata tree's common/ files left out, and why. */
  kataExcluded: KataTree["excluded"];
}

/** What the kernel plan needs from outside the repository: read by resolveKernelInputs. */
export interface KernelInputs {
  /** The user's own fragments (kernel.extra_fragments and --fragment), read from disk. */
  userFragments: Fragment[];
  /** Make jobs when kernel.jobs is 0: the host's CPU count. */
  hostCpus: number;
  /** kernel.kata_fragments, read as Kata reads it. */
  kata?: KataTree;
}

/** Resolve: reads the user's fragment files and the CPU count. */
export function resolveKernelInputs(config: PipelineConfig, extraFragments: string[] = []): KernelInputs {
  const k = config.kernel;
  return {
    userFragments: [...k.extra_fragments, ...extraFragments].map(loadFragmentFile),
    hostCpus: cpus().length,
    kata: k.kata_fragments
      ? readKataTree(k.kata_fragments, {
          arch: KATA_ARCH,
          buildType: k.kata_build_type || undefined,
          confidential: k.kata_confidential,
        })
      : undefined,
  };
}

/** Plan (pure): the version from the catalog, the fragments of the set, what they request. */
export function planKernel(
  config: PipelineConfig,
  data: Pick<RepoData, "kernels" | "fragments">,
  inputs: KernelInputs,
): KernelPlan {
  const entry = resolveKernelVersion(config.kernel.version, data.kernels);
  // A Kata tree replaces the fragment set; the user's fragments stack on either.
  const setNames = inputs.kata ? [] : config.fragment_sets[config.kernel.fragment_set];
  const fragments = inputs.kata ? [...inputs.kata.fragments] : [];
  fragments.push(
    ...setNames.map((name) => {
      const f = data.fragments.get(name);
      if (!f)
        throw new UserError(
          `fragment set '${config.kernel.fragment_set}' names '${name}', but kernel-fragments/${name}.conf does not exist`,
          `fix fragment_sets in the config (fragments: ${[...data.fragments.keys()].join(", ")})`,
        );
      return f;
    }),
  );
  fragments.push(...inputs.userFragments);
  // Lines marked `# [kernel RANGE]` count only for kernels in that range.
  const requested = mergeFragments(forKernel(fragments, entry.version));
  const jobs = config.kernel.jobs > 0 ? config.kernel.jobs : inputs.hostCpus;
  return {
    entry,
    fragments,
    requested,
    jobs,
    whitelist: inputs.kata ? whitelistFor(inputs.kata, entry.version) : [],
    kataExcluded: inputs.kata?.excluded ?? [],
  };
}

export interface KernelKeyInputs {
  version: string;
  source: { provider: string; sha256: string; patches: string[] };
  base: string;
  fragment: string;
  toolchain: string[];
}

/** The kernel artifact key: everything that changes the built bzImage, nothing else. */
export function kernelCacheKey(
  plan: KernelPlan,
  base: string,
  source: KernelKeyInputs["source"],
  toolchain: string[],
): string {
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
