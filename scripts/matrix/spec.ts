/**
 * The version matrix as data (matrix.yaml) and its pure expansion into cells: the product of
 * the axes, minus exclusions and patches that do not apply, plus inclusions, with overrides.
 * Each cell carries its full pipeline config and the identities of the stages it shares with
 * other cells (one kernel build per kernel variant, one CRIU build per version+patches, one
 * image per CRIU build+suite), so running a matrix never builds anything twice.
 */
import { repoData } from "../data/repo-data.js";
import semver from "semver";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { REPO_ROOT } from "../lib/paths.js";
import { z } from "zod";
import { CONFIG_SCHEMA, loadConfig, type LoadOptions, type PipelineConfig } from "../lib/config.js";
import { checkYaml, keysOf, schemaAt } from "../lib/yaml-schema.js";
import { UserError, errorMessage } from "../lib/errors.js";
import { cacheKey } from "../lib/hash.js";
import { didYouMean } from "../lib/suggest.js";
import { loadYamlFile, type LocatedYaml } from "../lib/yaml-file.js";
import { resolveCriuVersion, semverOf, type CriuCatalog } from "../data/criu-catalog.js";
import { selectPatches } from "../data/criu-patches.js";
import { resolveAndPlanCriu, SOURCE_FIX } from "../criu/stage.js";
import type { PairSide, PairSpec } from "../migrate/pair.js";

export const AXES = ["criu", "kernel", "patches", "suite"] as const;
export type AxisName = (typeof AXES)[number];
export type AxisValues = Record<AxisName, string>;

export interface AxisValue {
  id: string;
  /** Pipeline config keys (dotted) and their values, applied on top of pipeline.yaml. */
  set: Record<string, unknown>;
}

/** Matches cells: each key an axis; a value an id, or for criu also a semver range. */
export type CellRule = Partial<AxisValues>;

export interface MatrixSpec {
  file: string;
  name: string;
  axes: Record<AxisName, AxisValue[]>;
  exclude: CellRule[];
  include: AxisValues[];
  overrides: { match: CellRule; set: Record<string, unknown> }[];
  /** Migration pairs: a base cell (axis ids; an axis not named takes its first value) and the one axis B changes. */
  migrate: { base: AxisValues; to: Partial<AxisValues> }[];
}

const ID = /^[A-Za-z0-9][A-Za-z0-9.-]*$/;
const idSchema = z.string();
const ruleSchema = z.strictObject(
  Object.fromEntries(AXES.map((a) => [a, idSchema.optional()])) as Record<
    AxisName,
    z.ZodOptional<z.ZodString>
  >,
);
const setsSchema = z.record(z.string(), z.unknown());
const axisValueSchema = z.strictObject({ id: idSchema, set: setsSchema.optional() });

/** matrix.yaml's structure; `set` values are checked against the pipeline config's schema, key by key. */
export const MATRIX_SCHEMA = z.strictObject({
  name: idSchema.optional(),
  axes: z.strictObject(
    Object.fromEntries(AXES.map((a) => [a, z.array(axisValueSchema)])) as Record<
      AxisName,
      z.ZodArray<typeof axisValueSchema>
    >,
  ),
  exclude: z.array(ruleSchema).optional(),
  include: z
    .array(
      z.strictObject(Object.fromEntries(AXES.map((a) => [a, idSchema])) as Record<AxisName, z.ZodString>),
    )
    .optional(),
  overrides: z.array(z.strictObject({ match: ruleSchema, set: setsSchema })).optional(),
  migrate: z.array(z.strictObject({ base: ruleSchema, to: ruleSchema })).optional(),
});

/** `set:` maps name pipeline config keys: check each against the config schema, at its line. */
function validateSets(
  src: LocatedYaml,
  at: (string | number)[],
  sets: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [dotted, value] of Object.entries(sets ?? {})) {
    const path = dotted.split(".");
    const schema = schemaAt(CONFIG_SCHEMA, path);
    if (!schema || keysOf(schema).length > 0) {
      const line = src.lineOf([...at, "set", dotted]);
      const suggestion = didYouMean(path.at(-1)!, keysOf(schemaAt(CONFIG_SCHEMA, path.slice(0, -1))));
      throw new UserError(
        `invalid matrix at ${src.file}${line ? `:${line}` : ""}: '${dotted}' is not a pipeline config key${suggestion}`,
        `set takes keys of pipeline.yaml in dotted form, e.g. criu.version or kernel.fragment_set`,
      );
    }
    out[dotted] = checkYaml(
      schema,
      src,
      { what: "matrix", baseDir: process.cwd(), at: [...at, "set", dotted] },
      value,
    );
  }
  return out;
}

/** "file:line" of a path in the matrix file, for its error messages. */
type Where = (path: (string | number)[]) => string;

/** Each axis's values: at least one, ids well-formed and distinct, `set` keys of the pipeline config. */
function checkAxes(
  src: LocatedYaml,
  raw: z.infer<typeof MATRIX_SCHEMA>["axes"],
  where: Where,
): Record<AxisName, AxisValue[]> {
  const axes = {} as Record<AxisName, AxisValue[]>;
  for (const axis of AXES) {
    const values = raw[axis];
    if (values.length === 0)
      throw new UserError(
        `invalid matrix at ${where(["axes", axis])}: axis '${axis}' has no values`,
        "give it at least one value",
      );
    const seen = new Set<string>();
    axes[axis] = values.map((v, i) => {
      const id = String(v.id);
      if (!ID.test(id))
        throw new UserError(
          `invalid matrix at ${where(["axes", axis, i, "id"])}: id '${id}' must be letters, digits, '.' and '-'`,
          "rename it",
        );
      if (seen.has(id))
        throw new UserError(
          `invalid matrix at ${where(["axes", axis, i, "id"])}: id '${id}' appears twice in axis '${axis}'`,
          "give each value its own id",
        );
      seen.add(id);
      return { id, set: validateSets(src, ["axes", axis, i], v.set) };
    });
  }
  return axes;
}

/** A rule's values are ids of their axes (for criu also a semver range). */
function checkRule(
  axes: Record<AxisName, AxisValue[]>,
  where: Where,
  rule: Partial<Record<string, unknown>>,
  at: (string | number)[],
): CellRule {
  const out: CellRule = {};
  for (const [axis, value] of Object.entries(rule)) {
    const v = String(value);
    const ids = axes[axis as AxisName].map((x) => x.id);
    const isRange = axis === "criu" && !ids.includes(v) && semver.validRange(v) !== null;
    if (!ids.includes(v) && !isRange)
      throw new UserError(
        `invalid matrix at ${where([...at, axis])}: ${axis} '${v}' is not a value of that axis${didYouMean(v, ids)}`,
        `${axis} values: ${ids.join(", ")}${axis === "criu" ? " (or a semver range, e.g. <3.19)" : ""}`,
      );
    out[axis as AxisName] = v;
  }
  return out;
}

/** A migration pair: its base cell (ids; an axis not named takes its first value) and the one axis B changes. */
function checkPair(
  axes: Record<AxisName, AxisValue[]>,
  where: Where,
  m: { base: CellRule; to: CellRule },
  i: number,
): MatrixSpec["migrate"][number] {
  const given = checkRule(axes, where, m.base, ["migrate", i, "base"]);
  const to = checkRule(axes, where, m.to, ["migrate", i, "to"]);
  const base = Object.fromEntries(AXES.map((a) => [a, given[a] ?? axes[a][0].id])) as AxisValues;
  // Both sides checked apart: a range in the base is refused even when `to` names that axis too.
  for (const [a, v] of [...Object.entries(given), ...Object.entries(to)])
    if (!axes[a as AxisName].some((x) => x.id === v))
      throw new UserError(
        `invalid matrix at ${where(["migrate", i])}: ${a} '${v}' must be an id of axis '${a}', not a range`,
        `${a} values: ${axes[a as AxisName].map((x) => x.id).join(", ")}`,
      );
  const changed = Object.entries(to).filter(([a, v]) => base[a as AxisName] !== v);
  if (changed.length !== 1)
    throw new UserError(
      `invalid matrix at ${where(["migrate", i, "to"])}: a pair changes exactly one axis from its base cell, ` +
        `this one changes ${changed.length ? changed.map(([a]) => a).join(" and ") : "nothing"}`,
      'name one axis in `to` with a value other than the base\'s, e.g. to: { criu: "4.2.1" }',
    );
  return { base, to };
}

export function loadMatrixSpec(file: string): MatrixSpec {
  const src = loadYamlFile(file);
  const raw = checkYaml(MATRIX_SCHEMA, src, { what: "matrix" });
  const where: Where = (path) => `${src.file}${src.lineOf(path) ? `:${src.lineOf(path)}` : ""}`;
  const axes = checkAxes(src, raw.axes, where);
  const rule = (r: Partial<Record<string, unknown>>, at: (string | number)[]) =>
    checkRule(axes, where, r, at);
  const exclude = (raw.exclude ?? []).map((r, i) => rule(r, ["exclude", i]));
  const include = (raw.include ?? []).map((r, i) => rule(r, ["include", i]) as AxisValues);
  for (const [i, inc] of include.entries())
    for (const axis of AXES)
      if (!axes[axis].some((x) => x.id === inc[axis]))
        throw new UserError(
          `invalid matrix at ${where(["include", i, axis])}: include needs an id of axis '${axis}', not a range`,
          `${axis} values: ${axes[axis].map((x) => x.id).join(", ")}`,
        );
  const overrides = (raw.overrides ?? []).map((o, i) => ({
    match: rule(o.match, ["overrides", i, "match"]),
    set: validateSets(src, ["overrides", i], o.set),
  }));
  const migrate = (raw.migrate ?? []).map((m, i) => checkPair(axes, where, m, i));
  return { file, name: raw.name ? String(raw.name) : "default", axes, exclude, include, overrides, migrate };
}

/** A matrix's migration pairs as PairSpecs: each side's config sets are its cell's axis values. */
export function planPairs(
  spec: MatrixSpec,
  catalog: CriuCatalog = repoData().criu,
): { base: AxisValues; to: AxisValues; pair: PairSpec }[] {
  const value = (axis: AxisName, id: string) => spec.axes[axis].find((v) => v.id === id)!;
  const side = (cell: AxisValues): PairSide => {
    const set = Object.assign({}, ...AXES.map((a) => value(a, cell[a]).set)) as Record<string, unknown>;
    const criu =
      typeof set["criu.version"] === "string"
        ? resolveCriuVersion(set["criu.version"], catalog).version
        : cell.criu;
    const patches = Array.isArray(set["criu.patches"]) ? (set["criu.patches"] as string[]) : [];
    return {
      criu,
      kernel: cell.kernel,
      patches,
      sets: AXES.flatMap((a) => setsToArgs(value(a, cell[a]).set)),
    };
  };
  return spec.migrate.map(({ base, to }) => {
    const b = { ...base, ...to } as AxisValues;
    return { base, to: b, pair: { from: side(base), to: side(b), inPlace: false } };
  });
}

export function cellId(a: AxisValues): string {
  return AXES.map((axis) => a[axis]).join("_");
}

/** Whether a rule matches a cell; the criu key also takes a semver range on the resolved version. */
export function ruleMatches(rule: CellRule, cell: AxisValues, criuVersion: string): boolean {
  return AXES.every((axis) => {
    const want = rule[axis];
    if (want === undefined || want === cell[axis]) return true;
    return (
      axis === "criu" && semver.validRange(want) !== null && semver.satisfies(semverOf(criuVersion), want)
    );
  });
}

export function setsToArgs(set: Record<string, unknown>): string[] {
  return Object.entries(set).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
}

export interface PlannedCell {
  id: string;
  axes: AxisValues;
  /** The resolved CRIU version (4.1 -> 4.1.1) and its patches. */
  criuVersion: string;
  patches: string[];
  /** --set arguments of this cell, on top of the user's config. */
  sets: string[];
  config: PipelineConfig;
  /** Shared stages: cells with the same id share the artifact (built once per matrix run). */
  groups: { kernel: string; criu: string; image: string };
  /** Hash of everything the cell's result depends on: a stored result with the same is kept. */
  inputsKey: string;
  /** Why the cell cannot run here (e.g. no source for this CRIU version); listed, not run. */
  skip?: string;
  /** The CRIU providers in order: each one's cache key, or why it cannot serve. */
  criuCandidates: { provider: string; key?: string; skip?: string; from?: string }[];
}

export interface MatrixPlan {
  spec: MatrixSpec;
  cells: PlannedCell[];
  /** Cells of the product that are not in the matrix, and why. */
  excluded: { id: string; reason: string }[];
}

export interface PlanOptions extends LoadOptions {
  catalog?: CriuCatalog;
}

/** Bump when what a cell records changes in a way that makes old stored cells stale. */
export const CELL_RECIPE_VERSION = 3;

/**
 * The data a cell's result depends on besides its config: guest runner, fragments, catalogs,
 * patches. Not the findings rules: they word the report, read from the cells at report time.
 */
export const CELL_DATA_PATHS = [
  "guest",
  "kernel-fragments",
  "criu-builds/versions.yaml",
  "criu-builds/patches",
  "kernel-versions.yaml",
  "agent-patches",
];

/** One hash of every file under the given paths (relative to the repo), plus extra files. */
export function dataHash(paths: string[], extraFiles: string[] = [], root = REPO_ROOT): string {
  const h = createHash("sha256");
  const add = (p: string) => {
    if (!existsSync(p)) return;
    if (statSync(p).isDirectory()) for (const n of readdirSync(p).sort()) add(join(p, n));
    else h.update(relative(root, p)).update("\0").update(readFileSync(p));
  };
  for (const p of paths) add(join(root, p));
  for (const f of extraFiles) add(f);
  return h.digest("hex");
}

/** Every combination of the axes' values, then the inclusions outside the product. */
function combinations(spec: MatrixSpec): AxisValues[] {
  const combos: AxisValues[] = [];
  const walk = (i: number, acc: Partial<AxisValues>) => {
    if (i === AXES.length) return void combos.push(acc as AxisValues);
    for (const v of spec.axes[AXES[i]]) walk(i + 1, { ...acc, [AXES[i]]: v.id });
  };
  walk(0, {});
  const ids = new Set(combos.map(cellId));
  for (const inc of spec.include) if (!ids.has(cellId(inc))) combos.push(inc);
  return combos;
}

/** What planning each cell reads: the spec, the catalogs, hashes of the repo's data. */
interface PlanContext {
  spec: MatrixSpec;
  opts: PlanOptions;
  catalog: CriuCatalog;
  patchCatalog: ReturnType<typeof repoData>["criuPatches"];
  repoDataHash: string;
  kernelData: string;
  guestData: string;
  /** One inspection per local tree, git ref and mirror file for the whole matrix. */
  sourceMemo: Map<string, unknown>;
}

/** The cell's --set arguments (its axis values'), and its config with them on the user's. */
function cellConfig(
  ctx: PlanContext,
  id: string,
  axes: AxisValues,
): { sets: string[]; config: PipelineConfig } {
  const value = (axis: AxisName, vid: string) => ctx.spec.axes[axis].find((v) => v.id === vid)!;
  const sets = [...AXES.flatMap((a) => setsToArgs(value(a, axes[a]).set))];
  try {
    return {
      sets,
      config: loadConfig({ configFile: ctx.opts.configFile, set: [...(ctx.opts.set ?? []), ...sets] }),
    };
  } catch (err) {
    throw new UserError(
      `matrix cell ${id}: ${errorMessage(err)}`,
      `fix the axis values of this cell in ${ctx.spec.file}`,
    );
  }
}

/**
 * Groups name what a stage reads: its config and the repo data behind it (fragments for a
 * kernel, the guest runner for an image), so --plan's "cached" means the same artifact.
 */
function stageGroups(
  ctx: PlanContext,
  config: PipelineConfig,
  criuKeys: (string | undefined)[],
  guestSuite: string,
): PlannedCell["groups"] {
  const kernel = cacheKey({
    kernel: config.kernel,
    fragments: config.fragment_sets[config.kernel.fragment_set],
    debian: config.debian,
    cache: config.cache_dir,
    data: ctx.kernelData,
  });
  const criu = cacheKey({ keys: criuKeys, cache: config.cache_dir });
  const image = cacheKey({
    criu,
    suite: guestSuite,
    image: config.image,
    agent: config.agent,
    data: ctx.guestData,
  });
  return { kernel, criu, image };
}

/** One combination: a planned cell, or why it is not in the matrix. */
function planCell(ctx: PlanContext, axes: AxisValues): PlannedCell | { excluded: string } {
  const { spec, opts } = ctx;
  const id = cellId(axes);
  const explicit = spec.include.some((inc) => cellId(inc) === id);
  const base = cellConfig(ctx, id, axes);
  const sets = base.sets;
  let config = base.config;
  const entry = resolveCriuVersion(config.criu.version, ctx.catalog);
  const rule = spec.exclude.find((r) => ruleMatches(r, axes, entry.version));
  if (rule && !explicit) return { excluded: `excluded by rule ${JSON.stringify(rule)}` };
  try {
    selectPatches(config.criu.patches, entry.version, ctx.patchCatalog);
  } catch (err) {
    return { excluded: errorMessage(err) };
  }
  const overrideSets = spec.overrides
    .filter((o) => ruleMatches(o.match, axes, entry.version))
    .flatMap((o) => setsToArgs(o.set));
  if (overrideSets.length)
    config = loadConfig({
      configFile: opts.configFile,
      set: [...(opts.set ?? []), ...sets, ...overrideSets],
    });
  const criuPlan = resolveAndPlanCriu(
    config,
    { strict: false, memo: ctx.sourceMemo },
    { criu: ctx.catalog, criuPatches: ctx.patchCatalog },
  );
  const usable = criuPlan.candidates.filter((c) => c.key);
  const reasons = criuPlan.candidates.map((c) => `${c.provider}: ${c.skip}`);
  const skip = usable.length
    ? undefined
    : `no source for CRIU ${entry.version} here (${reasons.join("; ")}); ${SOURCE_FIX}`;
  const { sources: _sources, ...settings } = config;
  return {
    id,
    axes,
    criuVersion: entry.version,
    patches: config.criu.patches,
    sets: [...sets, ...overrideSets],
    config,
    groups: stageGroups(
      ctx,
      config,
      usable.map((c) => c.key),
      criuPlan.guestSuite,
    ),
    // The CRIU keys name the source content: a changed local tree or git commit is a new cell.
    inputsKey: cacheKey({
      settings,
      data: ctx.repoDataHash,
      criu: usable.map((c) => c.key),
      scenarios: dataHash([], [config.boot.scenarios]),
      recipe: CELL_RECIPE_VERSION,
    }),
    criuCandidates: criuPlan.candidates.map(({ provider, key, skip, from }) => ({
      provider,
      key,
      skip,
      from,
    })),
    ...(skip ? { skip } : {}),
  };
}

export function planMatrix(spec: MatrixSpec, opts: PlanOptions = {}): MatrixPlan {
  const ctx: PlanContext = {
    spec,
    opts,
    catalog: opts.catalog ?? repoData().criu,
    patchCatalog: repoData().criuPatches,
    repoDataHash: dataHash(CELL_DATA_PATHS),
    kernelData: dataHash(["kernel-fragments", "kernel-versions.yaml"]),
    guestData: dataHash(["guest"]),
    sourceMemo: new Map(),
  };
  const cells: PlannedCell[] = [];
  const excluded: MatrixPlan["excluded"] = [];
  for (const axes of combinations(spec)) {
    const planned = planCell(ctx, axes);
    if ("excluded" in planned) excluded.push({ id: cellId(axes), reason: planned.excluded });
    else cells.push(planned);
  }
  return { spec, cells, excluded };
}

export interface CellFilter {
  criu?: string[];
  kernel?: string[];
  patches?: string[];
  suite?: string[];
  cell?: string[];
}

/**
 * Picks cells for `--criu 4.1 --kernel 6.12` and the like: a value matches an axis id, or for
 * criu the resolved version (4.1 -> 4.1.1). Nothing matching is an error listing the cells.
 */
export function filterCells(
  plan: MatrixPlan,
  f: CellFilter,
  catalog: CriuCatalog = repoData().criu,
): PlannedCell[] {
  const criuVersions = (f.criu ?? []).map((v) => {
    try {
      return resolveCriuVersion(v, catalog).version;
    } catch {
      return v;
    }
  });
  const picked = plan.cells.filter(
    (c) =>
      (!f.criu?.length || f.criu.includes(c.axes.criu) || criuVersions.includes(c.criuVersion)) &&
      (!f.kernel?.length || f.kernel.includes(c.axes.kernel)) &&
      (!f.patches?.length || f.patches.includes(c.axes.patches)) &&
      (!f.suite?.length || f.suite.includes(c.axes.suite)) &&
      (!f.cell?.length || f.cell.includes(c.id)),
  );
  if (picked.length === 0)
    throw new UserError(
      `no cell of matrix '${plan.spec.name}' matches ${JSON.stringify(f)}`,
      `cells: ${plan.cells.map((c) => c.id).join(", ")}; ` +
        `axis values: ${AXES.map((a) => `${a} ${plan.spec.axes[a].map((v) => v.id).join("|")}`).join("; ")}`,
    );
  return picked;
}

/** Distinct stage groups of some cells: what a run of them builds at most. */
export function sharedStages(cells: PlannedCell[]): {
  kernels: number;
  criuBuilds: number;
  images: number;
  boots: number;
} {
  const runnable = cells.filter((c) => !c.skip);
  const count = (k: keyof PlannedCell["groups"]) => new Set(runnable.map((c) => c.groups[k])).size;
  return {
    kernels: count("kernel"),
    criuBuilds: count("criu"),
    images: count("image"),
    boots: runnable.length,
  };
}
