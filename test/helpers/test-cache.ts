/**
 * The run's cache directory (CR_GUEST_TEST_CACHE, made by test/global-setup.ts): every CLI call
 * and every config of a test uses it, never the checkout's images/, which is the user's cache.
 * One per run, shared by all test files, so the suite builds its kernel once.
 */
import { loadConfig, type PipelineConfig } from "../../scripts/lib/config.js";

export function testCacheDir(): string {
  const dir = process.env.CR_GUEST_TEST_CACHE;
  if (!dir)
    throw new Error(
      "CR_GUEST_TEST_CACHE is not set: run the tests through vitest.config.ts, whose global setup makes the run's cache",
    );
  return dir;
}

/** The default configuration with the run's cache, then `key.path=value` overrides. */
export function testConfig(...set: string[]): PipelineConfig {
  return loadConfig({ set: [`cache_dir=${JSON.stringify(testCacheDir())}`, ...set] });
}
