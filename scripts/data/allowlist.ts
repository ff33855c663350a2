/**
 * The kernel allowlist (kernel.allowlist, kernel-fragments/allowlist.yaml by default):
 * requested symbols whose absence from the final .config is known and accepted, per kernel
 * version range.
 */
import { existsSync } from "node:fs";
import semver from "semver";
import { z } from "zod";
import { loadYamlWith } from "../lib/yaml-schema.js";

const AllowEntrySchema = z.strictObject({
  symbol: z.string().regex(/^CONFIG_[A-Z0-9_]+$/, "must be a CONFIG_ symbol"),
  /** semver range of kernel versions the drop is accepted for. */
  kernels: z.string().refine((r) => semver.validRange(r) !== null, "must be a semver range, e.g. \">=6.1 <6.3\""),
  reason: z.string().min(1),
});

export const ALLOWLIST_SCHEMA = z.strictObject({ accepted: z.array(AllowEntrySchema) });

export type AllowEntry = z.infer<typeof AllowEntrySchema>;

/** No file (or an empty name): nothing is accepted. */
export function loadAllowlist(file: string): AllowEntry[] {
  if (!file || !existsSync(file)) return [];
  return loadYamlWith(ALLOWLIST_SCHEMA, file, { what: "allowlist" }).accepted;
}
