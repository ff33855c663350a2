import { join } from "node:path";
import { REPO_ROOT } from "../lib/paths.js";

/** Benchmarks run the real CLI, as a user would. */
export const CLI_PATH = join(REPO_ROOT, "bin", "cr-guest");
