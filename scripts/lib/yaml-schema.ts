/**
 * YAML files checked against zod schemas: one schema gives the TypeScript type and the check,
 * and every error names the file and line, with "did you mean" for unknown keys and values.
 * Used for pipeline.yaml, matrix.yaml and every repo data file.
 */
import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { UserError } from "./errors.js";
import { didYouMean } from "./suggest.js";
import { loadYamlFile, type LocatedYaml } from "./yaml-file.js";

/** A file path: resolved against the directory of the file that names it. */
export const filePath = () => z.string().meta({ path: true });

/** A mapping that refuses keys it does not name (a typo is an error, not ignored). */
export const strictObject = <S extends z.ZodRawShape>(shape: S) => z.strictObject(shape);

type Path = (string | number)[];

interface Def {
  type: string;
  innerType?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  in?: z.ZodType;
}

const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The schema under optional/default/nullable/readonly/pipe wrappers. */
export function unwrap(s: z.ZodType): z.ZodType {
  for (;;) {
    const d = defOf(s);
    if (
      d.innerType &&
      ["optional", "default", "nullable", "readonly", "prefault", "catch", "nonoptional"].includes(d.type)
    )
      s = d.innerType;
    else if (d.type === "pipe" && d.in) s = d.in;
    else return s;
  }
}

/** The schema of the value at `path` below `s`, if the schema says. */
export function schemaAt(s: z.ZodType, path: Path): z.ZodType | undefined {
  let cur: z.ZodType | undefined = s;
  for (const key of path) {
    if (!cur) return undefined;
    const d = defOf(unwrap(cur));
    if (d.type === "object") cur = (unwrap(cur) as z.ZodObject).shape[String(key)];
    else if (d.type === "array") cur = d.element;
    else if (d.type === "record") cur = d.valueType;
    else return undefined;
  }
  return cur;
}

/** The keys a mapping schema accepts (for "did you mean" and "valid keys"). */
export function keysOf(s: z.ZodType | undefined): string[] {
  if (!s) return [];
  const u = unwrap(s);
  return defOf(u).type === "object" ? Object.keys((u as z.ZodObject).shape) : [];
}

/**
 * Before the check: a scalar the schema wants as a string is taken as written ("6.10"
 * unquoted is the number 6.1 to YAML), and file paths are resolved against `baseDir`.
 */
function normalize(
  value: unknown,
  s: z.ZodType | undefined,
  path: Path,
  src: LocatedYaml,
  baseDir: string | undefined,
): unknown {
  if (!s) return value;
  const u = unwrap(s);
  const d = defOf(u);
  if (d.type === "string" || d.type === "enum") {
    if (typeof value === "number") value = src.sourceOf(path) ?? String(value);
    const meta = u.meta() as { path?: boolean } | undefined;
    if (meta?.path && baseDir && typeof value === "string" && value !== "" && !isAbsolute(value))
      return resolve(baseDir, value);
    return value;
  }
  if (Array.isArray(value) && d.type === "array")
    return value.map((v, i) => normalize(v, d.element, [...path, i], src, baseDir));
  if (
    value &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    (d.type === "object" || d.type === "record")
  )
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [
        k,
        normalize(
          v,
          d.type === "object" ? (u as z.ZodObject).shape[k] : d.valueType,
          [...path, k],
          src,
          baseDir,
        ),
      ]),
    );
  return value;
}

const FIX_BY_TYPE: Record<string, string> = {
  string: "quote the value",
  number: "write a plain number",
  boolean: "write true or false",
  array: "write a YAML list: [a, b]",
  object: "write key: value pairs",
  record: "write key: value pairs",
};

function valueAt(value: unknown, path: Path): unknown {
  let cur = value;
  for (const k of path)
    cur = cur && typeof cur === "object" ? (cur as Record<string | number, unknown>)[k] : undefined;
  return cur;
}

/** One zod issue as a user reads it: file:line, the key path, what is wrong, and the fix. */
function userErrorOf(
  issue: z.core.$ZodIssue,
  schema: z.ZodType,
  value: unknown,
  src: LocatedYaml,
  what: string,
  prefix: Path,
): UserError {
  const at = (path: Path) => {
    const line = src.lineOf([...prefix, ...path]) ?? src.lineOf(prefix);
    return `${src.file}${line ? `:${line}` : ""}`;
  };
  const path = issue.path as Path;
  const name = [...prefix, ...path].join(".") || "(top level)";
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0];
    const known = keysOf(schemaAt(schema, path));
    return new UserError(
      `invalid ${what} at ${at([...path, key])}: unknown key '${[...prefix, ...path, key].join(".")}'${didYouMean(key, known)}`,
      `valid keys here: ${known.join(", ")}`,
    );
  }
  const got = valueAt(value, path);
  if (issue.code === "invalid_value") {
    const values = issue.values.map(String);
    return new UserError(
      `invalid ${what} at ${at(path)}: ${name} must be one of ${values.join(", ")}, got ${JSON.stringify(got)}${typeof got === "string" ? didYouMean(got, values) : ""}`,
      `use one of: ${values.join(", ")}`,
    );
  }
  if (issue.code === "invalid_type") {
    if (got === undefined) {
      const parent = path.slice(0, -1);
      const pname = [...prefix, ...parent].join(".");
      return new UserError(
        `invalid ${what} at ${at(parent)}: ${pname || "(top level)"} needs the key '${path.at(-1)}'`,
        `add ${path.at(-1)}: to ${pname || "the file"}`,
      );
    }
    const expected =
      issue.expected === "object" || issue.expected === "record"
        ? "a mapping"
        : issue.expected === "array"
          ? "a list"
          : issue.expected === "boolean"
            ? "true or false"
            : `a ${issue.expected}`;
    return new UserError(
      `invalid ${what} at ${at(path)}: ${name} must be ${expected}, got ${JSON.stringify(got)}`,
      FIX_BY_TYPE[issue.expected] ?? "see the comment at the top of the file",
    );
  }
  return new UserError(
    `invalid ${what} at ${at(path)}: ${name}: ${issue.message}`,
    "see the comment at the top of the file",
  );
}

export interface CheckOptions {
  /** What the file is, for messages: "config", "matrix", "CRIU catalog". */
  what: string;
  /** Resolve file paths (filePath()) against this directory. */
  baseDir?: string;
  /** Where in the file the checked value sits (a part of a document checked on its own). */
  at?: Path;
}

/** The document of `src` checked against `schema`; the first problem is a UserError with file:line. */
export function checkYaml<S extends z.ZodType>(
  schema: S,
  src: LocatedYaml,
  o: CheckOptions,
  value: unknown = src.value,
): z.infer<S> {
  const at = o.at ?? [];
  const normalized = normalize(value ?? {}, schema, at, src, o.baseDir);
  const r = schema.safeParse(normalized);
  if (r.success) return r.data;
  // An unknown key first: it usually explains the rest (a misspelt key is also a missing one).
  const issues = [...r.error.issues].sort(
    (a, b) => Number(b.code === "unrecognized_keys") - Number(a.code === "unrecognized_keys"),
  );
  throw userErrorOf(issues[0], schema, normalized, src, o.what, at);
}

/** Loads and checks a YAML file. */
export function loadYamlWith<S extends z.ZodType>(schema: S, file: string, o: CheckOptions): z.infer<S> {
  return checkYaml(schema, loadYamlFile(file), o);
}

/** The same schema with every mapping's keys optional, at every depth (a partial config file). */
export function deepPartial(s: z.ZodType): z.ZodType {
  const u = unwrap(s);
  const d = defOf(u);
  if (d.type !== "object") return s;
  const shape = Object.fromEntries(
    Object.entries((u as z.ZodObject).shape).map(([k, v]) => [k, deepPartial(v as z.ZodType).optional()]),
  );
  return z.strictObject(shape);
}
