import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

/** The repository root: data files (fragments, catalogs, pipeline.yaml) live here. */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const DEFAULT_CONFIG = join(REPO_ROOT, "pipeline.yaml");
export const FRAGMENTS_DIR = join(REPO_ROOT, "kernel-fragments");
export const KERNEL_VERSIONS_FILE = join(REPO_ROOT, "kernel-versions.yaml");
export const CRIU_BUILDS_DIR = join(REPO_ROOT, "criu-builds");
export const CRIU_CATALOG_FILE = join(CRIU_BUILDS_DIR, "versions.yaml");
export const CRIU_PATCHES_DIR = join(CRIU_BUILDS_DIR, "patches");
export const AGENT_PATCHES_DIR = join(REPO_ROOT, "agent-patches");
