/**
 * A Kata Containers fragment tree (tools/packaging/kernel/configs/fragments) read the way
 * Kata's build-kernel.sh reads it, so a Kata kernel maintainer can verify their own tree:
 *   - common/*.conf, minus files whose text carries a `!<arch>` tag (Kata greps the whole
 *     file) and minus `!confidential` files unless confidential is asked for;
 *   - <arch>/*.conf;
 *   - build-type/<t>/*.conf for a build type.
 * Misses Kata accepts are in whitelist.conf, and in whitelist-<full kernel version>.conf when
 * present. Kata filters merge_config.sh's "not in final" lines with `grep -v -f`, so an entry
 * is a pattern matched as a substring: CONFIG_MEMCG_SWAP also covers CONFIG_MEMCG_SWAP_ENABLED.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../lib/errors.js";
import { parseFragment, type Fragment } from "./fragments.js";

export interface KataTreeOptions {
  /** Kata's arch name (its <arch>/ directory). */
  arch: string;
  buildType?: string;
  confidential?: boolean;
}

export interface WhitelistEntry {
  pattern: string;
  file: string;
  line: number;
}

export interface KataTree {
  dir: string;
  fragments: Fragment[];
  /** common/ files left out, and why (for the report). */
  excluded: { file: string; reason: string }[];
  whitelist: WhitelistEntry[];
  /** whitelist-<full kernel version>.conf files, by that version. */
  versionWhitelists: Map<string, WhitelistEntry[]>;
}

const confFiles = (dir: string): string[] =>
  readdirSync(dir)
    .filter((n) => n.endsWith(".conf") && statSync(join(dir, n)).isFile())
    .sort()
    .map((n) => join(dir, n));

export function readWhitelist(file: string): WhitelistEntry[] {
  // Comments and blank lines are skipped: as grep patterns, a blank line would match every miss.
  return readFileSync(file, "utf8")
    .split("\n")
    .map((raw, i) => ({ pattern: raw.trim(), file, line: i + 1 }))
    .filter((e) => e.pattern && !e.pattern.startsWith("#"));
}

/** Resolve: reads the tree. The whitelist for a kernel version is taken by `whitelistFor`. */
export function readKataTree(dir: string, o: KataTreeOptions): KataTree {
  const common = join(dir, "common");
  if (!existsSync(common) || !statSync(common).isDirectory())
    throw new UserError(
      `${dir} is not a Kata fragments tree: it has no common/ directory`,
      "pass kata-containers/tools/packaging/kernel/configs/fragments",
    );
  const archDir = join(dir, o.arch);
  if (!existsSync(archDir))
    throw new UserError(
      `${dir} has no ${o.arch}/ directory`,
      `Kata keeps the ${o.arch} fragments there; is this a Kata fragments tree for ${o.arch}?`,
    );
  const excluded: KataTree["excluded"] = [];
  const files: string[] = [];
  for (const f of confFiles(common)) {
    const text = readFileSync(f, "utf8");
    if (text.includes(`!${o.arch}`)) excluded.push({ file: f, reason: `tagged !${o.arch}` });
    else if (!o.confidential && text.includes("!confidential"))
      excluded.push({ file: f, reason: "tagged !confidential (pass --kata-confidential to include it)" });
    else files.push(f);
  }
  files.push(...confFiles(archDir));
  if (o.buildType) {
    const bt = join(dir, "build-type", o.buildType);
    if (!existsSync(bt))
      throw new UserError(
        `${dir} has no build-type/${o.buildType}/`,
        `build types here: ${existsSync(join(dir, "build-type")) ? readdirSync(join(dir, "build-type")).join(", ") : "none"}`,
      );
    files.push(...confFiles(bt));
  }
  const whitelistFile = join(dir, "whitelist.conf");
  const versionWhitelists = new Map(
    readdirSync(dir)
      .map((n) => /^whitelist-(.+)\.conf$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1], readWhitelist(join(dir, m[0]))] as const),
  );
  return {
    dir,
    fragments: files.map((f) => parseFragment(readFileSync(f, "utf8"), f)),
    excluded,
    whitelist: existsSync(whitelistFile) ? readWhitelist(whitelistFile) : [],
    versionWhitelists,
  };
}

/** The whitelist for one kernel (pure): whitelist.conf plus whitelist-<full version>.conf. */
export function whitelistFor(tree: KataTree, kernelVersion: string): WhitelistEntry[] {
  return [...tree.whitelist, ...(tree.versionWhitelists.get(kernelVersion) ?? [])];
}

/** The entry that accepts a miss of `symbol`, as `grep -v -f` does: a substring of merge_config.sh's line. */
export function whitelisted(symbol: string, whitelist: WhitelistEntry[]): WhitelistEntry | undefined {
  const line = `Value requested for ${symbol} not in final .config`;
  return whitelist.find((w) => line.includes(w.pattern));
}
