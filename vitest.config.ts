import { defineConfig } from "vitest/config";
import { NoSkipsInCi } from "./test/helpers/no-skips-in-ci.js";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One TMPDIR and one cache directory per run (CR_GUEST_TEST_CACHE), never the checkout's images/.
    globalSetup: ["test/global-setup.ts"],
    // Integration tests build kernels and boot QEMU: they carry their own deadlines.
    testTimeout: 30_000,
    hookTimeout: 3_600_000,
    pool: "forks",
    fileParallelism: false,
    reporters: ["default", ...(process.env.CI === "true" ? [new NoSkipsInCi()] : [])],
  },
});
