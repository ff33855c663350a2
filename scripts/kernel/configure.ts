/**
 * Turning a base config mode plus the merged fragment into a final .config (out of tree),
 * then checking it. Kata's method for allnoconfig: the fragment is KCONFIG_ALLCONFIG, so
 * everything not asked for stays off.
 */
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BaseConfig } from "../lib/config.js";
import { run } from "../lib/exec.js";
import type { Fragment, RequestedConfig } from "../data/fragments.js";
import { parseDotConfig, renderConfigFragment } from "../data/fragments.js";

export const ARCH = "x86_64";
const CONFIG_TIMEOUT_MS = 5 * 60_000;

export interface ConfigureOptions {
  tree: string;
  outDir: string;
  base: BaseConfig;
  requested: RequestedConfig;
  logFile: string;
  onLine?: (line: string) => void;
}

function make(opts: ConfigureOptions, args: string[], env: Record<string, string> = {}) {
  return run(["make", "-C", opts.tree, `O=${opts.outDir}`, `ARCH=${ARCH}`, ...args], {
    timeoutMs: CONFIG_TIMEOUT_MS,
    logFile: opts.logFile,
    onLine: opts.onLine,
    env,
  });
}

/** Writes `<outDir>/.config` and returns it parsed. */
export async function configureKernel(opts: ConfigureOptions): Promise<Map<string, string>> {
  await mkdir(opts.outDir, { recursive: true });
  const fragmentFile = join(opts.outDir, "cr-guest.fragment.config");
  const ours = renderConfigFragment(opts.requested);
  switch (opts.base) {
    case "allnoconfig":
      await writeFile(fragmentFile, ours);
      await make(opts, [`KCONFIG_ALLCONFIG=${fragmentFile}`, "allnoconfig"]);
      break;
    case "tinyconfig": {
      // What `make tinyconfig` merges, with our fragment last so it wins.
      const tiny = [
        "kernel/configs/tiny-base.config",
        "kernel/configs/tiny.config",
        "arch/x86/configs/tiny.config",
      ]
        .map((f) => readFileSync(join(opts.tree, f), "utf8"))
        .join("\n");
      await writeFile(fragmentFile, `${tiny}\n${ours}`);
      await make(opts, [`KCONFIG_ALLCONFIG=${fragmentFile}`, "allnoconfig"]);
      break;
    }
    case "defconfig":
      await writeFile(fragmentFile, ours);
      await make(opts, ["defconfig"]);
      await run(
        [
          join(opts.tree, "scripts/kconfig/merge_config.sh"),
          "-m",
          "-O",
          opts.outDir,
          join(opts.outDir, ".config"),
          join(opts.tree, "kernel/configs/kvm_guest.config"),
          fragmentFile,
        ],
        { timeoutMs: CONFIG_TIMEOUT_MS, logFile: opts.logFile, cwd: opts.tree },
      );
      // merge_config.sh -m only concatenates: olddefconfig resolves the result.
      await make(opts, ["olddefconfig"]);
      break;
  }
  // allnoconfig with KCONFIG_ALLCONFIG writes a fully resolved .config: an olddefconfig after
  // it changes nothing (checked on 6.12) and costs a second pass over Kconfig.
  return parseDotConfig(readFileSync(join(opts.outDir, ".config"), "utf8"));
}

export function fragmentSummary(fragments: Fragment[]) {
  return fragments.map((f) => ({ name: f.name, file: f.file, sha256: f.sha256, symbols: f.entries.length }));
}
