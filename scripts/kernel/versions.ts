/** The kernel version catalog (kernel-versions.yaml) and version resolution. Pure but for loading. */
import semver from "semver";
import { UserError } from "../lib/errors.js";
import { KERNEL_VERSIONS_FILE } from "../lib/paths.js";
import { loadYamlFile } from "../lib/yaml-file.js";

export interface KernelVersionEntry {
  version: string;
  kernel_org?: { url: string; sha256?: string };
  debian?: { version: string; suites: string[]; orig_sha256: string; orig_size?: number };
}

export type KernelCatalog = Map<string, KernelVersionEntry>;

export function parseKernelCatalog(value: unknown, file: string): KernelCatalog {
  const versions = (value as { versions?: Record<string, Omit<KernelVersionEntry, "version">> })?.versions;
  if (!versions || typeof versions !== "object")
    throw new UserError(`${file}: missing 'versions:' mapping`, "see the comment at the top of kernel-versions.yaml");
  const catalog: KernelCatalog = new Map();
  for (const [version, entry] of Object.entries(versions)) {
    if (!semver.valid(version))
      throw new UserError(`${file}: '${version}' is not a full kernel version (X.Y.Z)`, "quote full versions, e.g. \"6.12.107\"");
    catalog.set(version, { version, ...entry });
  }
  return catalog;
}

export function loadKernelCatalog(file = KERNEL_VERSIONS_FILE): KernelCatalog {
  return parseKernelCatalog(loadYamlFile(file).value, file);
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
