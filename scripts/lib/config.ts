/**
 * The pipeline configuration: the embedded default pipeline.yaml, an optional user file on
 * top, then flags. Validated against a schema kept as data: unknown keys name the closest
 * valid key, wrong types name the file and line.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { UserError } from "./errors.js";
import { DEFAULT_CONFIG } from "./paths.js";
import { didYouMean } from "./suggest.js";
import { loadYamlFile, parseYaml as parseYamlText, type LocatedYaml } from "./yaml-file.js";

export const BASE_CONFIGS = ["allnoconfig", "tinyconfig", "defconfig"] as const;
export type BaseConfig = (typeof BASE_CONFIGS)[number];
export const KERNEL_PROVIDERS = ["kernel.org", "debian", "local-tree", "local-mirror"] as const;
export type KernelProvider = (typeof KERNEL_PROVIDERS)[number];
export const KERNEL_KINDS = ["build", "debian-cloud"] as const;

export interface KernelConfig {
  kind: (typeof KERNEL_KINDS)[number];
  version: string;
  base: BaseConfig;
  fragment_set: string;
  extra_fragments: string[];
  providers: KernelProvider[];
  local_tree: string;
  local_mirror: string;
  debian_patches: boolean;
  allowlist: string;
  jobs: number;
  build_timeout_minutes: number;
  debian_cloud_suite: string;
  boot_check: boolean;
}

export const CRIU_PROVIDERS = ["local-source", "git", "local-mirror", "debian-source", "upstream", "debian-binary"] as const;
export type CriuProvider = (typeof CRIU_PROVIDERS)[number];
export const LINK_MODES = ["static", "dynamic"] as const;

export interface CriuConfig {
  /** Empty: the version of the source given (criu.local_source or criu.git). */
  version: string;
  /** Empty: the catalog's order for the version (provider_order, or the version's own). */
  providers: CriuProvider[];
  link: (typeof LINK_MODES)[number];
  patches: string[];
  local_source: string;
  local_mirror: string;
  git: { url: string; ref: string };
  upstream_url_base: string;
  guest_suite: string;
  static_build_suite: string;
  jobs: number;
  build_timeout_minutes: number;
}

export interface ImageConfig {
  name: string;
  base: string;
  extra_packages: string[];
  free_mib: number;
  guestfish_timeout_minutes: number;
}

export interface AgentConfig {
  binary: string;
  kata_src: string;
  build_timeout_minutes: number;
}

export const ACCELS = ["auto", "kvm", "tcg"] as const;

export interface BootConfig {
  accel: (typeof ACCELS)[number];
  memory_mib: number;
  cpus: number;
  boot_timeout_seconds: number;
  test_timeout_seconds: number;
  deadline_minutes: number;
  retries: number;
  scenarios: string;
  kernel_args: string[];
}

export interface PipelineConfig {
  cache_dir: string;
  debian: { mirror: string };
  kernel: KernelConfig;
  criu: CriuConfig;
  image: ImageConfig;
  agent: AgentConfig;
  boot: BootConfig;
  fragment_sets: Record<string, string[]>;
  /** Where the configuration came from (for messages and metadata). */
  sources: string[];
}

export type Schema =
  | { type: "string" | "number" | "boolean"; path?: boolean }
  | { type: "enum"; values: readonly string[] }
  | { type: "list"; of: Schema }
  | { type: "map"; of: Schema }
  | { type: "object"; keys: Record<string, Schema>; required?: string[] };

const str: Schema = { type: "string" };
const filePath: Schema = { type: "string", path: true };
const num: Schema = { type: "number" };
const bool: Schema = { type: "boolean" };

export const CONFIG_SCHEMA: Schema = {
  type: "object",
  keys: {
    cache_dir: filePath,
    debian: { type: "object", keys: { mirror: str } },
    kernel: {
      type: "object",
      keys: {
        kind: { type: "enum", values: KERNEL_KINDS },
        version: str,
        base: { type: "enum", values: BASE_CONFIGS },
        fragment_set: str,
        extra_fragments: { type: "list", of: filePath },
        providers: { type: "list", of: { type: "enum", values: KERNEL_PROVIDERS } },
        local_tree: filePath,
        local_mirror: filePath,
        debian_patches: bool,
        allowlist: filePath,
        jobs: num,
        build_timeout_minutes: num,
        debian_cloud_suite: str,
        boot_check: bool,
      },
    },
    criu: {
      type: "object",
      keys: {
        version: str,
        providers: { type: "list", of: { type: "enum", values: CRIU_PROVIDERS } },
        link: { type: "enum", values: LINK_MODES },
        patches: { type: "list", of: str },
        local_source: filePath,
        local_mirror: filePath,
        git: { type: "object", keys: { url: str, ref: str } },
        upstream_url_base: str,
        guest_suite: str,
        static_build_suite: str,
        jobs: num,
        build_timeout_minutes: num,
      },
    },
    image: {
      type: "object",
      keys: { name: str, base: filePath, extra_packages: { type: "list", of: str }, free_mib: num, guestfish_timeout_minutes: num },
    },
    agent: { type: "object", keys: { binary: filePath, kata_src: filePath, build_timeout_minutes: num } },
    boot: {
      type: "object",
      keys: {
        accel: { type: "enum", values: ACCELS },
        memory_mib: num,
        cpus: num,
        boot_timeout_seconds: num,
        test_timeout_seconds: num,
        deadline_minutes: num,
        retries: num,
        scenarios: filePath,
        kernel_args: { type: "list", of: str },
      },
    },
    fragment_sets: { type: "map", of: { type: "list", of: str } },
  },
};

/** Checks `value` against `schema`; relative paths are resolved against `baseDir`. */
export function validate(
  value: unknown,
  schema: Schema,
  path: (string | number)[],
  src: LocatedYaml,
  baseDir: string,
  what = "config",
): unknown {
  const where = () => {
    const line = src.lineOf(path);
    return `${src.file}${line ? `:${line}` : ""}`;
  };
  const name = path.join(".") || "(top level)";
  const fail = (problem: string, fix: string): never => {
    throw new UserError(`invalid ${what} at ${where()}: ${name} ${problem}`, fix);
  };
  switch (schema.type) {
    case "string":
      // "6.12" written unquoted is a number to YAML: take it as written ("6.10", not 6.1).
      if (typeof value === "number") value = src.sourceOf(path) ?? String(value);
      if (typeof value !== "string") return fail(`must be a string, got ${JSON.stringify(value)}`, "quote the value");
      return schema.path && value !== "" && !isAbsolute(value) ? resolve(baseDir, value) : value;
    case "number":
      if (typeof value !== "number") return fail(`must be a number, got ${JSON.stringify(value)}`, "write a plain number");
      return value;
    case "boolean":
      if (typeof value !== "boolean") return fail(`must be true or false, got ${JSON.stringify(value)}`, "write true or false");
      return value;
    case "enum":
      if (typeof value !== "string" || !schema.values.includes(value))
        return fail(
          `must be one of ${schema.values.join(", ")}, got ${JSON.stringify(value)}${typeof value === "string" ? didYouMean(value, schema.values) : ""}`,
          `use one of: ${schema.values.join(", ")}`,
        );
      return value;
    case "list":
      if (!Array.isArray(value)) return fail(`must be a list, got ${JSON.stringify(value)}`, "write a YAML list: [a, b]");
      return value.map((v, i) => validate(v, schema.of, [...path, i], src, baseDir, what));
    case "map":
    case "object": {
      if (value === null || typeof value !== "object" || Array.isArray(value))
        return fail(`must be a mapping, got ${JSON.stringify(value)}`, "write key: value pairs");
      const out: Record<string, unknown> = {};
      for (const [key, v] of Object.entries(value)) {
        if (schema.type === "object") {
          const sub = schema.keys[key];
          if (!sub) {
            const line = src.lineOf([...path, key]);
            throw new UserError(
              `invalid ${what} at ${src.file}${line ? `:${line}` : ""}: unknown key '${[...path, key].join(".")}'${didYouMean(key, Object.keys(schema.keys))}`,
              `valid keys here: ${Object.keys(schema.keys).join(", ")}`,
            );
          }
          out[key] = validate(v, sub, [...path, key], src, baseDir, what);
        } else {
          out[key] = validate(v, schema.of, [...path, key], src, baseDir, what);
        }
      }
      if (schema.type === "object")
        for (const key of schema.required ?? []) if (!(key in value)) fail(`needs the key '${key}'`, `add ${key}: to ${name}`);
      return out;
    }
  }
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

function validatedFile(src: LocatedYaml): Record<string, unknown> {
  const value = src.value ?? {};
  return validate(value, CONFIG_SCHEMA, [], src, dirname(src.file)) as Record<string, unknown>;
}

/** Parses `a.b.c=value` overrides; the value is parsed as YAML (numbers, lists, booleans). */
export function parseSetOverride(expr: string): { path: string[]; raw: string } {
  const eq = expr.indexOf("=");
  if (eq <= 0) throw new UserError(`bad --set '${expr}'`, "write --set key.path=value, e.g. --set kernel.version=6.1");
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
    merged = deepMerge(merged, validate(src.value, CONFIG_SCHEMA, [], src, process.cwd()) as Record<string, unknown>);
    sources.push(`--set ${expr}`);
  }
  const config = { ...(merged as unknown as PipelineConfig), sources };
  checkCrossReferences(config);
  return config;
}

function checkCrossReferences(config: PipelineConfig): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(config.image.name))
    throw new UserError(`image.name '${config.image.name}' is not a plain file name`, "use letters, digits, '.', '_' and '-'");
  if (config.agent.binary && config.agent.kata_src)
    throw new UserError("agent.binary and agent.kata_src are both set", "give either a prebuilt agent (--agent FILE) or a Kata source tree (--kata-src DIR)");
  if (config.criu.git.url && config.criu.local_source)
    throw new UserError("criu.git and criu.local_source are both set", "give either a git URL (--git URL --ref REF) or a local source (--local-source DIR)");
  if (!config.criu.version && !config.criu.git.url && !config.criu.local_source)
    throw new UserError("criu.version is empty and no source names a version", "give --criu V, or a source that carries its version: --local-source DIR or --git URL");
  const sets = Object.keys(config.fragment_sets);
  if (!config.fragment_sets[config.kernel.fragment_set])
    throw new UserError(
      `unknown fragment set '${config.kernel.fragment_set}' (kernel.fragment_set)${didYouMean(config.kernel.fragment_set, sets)}`,
      `define it under fragment_sets or pick one of: ${sets.join(", ")}`,
    );
}
