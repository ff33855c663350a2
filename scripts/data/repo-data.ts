/**
 * RepoData: the repository's own data (catalogs, patches, findings rules), loaded and checked
 * once per process and passed to planning as a value, so planning reads no files.
 */
import { loadAgentPatches, type AgentPatchCatalog } from "./agent-patches.js";
import { loadCriuCatalog, type CriuCatalog } from "./criu-catalog.js";
import { loadPatchCatalog, type PatchSpec } from "./criu-patches.js";
import { loadFindingRules, type FindingRule } from "./findings.js";
import { loadKernelCatalog, type KernelCatalog } from "./kernel-catalog.js";
import { loadFragmentDir, type Fragment } from "./fragments.js";
import { loadKernelRequirements, type KernelRequirements } from "./kernel-requirements.js";
import { loadScenarios, migratingCases, observedTests } from "./scenarios.js";
import { join } from "node:path";
import { REPO_ROOT } from "../lib/paths.js";

/** The scenario tests (scenario/case) scenarios.yaml names: its migrating and observing cases. */
export function scenarioTests(file = join(REPO_ROOT, "scenarios.yaml")): Set<string> {
  const scenarios = loadScenarios(file);
  return new Set([...migratingCases(scenarios), ...observedTests(scenarios)]);
}

export interface RepoData {
  kernels: KernelCatalog;
  criu: CriuCatalog;
  criuPatches: Map<string, PatchSpec>;
  agentPatches: AgentPatchCatalog;
  findings: FindingRule[];
  /** kernel-fragments/*.conf by name (guest-base, checkpoint-restore, ...). */
  fragments: Map<string, Fragment>;
  /** What each CRIU check, feature and start-up probe needs from the kernel. */
  kernelRequirements: KernelRequirements;
}

let loaded: RepoData | undefined;

/** The repository's data, loaded on first use (each file checked against its schema). */
export function repoData(): RepoData {
  if (!loaded) {
    const criu = loadCriuCatalog();
    const criuPatches = loadPatchCatalog();
    loaded = {
      kernels: loadKernelCatalog(),
      criu,
      criuPatches,
      agentPatches: loadAgentPatches(),
      findings: loadFindingRules(criu),
      fragments: loadFragmentDir(),
      kernelRequirements: loadKernelRequirements(undefined, {
        knownPatches: new Set(criuPatches.keys()),
        knownTests: scenarioTests(),
      }),
    };
  }
  return loaded;
}
