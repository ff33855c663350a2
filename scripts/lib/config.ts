/**
 * The pipeline configuration: the embedded default pipeline.yaml, an optional user file on
 * top, then flags. Checked against one zod schema (CONFIG_SCHEMA): unknown keys name the
 * closest valid key, wrong types name the file and line.
 */
import { dirname, resolve } from "node:path";
import { BOOTSTRAPPERS } from "./chroot.js";
import { UserError } from "./errors.js";
import { DEFAULT_CONFIG } from "./paths.js";
import { didYouMean } from "./suggest.js";
import { z } from "zod";
import { loadYamlFile, parseYaml as parseYamlText, type LocatedYaml } from "./yaml-file.js";
import { checkYaml, deepPartial, filePath } from "./yaml-schema.js";

export const BASE_CONFIGS = ["allnoconfig", "tinyconfig", "defconfig"] as const;
export type BaseConfig = (typeof BASE_CONFIGS)[number];
export const KERNEL_PROVIDERS = ["kernel.org", "debian", "local-tree", "local-mirror"] as const;
export type KernelProvider = (typeof KERNEL_PROVIDERS)[number];
export const KERNEL_KINDS = ["build", "debian-cloud"] as const;

const str = z.string();
const num = z.number();
const bool = z.boolean();
const strictObject = z.strictObject;

const KernelConfigSchema = strictObject({
  kind: z.enum(KERNEL_KINDS),
  version: str,
  base: z.enum(BASE_CONFIGS),
  fragment_set: str,
  extra_fragments: z.array(filePath()),
  providers: z.array(z.enum(KERNEL_PROVIDERS)),
  local_tree: filePath(),
  local_mirror: filePath(),
  debian_patches: bool,
  allowlist: filePath(),
  jobs: num,
  build_timeout_minutes: num,
  debian_cloud_suite: str,
  boot_check: bool,
  kata_fragments: filePath(),
  kata_build_type: str,
  kata_confidential: bool,
});

export const CRIU_PROVIDERS = [
  "local-source",
  "git",
  "local-mirror",
  "debian-source",
  "upstream",
  "debian-binary",
] as const;
export type CriuProvider = (typeof CRIU_PROVIDERS)[number];
export const LINK_MODES = ["static", "dynamic"] as const;

const CriuConfigSchema = strictObject({
  /** Empty: the version of the source given (criu.local_source or criu.git). */
  version: str,
  /** Empty: the catalog's order for the version (provider_order, or the version's own). */
  providers: z.array(z.enum(CRIU_PROVIDERS)),
  link: z.enum(LINK_MODES),
  patches: z.array(str),
  local_source: filePath(),
  local_mirror: filePath(),
  git: strictObject({ url: str, ref: str }),
  upstream_url_base: str,
  guest_suite: str,
  static_build_suite: str,
  static_guest_suite: str,
  jobs: num,
  build_timeout_minutes: num,
});

export const ACCELS = ["auto", "kvm", "tcg"] as const;

/** pipeline.yaml: one schema for the type, the check and the published JSON Schema. */
export const CONFIG_SCHEMA = strictObject({
  cache_dir: filePath(),
  debian: strictObject({ mirror: str, bootstrap: z.enum(BOOTSTRAPPERS), accept_expired_release: bool }),
  kernel: KernelConfigSchema,
  criu: CriuConfigSchema,
  image: strictObject({
    name: str,
    base: filePath(),
    extra_packages: z.array(str),
    free_mib: num,
    guestfish_timeout_minutes: num,
  }),
  agent: strictObject({ binary: filePath(), kata_src: filePath(), build_timeout_minutes: num }),
  boot: strictObject({
    accel: z.enum(ACCELS),
    memory_mib: num,
    cpus: num,
    boot_timeout_seconds: num,
    test_timeout_seconds: num,
    scenario_jobs: num,
    deadline_minutes: num,
    retries: num,
    scenarios: filePath(),
    kernel_args: z.array(str),
  }),
  fragment_sets: z.record(str, z.array(str)),
});

/** A user file or a --set: any subset of the keys. */
export const USER_CONFIG_SCHEMA = deepPartial(CONFIG_SCHEMA);

export type KernelConfig = z.infer<typeof KernelConfigSchema>;
export type CriuConfig = z.infer<typeof CriuConfigSchema>;
export type ImageConfig = PipelineConfig["image"];
export type AgentConfig = PipelineConfig["agent"];
export type BootConfig = PipelineConfig["boot"];

export interface PipelineConfig extends z.infer<typeof CONFIG_SCHEMA> {
  /** Where the configuration came from (for messages and metadata). */
  sources: string[];
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && b && typeof b === "object" && !Array.isArray(b)
        ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

function validatedFile(src: LocatedYaml, baseDir = dirname(src.file)): Record<string, unknown> {
  return checkYaml(USER_CONFIG_SCHEMA, src, { what: "config", baseDir }) as Record<string, unknown>;
}

/** Parses `a.b.c=value` overrides; the value is parsed as YAML (numbers, lists, booleans). */
export function parseSetOverride(expr: string): { path: string[]; raw: string } {
  const eq = expr.indexOf("=");
  if (eq <= 0)
    throw new UserError(`bad --set '${expr}'`, "write --set key.path=value, e.g. --set kernel.version=6.1");
  return { path: expr.slice(0, eq).split("."), raw: expr.slice(eq + 1) };
}

export interface LoadOptions {
  configFile?: string;
  /** `key.path=value` overrides, applied last. */
  set?: string[];
}

export function loadConfig(opts: LoadOptions = {}): PipelineConfig {
  const sources = [DEFAULT_CONFIG];
  let merged = validatedFile(loadYamlFile(DEFAULT_CONFIG));
  if (opts.configFile) {
    const file = resolve(opts.configFile);
    merged = deepMerge(merged, validatedFile(loadYamlFile(file)));
    sources.push(file);
  }
  for (const expr of opts.set ?? []) {
    const { path, raw } = parseSetOverride(expr);
    // A one-key document, validated like a file, so errors read the same way.
    const lines = path.map((key, i) => `${"  ".repeat(i)}${key}:`);
    lines[lines.length - 1] += ` ${raw}`;
    const src = parseYamlText(lines.join("\n"), `--set ${expr}`);
    merged = deepMerge(merged, validatedFile(src, process.cwd()));
    sources.push(`--set ${expr}`);
  }
  // The built-in file names every key: the merged result is checked whole.
  const config = {
    ...(checkYaml(CONFIG_SCHEMA, parseYamlText("{}", DEFAULT_CONFIG), { what: "config" }, merged) as z.infer<
      typeof CONFIG_SCHEMA
    >),
    sources,
  };
  checkCrossReferences(config);
  return config;
}

function checkCrossReferences(config: PipelineConfig): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(config.image.name))
    throw new UserError(
      `image.name '${config.image.name}' is not a plain file name`,
      "use letters, digits, '.', '_' and '-'",
    );
  if (config.agent.binary && config.agent.kata_src)
    throw new UserError(
      "agent.binary and agent.kata_src are both set",
      "give either a prebuilt agent (--agent FILE) or a Kata source tree (--kata-src DIR)",
    );
  if (config.criu.git.url && config.criu.local_source)
    throw new UserError(
      "criu.git and criu.local_source are both set",
      "give either a git URL (--git URL --ref REF) or a local source (--local-source DIR)",
    );
  if (!config.criu.version && !config.criu.git.url && !config.criu.local_source)
    throw new UserError(
      "criu.version is empty and no source names a version",
      "give --criu V, or a source that carries its version: --local-source DIR or --git URL",
    );
  const sets = Object.keys(config.fragment_sets);
  if (!config.fragment_sets[config.kernel.fragment_set])
    throw new UserError(
      `unknown fragment set '${config.kernel.fragment_set}' (kernel.fragment_set)${didYouMean(config.kernel.fragment_set, sets)}`,
      `define it under fragment_sets or pick one of: ${sets.join(", ")}`,
    );
}
