/**
 * Boot profiles (boot-profiles/*.yaml): how another runtime boots its guest, as facts read from
 * that runtime's own files, each with the line it rests on. kata-4.1.0.yaml is how Kata
 * Containers 4.1.0 builds the QEMU command line, the guest kernel command line, the agent's
 * systemd units and the image's DAX header.
 *
 * Two kinds of citation: `source` and `also` name a line of the files the profile was read from
 * (the inputs; tests hold each against them), `upstream` a line of a file at the same tag that is
 * not among the inputs (read elsewhere, not held by a test). Pure but for loading.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { UserError } from "../lib/errors.js";
import { REPO_ROOT } from "../lib/paths.js";
import { loadYamlFile, type LocatedYaml } from "../lib/yaml-file.js";
import { checkYaml } from "../lib/yaml-schema.js";

export const BOOT_PROFILES_DIR = join(REPO_ROOT, "boot-profiles");
export const KATA_PROFILE_FILE = join(BOOT_PROFILES_DIR, "kata-4.1.0.yaml");

const SourceSchema = z.strictObject({
  /** A path inside the runtime's repository, e.g. src/runtime/virtcontainers/qemu_amd64.go. */
  file: z
    .string()
    .regex(/^(?!\/)(?!.*(?:^|\/)\.\.(?:\/|$))[\w.@+/-]+$/, "must be a path inside the Kata tree"),
  line: z.number().int().positive(),
  /** The release tag the line was read at. */
  tag: z.string().min(1),
  /** Words of that line as written there (a substring of it). */
  text: z.string().min(1),
});

const scalar = z.union([z.string(), z.number(), z.boolean()]);

const factShape = {
  /** The value as the runtime builds it. */
  value: scalar.optional(),
  /** The line of the inputs the fact rests on. */
  source: SourceSchema.optional(),
  /** More lines of the inputs it rests on (the placeholder a Makefile variable fills, a caller). */
  also: z.array(SourceSchema).optional(),
  /** Lines of files at the tag that are not among the inputs. */
  upstream: z.array(SourceSchema).optional(),
  /** What the lines do not say, conditions, and how a value was put together. */
  note: z.string().optional(),
};

const FactSchema = z.strictObject(factShape);

/** One kernel parameter, as Kata's Param{Key, Value}: `key=value`, or `key` alone. */
const ParamSchema = z.strictObject({
  key: z.string().regex(/^[^\s=]+$/, "must be a parameter name, e.g. systemd.unit"),
  ...factShape,
  value: z.string().optional(),
  /** Conditional parameters: when the runtime adds it. */
  when: z.string().optional(),
});

/** One key of a systemd unit section. */
const UnitEntrySchema = z.strictObject({
  key: z.string().regex(/^[A-Za-z]+$/, "must be a unit key, e.g. ExecStart"),
  ...factShape,
  value: z.string(),
  /** The value with its @PLACEHOLDERS@ filled, where the build fills them. */
  filled: z.string().optional(),
});

const UnitSchema = z.strictObject({
  file: z.string(),
  installed_as: FactSchema.optional(),
  /** Sections by name (Unit, Service, Install), each key in file order. */
  sections: z.record(z.string(), z.array(UnitEntrySchema)),
  notes: z.array(FactSchema).optional(),
});

/** One field of a binary header: its place in the struct and the value written. */
const FieldSchema = z.strictObject({
  name: z.string(),
  offset: z.number().int().nonnegative(),
  size: z.number().int().positive(),
  ...factShape,
});

export const IMAGE_ATTACHMENTS = ["nvdimm", "block"] as const;
export type ImageAttachment = (typeof IMAGE_ATTACHMENTS)[number];

export const BOOT_PROFILE_SCHEMA = z.strictObject({
  profile: z.strictObject({
    runtime: z.string(),
    version: z.string(),
    commit: z.string().regex(/^[0-9a-f]{7,40}$/, "must be a commit id"),
    arch: z.string(),
    /** What was read: which runtime and configuration the facts describe. */
    about: z.string(),
  }),
  makefile: z.strictObject({
    substitution: FactSchema,
    vars: z.record(z.string().regex(/^[A-Z0-9_]+$/, "must be a Makefile variable"), FactSchema),
  }),
  qemu: z.record(z.string(), FactSchema),
  kernel_cmdline: z.strictObject({
    order: FactSchema,
    /** The placeholders values may hold ({max_vcpus}), each with what fills it. */
    placeholders: z.record(z.string().regex(/^[a-z_]+$/), FactSchema),
    arch: z.array(ParamSchema).min(1),
    root: z.strictObject({ nvdimm: z.array(ParamSchema).min(1), block: z.array(ParamSchema).min(1) }),
    after_root: z.array(ParamSchema).min(1),
    conditional: z.array(ParamSchema),
  }),
  runtime_rs: z.strictObject({
    about: FactSchema,
    defaults: z.array(ParamSchema).min(1),
    root: z.strictObject({ nvdimm: z.array(ParamSchema).min(1), block: z.array(ParamSchema).min(1) }),
    conditional: z.array(ParamSchema),
  }),
  agent_units: z.record(z.string(), UnitSchema),
  dax_header: z.strictObject({
    facts: z.record(z.string(), FactSchema),
    /** struct nd_pfn_sb as nsdax.gpl.c writes it. */
    fields: z.array(FieldSchema).min(1),
  }),
});

export type BootProfileDocument = z.infer<typeof BOOT_PROFILE_SCHEMA>;
export type Source = z.infer<typeof SourceSchema>;
export type Param = z.infer<typeof ParamSchema>;

export type CitationKind = "source" | "upstream";

/** One citation of the file, with where the file states it. */
export interface Citation {
  kind: CitationKind;
  source: Source;
  /** The key path in the profile, for messages: qemu.machine_type.source. */
  path: string;
  /** profile.yaml:line. */
  at: string;
}

export interface BootProfile {
  file: string;
  doc: BootProfileDocument;
  citations: Citation[];
}

type Path = (string | number)[];

function fail(src: LocatedYaml, path: Path, what: string, fix: string): never {
  throw new UserError(`${src.file}:${src.lineOf(path) ?? "?"}: ${what}`, fix);
}

type Fact = z.infer<typeof FactSchema>;
type Located = { fact: Fact; path: Path };

const entries = <T>(rec: Record<string, T>, path: Path): [T, Path][] =>
  Object.entries(rec).map(([k, v]) => [v, [...path, k]]);
const items = <T>(list: T[], path: Path): [T, Path][] => list.map((v, i) => [v, [...path, i]]);

function unitFacts(doc: BootProfileDocument): [Fact, Path][] {
  return entries(doc.agent_units, ["agent_units"]).flatMap(([u, path]) => [
    ...(u.installed_as ? [[u.installed_as, [...path, "installed_as"]] as [Fact, Path]] : []),
    ...entries(u.sections, [...path, "sections"]).flatMap(([list, p]) => items(list, p)),
    ...items(u.notes ?? [], [...path, "notes"]),
  ]);
}

/** Every fact of the document (facts, parameters, unit keys, header fields), with its path. */
function factsOf(doc: BootProfileDocument): Located[] {
  const all: [Fact, Path][] = [
    [doc.makefile.substitution, ["makefile", "substitution"]],
    ...entries(doc.makefile.vars, ["makefile", "vars"]),
    ...entries(doc.qemu, ["qemu"]),
    [doc.kernel_cmdline.order, ["kernel_cmdline", "order"]],
    ...entries(doc.kernel_cmdline.placeholders, ["kernel_cmdline", "placeholders"]),
    [doc.runtime_rs.about, ["runtime_rs", "about"]],
    ...allParams(doc).map(({ p, path }): [Fact, Path] => [p, path]),
    ...unitFacts(doc),
    ...entries(doc.dax_header.facts, ["dax_header", "facts"]),
    ...items(doc.dax_header.fields, ["dax_header", "fields"]),
  ];
  return all.map(([fact, path]) => ({ fact, path }));
}

/**
 * Rules a schema cannot say: a value is never uncited, a fact without a line of the inputs says
 * why in a note, and every citation is of the profile's tag.
 */
function checkFact({ fact, path }: Located, tag: string, src: LocatedYaml): void {
  const name = path.join(".");
  if (!fact.source && !fact.upstream?.length && (fact.value !== undefined || "key" in fact))
    fail(src, path, `${name} cites nothing`, "add the source (or upstream) line it rests on");
  if (!fact.source && !fact.note)
    fail(
      src,
      path,
      `${name} cites no line of the inputs and says not why`,
      "add source:, or a note: saying what the inputs do not say",
    );
  for (const c of [fact.source, ...(fact.also ?? []), ...(fact.upstream ?? [])])
    if (c && c.tag !== tag)
      fail(src, path, `${name} cites tag ${c.tag}, not the profile's ${tag}`, `read it at ${tag}`);
}

function citationsOf({ fact, path }: Located, src: LocatedYaml): Citation[] {
  const cite = (kind: CitationKind, s: Source, key: Path): Citation => ({
    kind,
    source: s,
    path: [...path, ...key].join("."),
    at: `${src.file}:${src.lineOf([...path, ...key]) ?? "?"}`,
  });
  return [
    ...(fact.source ? [cite("source", fact.source, ["source"])] : []),
    ...(fact.also ?? []).map((s, i) => cite("source", s, ["also", i])),
    ...(fact.upstream ?? []).map((s, i) => cite("upstream", s, ["upstream", i])),
  ];
}

function allParams(doc: BootProfileDocument): { p: Param; path: Path }[] {
  const k = doc.kernel_cmdline;
  const r = doc.runtime_rs;
  const lists: [Param[], Path][] = [
    [k.arch, ["kernel_cmdline", "arch"]],
    [k.root.nvdimm, ["kernel_cmdline", "root", "nvdimm"]],
    [k.root.block, ["kernel_cmdline", "root", "block"]],
    [k.after_root, ["kernel_cmdline", "after_root"]],
    [k.conditional, ["kernel_cmdline", "conditional"]],
    [r.defaults, ["runtime_rs", "defaults"]],
    [r.root.nvdimm, ["runtime_rs", "root", "nvdimm"]],
    [r.root.block, ["runtime_rs", "root", "block"]],
    [r.conditional, ["runtime_rs", "conditional"]],
  ];
  return lists.flatMap(([list, path]) => list.map((p, i) => ({ p, path: [...path, i] })));
}

/** Conditional parameters say when; placeholders in values are ones the profile explains. */
function checkParams(doc: BootProfileDocument, src: LocatedYaml): void {
  const known = Object.keys(doc.kernel_cmdline.placeholders);
  for (const { p, path } of allParams(doc)) {
    const conditional = path.includes("conditional");
    if (conditional && !p.when)
      fail(src, path, `conditional parameter ${p.key} says not when`, "add when: the condition");
    if (!conditional && p.when)
      fail(
        src,
        [...path, "when"],
        `${p.key} has a condition but is in a default list`,
        "move it to conditional",
      );
    for (const m of (p.value ?? "").matchAll(/\{([a-z_]+)\}/g))
      if (!known.includes(m[1]))
        fail(src, [...path, "value"], `unknown placeholder {${m[1]}}`, `use one of: ${known.join(", ")}`);
  }
}

export function parseBootProfile(src: LocatedYaml): BootProfile {
  const doc = checkYaml(BOOT_PROFILE_SCHEMA, src, { what: "boot profile" });
  const facts = factsOf(doc);
  for (const f of facts) checkFact(f, doc.profile.version, src);
  checkParams(doc, src);
  return { file: src.file, doc, citations: facts.flatMap((f) => citationsOf(f, src)) };
}

export function loadBootProfile(file = KATA_PROFILE_FILE): BootProfile {
  return parseBootProfile(loadYamlFile(file));
}

/** `key=value`, or `key` alone, as Kata serializes a Param; placeholders filled from `vars`. */
export function renderParam(p: Param, vars: Record<string, string | number> = {}): string {
  if (p.value === undefined || p.value === "") return p.key;
  const value = p.value.replace(/\{([a-z_]+)\}/g, (whole, name: string) =>
    name in vars ? String(vars[name]) : whole,
  );
  return `${p.key}=${value}`;
}

/**
 * The Go runtime's default guest kernel command line, parameter by parameter, for an image on
 * nvdimm or on virtio-blk (the profile's order: arch, root, then the rest).
 */
export function kernelParams(profile: BootProfile, image: ImageAttachment): Param[] {
  const k = profile.doc.kernel_cmdline;
  return [...k.arch, ...k.root[image], ...k.after_root];
}

/** The same, as one string (Kata joins the parameters with spaces). */
export function kernelCommandLine(
  profile: BootProfile,
  image: ImageAttachment,
  vars: Record<string, string | number> = {},
): string {
  return kernelParams(profile, image)
    .map((p) => renderParam(p, vars))
    .join(" ");
}

/** The text of line `line` (1-based) of `file` in a Kata tree, or undefined when there is none. */
export function treeLine(tree: string, file: string, line: number): string | undefined {
  const path = join(tree, file);
  if (!existsSync(path)) return undefined;
  return readFileSync(path, "utf8").split("\n")[line - 1];
}

/**
 * What is wrong with the citations against a tree of the inputs: a `source` line that is missing
 * or does not hold its text, and an `upstream` file that is among the inputs after all (then it
 * is a source, and can be held). Pure given `lineOf` and `has`.
 */
export function citationProblems(
  citations: Citation[],
  lineOf: (file: string, line: number) => string | undefined,
  has: (file: string) => boolean,
): string[] {
  return citations.flatMap((c) => {
    const { file, line, text } = c.source;
    if (c.kind === "upstream")
      return has(file) ? [`${c.at}: ${c.path}: ${file} is among the inputs: make it a source`] : [];
    const got = lineOf(file, line);
    if (got === undefined) return [`${c.at}: ${c.path}: ${file}:${line} does not exist`];
    return got.includes(text)
      ? []
      : [`${c.at}: ${c.path}: ${file}:${line} is "${got.trim()}", not "${text}"`];
  });
}
