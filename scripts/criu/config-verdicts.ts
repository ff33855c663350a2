/**
 * What a kernel .config gives CRIU before anything is built: for the CRIU a command plans
 * (its build and patches), or for every catalog version, the verdict of requirement-check.ts
 * (does CRIU start, does `criu check` pass, how many features). Reads the repository's data.
 */
import type { PipelineConfig } from "../lib/config.js";
import { repoData } from "../data/repo-data.js";
import {
  criuBuildConditions,
  judgeConfig,
  type ConfigVerdict,
  type CriuFacts,
  type KernelFacts,
} from "../data/requirement-check.js";
import { semverOf } from "../data/criu-catalog.js";
import { servingCandidate, type CriuPlan } from "./stage.js";
import semver from "semver";

/** The CRIU a plan serves, as the map judges it: its version, how it is built, its patches. */
export function criuFactsOf(config: PipelineConfig, plan: CriuPlan): CriuFacts {
  const provider = servingCandidate(plan)?.provider;
  return {
    version: plan.entry.version,
    build: criuBuildConditions({ link: provider === "debian-binary" ? "debian-binary" : config.criu.link }),
    patches: plan.patches.map((p) => p.name),
  };
}

/**
 * The verdicts for the planned CRIU, or with none planned for every catalog version, oldest
 * first, each as the configured link mode builds it and without patches (a patch names the
 * versions it applies to; --criu V --patch P judges a patched one).
 */
export function configVerdicts(
  config: PipelineConfig,
  kernel: KernelFacts,
  plan?: CriuPlan,
): ConfigVerdict[] {
  const data = repoData();
  const criu: CriuFacts[] = plan
    ? [criuFactsOf(config, plan)]
    : [...data.criu.versions.keys()]
        .sort((a, b) => semver.compare(semverOf(a), semverOf(b)))
        .map((version) => ({ version, build: criuBuildConditions({ link: config.criu.link }), patches: [] }));
  return criu.map((c) => judgeConfig(data.kernelRequirements, kernel, c));
}
