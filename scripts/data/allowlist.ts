/**
 * The kernel allowlist (kernel.allowlist, kernel-fragments/allowlist.yaml by default):
 * requested symbols whose absence from the final .config is known and accepted, per kernel
 * version range; and Kata whitelist files it imports, whose patterns are matched as Kata
 * matches them (substrings) and reported in the "whitelisted by Kata" group.
 */
import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import semver from "semver";
import { z } from "zod";
import { UserError } from "../lib/errors.js";
import { loadYamlFile } from "../lib/yaml-file.js";
import { checkYaml } from "../lib/yaml-schema.js";
import { readWhitelist, type WhitelistEntry } from "./kata-fragments.js";

const AllowEntrySchema = z.strictObject({
  symbol: z.string().regex(/^CONFIG_[A-Z0-9_]+$/, "must be a CONFIG_ symbol"),
  /** semver range of kernel versions the drop is accepted for. */
  kernels: z
    .string()
    .refine((r) => semver.validRange(r) !== null, 'must be a semver range, e.g. ">=6.1 <6.3"'),
  reason: z.string().min(1),
});

export const ALLOWLIST_SCHEMA = z.strictObject({
  accepted: z.array(AllowEntrySchema),
  /** Kata whitelist.conf files (paths relative to this file), e.g. a Kata checkout's. */
  kata_whitelists: z.array(z.string().min(1)).optional(),
});

export type AllowEntry = z.infer<typeof AllowEntrySchema>;

export interface Allowlist {
  accepted: AllowEntry[];
  /** The imported Kata whitelists' entries, each naming its file and line. */
  whitelist: WhitelistEntry[];
}

/** No file (or an empty name): nothing is accepted. */
export function loadAllowlist(file: string): Allowlist {
  if (!file || !existsSync(file)) return { accepted: [], whitelist: [] };
  const src = loadYamlFile(file);
  const doc = checkYaml(ALLOWLIST_SCHEMA, src, { what: "allowlist" });
  const whitelist = (doc.kata_whitelists ?? []).flatMap((rel, i) => {
    const path = resolve(dirname(file), rel);
    if (!existsSync(path) || !statSync(path).isFile())
      throw new UserError(
        `${file}:${src.lineOf(["kata_whitelists", i]) ?? "?"}: Kata whitelist ${rel} not found (${path})`,
        "name a whitelist.conf file, relative to the allowlist",
      );
    return readWhitelist(path);
  });
  return { accepted: doc.accepted, whitelist };
}

/** What verification accepts: the allowlist's entries, the Kata tree's whitelist and the imported ones. */
export function acceptedMisses(
  allowlistFile: string,
  treeWhitelist: WhitelistEntry[],
): { allowlist: AllowEntry[]; whitelist: WhitelistEntry[] } {
  const a = loadAllowlist(allowlistFile);
  return { allowlist: a.accepted, whitelist: [...treeWhitelist, ...a.whitelist] };
}
