import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // Integration tests build kernels and boot QEMU: they carry their own deadlines.
    testTimeout: 30_000,
    hookTimeout: 3_600_000,
    pool: "forks",
    fileParallelism: false,
    reporters: ["default"],
  },
});
