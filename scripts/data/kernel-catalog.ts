/** The kernel version catalog (kernel-versions.yaml) and version resolution. Pure but for loading. */
import semver from "semver";
import { UserError } from "../lib/errors.js";
import { KERNEL_VERSIONS_FILE } from "../lib/paths.js";
import { z } from "zod";
import { loadYamlFile, type LocatedYaml } from "../lib/yaml-file.js";
import { checkYaml } from "../lib/yaml-schema.js";

const EntrySchema = z.strictObject({
  kernel_org: z.strictObject({ url: z.string(), sha256: z.string().optional() }).optional(),
  debian: z
    .strictObject({
      version: z.string(),
      suites: z.array(z.string()),
      orig_sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be a sha256"),
      orig_size: z.number().optional(),
    })
    .optional(),
});

/** kernel-versions.yaml. */
export const KERNEL_CATALOG_SCHEMA = z.strictObject({ versions: z.record(z.string(), EntrySchema) });

export interface KernelVersionEntry extends z.infer<typeof EntrySchema> {
  version: string;
}

export type KernelCatalog = Map<string, KernelVersionEntry>;

export function parseKernelCatalog(src: LocatedYaml): KernelCatalog {
  const doc = checkYaml(KERNEL_CATALOG_SCHEMA, src, { what: "kernel catalog" });
  const catalog: KernelCatalog = new Map();
  for (const [version, entry] of Object.entries(doc.versions)) {
    if (!semver.valid(version))
      throw new UserError(
        `${src.file}:${src.lineOf(["versions", version]) ?? "?"}: '${version}' is not a full kernel version (X.Y.Z)`,
        'quote full versions, e.g. "6.12.107"',
      );
    catalog.set(version, { version, ...entry });
  }
  return catalog;
}

export function loadKernelCatalog(file = KERNEL_VERSIONS_FILE): KernelCatalog {
  return parseKernelCatalog(loadYamlFile(file));
}

/** "6.12" -> newest pinned 6.12.x; "6.12.107" -> exactly that; "latest" -> newest pinned. */
export function resolveKernelVersion(requested: string, catalog: KernelCatalog): KernelVersionEntry {
  const known = [...catalog.keys()].sort(semver.rcompare);
  const want = requested.trim();
  let match: string | undefined;
  if (want === "latest") match = known[0];
  else if (semver.valid(want)) match = catalog.has(want) ? want : undefined;
  else if (/^\d+(\.\d+)?$/.test(want)) match = semver.maxSatisfying(known, `${want}.x`) ?? undefined;
  if (!match)
    throw new UserError(
      `unknown kernel version '${requested}'`,
      `known versions: ${known.join(", ")} (a prefix like 6.12 picks the newest); add a pin to kernel-versions.yaml for another`,
    );
  return catalog.get(match)!;
}
