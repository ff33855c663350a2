/**
 * The documents cr-guest writes for other programs: results.json (one guest run), cell.json
 * (one matrix cell) and matrix.json (a report). One zod schema each gives the TypeScript type,
 * the check readers apply, and the published JSON Schema (schemas/*.schema.json).
 * Readers accept the current and the previous `schema` number, so a CI baseline written before
 * a change can still be compared.
 */
import { z } from "zod";
import { UserError } from "./errors.js";

export const TEST_STATUSES = ["PASS", "FAIL", "SKIP", "ERROR"] as const;
export const CELL_STATUSES = ["PASS", "FAIL", "ERROR", "BUILD-FAILED", "SKIPPED"] as const;

const testStatus = z.enum(TEST_STATUSES);
const summary = z.object({ PASS: z.number(), FAIL: z.number(), SKIP: z.number(), ERROR: z.number() });

/**
 * Why a FAIL or ERROR test failed, as the kernel requirements map finds it against the run's
 * own kernel .config and version and its CRIU build (absent for tests the map does not cover).
 */
export const TestCauseSchema = z.object({
  /** config: a Kconfig symbol off or the kernel version; build: how CRIU was built; unexplained: neither. */
  kind: z.enum(["config", "build", "unexplained"]),
  /** The map's entries that explain it (feature/NAME, check/NAME, probe/NAME). */
  entries: z.array(z.string()),
  /** The Kconfig symbols (without CONFIG_) to turn on. */
  symbols: z.array(z.string()),
  /** One sentence, as every output shows it after "diagnosis:". */
  text: z.string(),
});

export const TestRecordSchema = z.object({
  name: z.string(),
  status: testStatus,
  seconds: z.number(),
  exit_code: z.number().nullable(),
  message: z.string(),
  /** For scenario cases: what happened (success, error, hang). */
  outcome: z.string().optional(),
  /** CRIU's Error lines from this test's logs: always shown for a failure. */
  error_lines: z.array(z.string()),
  /** Hang diagnostics (wchan, stack, cgroup.events, log tail), when a step timed out. */
  diagnostics: z.string().optional(),
  /** The kernel requirements map's diagnosis, for a FAIL or ERROR it covers. */
  cause: TestCauseSchema.optional(),
  logs: z.array(z.string()),
});

export const AttemptSchema = z.object({
  status: z.string(),
  reason: z.string(),
  seconds: z.number(),
  boot_seconds: z.number().nullable(),
  /** The per-phase clock: host preparing the results disk, QEMU start to the end marker, the host reading results. */
  prepare_seconds: z.number().optional(),
  end_seconds: z.number().nullable().optional(),
  read_seconds: z.number().optional(),
  /** The guest's vCPUs in this attempt (a matrix picks them from the free cores). */
  vcpus: z.number().int().optional(),
  /** The guest's own clock marks (uptime), read from the console: where the guest's time goes. */
  guest_clock: z.array(z.object({ mark: z.string(), uptime: z.number() })).optional(),
  console_log: z.string(),
});

const kernelIdentity = z.object({
  key: z.string(),
  version: z.string(),
  release: z.string().nullable(),
  config_sha256: z.string(),
});

export const RESULTS_SCHEMA_VERSION = 1;
export const RunResultsSchema = z.object({
  schema: z.number().int(),
  run_key: z.string(),
  status: z.enum(["COMPLETE", "ERROR"]),
  error: z.string().nullable(),
  accel: z.enum(["kvm", "tcg"]),
  attempts: z.array(AttemptSchema),
  identities: z.object({
    kernel: kernelIdentity,
    criu: z.object({
      version: z.string(),
      sha256: z.string(),
      provider: z.string(),
      link: z.string(),
      patches: z.array(z.string()),
    }),
    agent: z
      .object({ sha256: z.string(), kata_version: z.string().nullable(), setsid: z.string().nullable() })
      .nullable(),
    image: z.object({ key: z.string(), base: z.string() }),
  }),
  expectations: z.record(z.string(), z.string()),
  scenarios: z.array(z.object({ name: z.string(), about: z.string() })),
  guest: z.record(z.string(), z.string()),
  tests: z.array(TestRecordSchema),
  summary,
  seconds: z.number(),
  created: z.string(),
});

export const CellTestSchema = TestRecordSchema.omit({ logs: true });
const stageTiming = z.object({
  seconds: z.number(),
  cached: z.boolean(),
  shared: z.boolean(),
  vcpus: z.number().int().optional(),
});

// 2: paths relative to the cache dir (absolute in 1).
export const CELL_SCHEMA_VERSION = 2;
export const CellResultSchema = z.object({
  schema: z.number().int(),
  matrix: z.string(),
  id: z.string(),
  axes: z.object({ criu: z.string(), kernel: z.string(), patches: z.string(), suite: z.string() }),
  criu_version: z.string(),
  patches: z.array(z.string()),
  /** The --set arguments that make this cell (on top of pipeline.yaml). */
  sets: z.array(z.string()),
  inputs_key: z.string(),
  status: z.enum(CELL_STATUSES),
  /** For ERROR, BUILD-FAILED and SKIPPED: what happened. */
  reason: z.string().nullable(),
  /** Which stage failed, for BUILD-FAILED. */
  failed_stage: z.string().nullable(),
  /** The compatibility check's verdicts before the run: predictions to hold against the result. */
  predicted: z.array(
    z.object({
      severity: z.string(),
      id: z.string(),
      what: z.string(),
      test: z.string().optional(),
      expect: z.enum(["PASS", "FAIL"]).optional(),
    }),
  ),
  identities: z.object({
    kernel: kernelIdentity.optional(),
    criu: z
      .object({
        key: z.string(),
        version: z.string(),
        provider: z.string(),
        link: z.string(),
        sha256: z.string(),
        patches: z.array(z.string()),
        /** The git commit built (git provider, or a local git checkout): what `bisect criu` checks out. */
        commit: z.string().optional(),
      })
      .optional(),
    image: z.object({ key: z.string(), base: z.string(), suite: z.string().nullable() }).optional(),
    run: z.object({ key: z.string() }).optional(),
  }),
  stages: z.object({
    kernel: stageTiming.optional(),
    image: stageTiming.optional(),
    boot: stageTiming.optional(),
  }),
  accel: z.string().nullable(),
  tests: z.array(CellTestSchema),
  summary,
  /** Tests reported but not deciding this cell (criu check --all, --feature, observing cases). */
  informational: z.array(z.string()),
  /** What the guest said about itself (kernel release, ptrace_scope, seccomp, ...). */
  guest: z.record(z.string(), z.string()),
  /** The console's last lines, for a failed or broken run. */
  console_tail: z.string(),
  /** Where the full evidence is on the host that ran it, relative to its cache dir (schema 1: absolute). */
  paths: z.object({
    run_dir: z.string().optional(),
    results: z.string().optional(),
    console: z.string().optional(),
  }),
  host: z.string(),
  started: z.string(),
  finished: z.string(),
  seconds: z.number(),
  /**
   * A migration pair (`cr-guest migrate`, matrix.yaml `migrate:`): dumped in a guest of the
   * `from` cell, restored in one of the `to` cell. Its tests are the migrating cases.
   */
  migration: z
    .object({
      from: z.object({ criu: z.string(), kernel: z.string(), patches: z.string(), suite: z.string() }),
      to: z.object({ criu: z.string(), kernel: z.string(), patches: z.string(), suite: z.string() }),
      in_place: z.boolean(),
      changes: z.string(),
      runs: z.object({ dump: z.string().nullable(), restore: z.string().nullable() }),
      transfer: z.object({ disk: z.string(), bytes: z.number(), sha256: z.string() }).nullable(),
    })
    .optional(),
});

// 2: its cells are schema 2.
export const REPORT_SCHEMA_VERSION = 2;
export const MatrixReportSchema = z.object({
  schema: z.number().int(),
  name: z.string(),
  created: z.string(),
  cells: z.array(CellResultSchema),
  columns: z.array(
    z.object({
      key: z.string(),
      title: z.string(),
      tests: z.array(z.string()),
      count: z.boolean().optional(),
    }),
  ),
  findings: z.array(
    z.object({
      id: z.string(),
      say: z.string(),
      seen_in: z.array(z.object({ cell: z.string(), test: z.string(), message: z.string() })),
      passes_in: z.array(z.string()),
    }),
  ),
  /** What each test's status depends on, where it is not the same everywhere. */
  dependencies: z.array(z.string()),
  /** Cells the plan left out, and why (not run). */
  excluded: z.array(z.object({ id: z.string(), reason: z.string() })),
  totals: z.object({
    PASS: z.number(),
    FAIL: z.number(),
    ERROR: z.number(),
    "BUILD-FAILED": z.number(),
    SKIPPED: z.number(),
  }),
  /** Duplicate cells met while merging (the newest kept). */
  merged_duplicates: z.array(z.string()),
});

const bisectCandidate = z.object({ id: z.string(), title: z.string() });
export const BISECT_SCHEMA_VERSION = 1;
/** A bisect's record (bisect.json): what was bisected, every step with its evidence, the answer. */
export const BisectReportSchema = z.object({
  schema: z.number().int(),
  id: z.string(),
  kind: z.enum(["criu", "config"]),
  test: z.string(),
  /** The source bisected (a git URL, checkout or bundle) or the two configs. */
  source: z.string(),
  good: z.object({ ref: z.string(), id: z.string() }),
  bad: z.object({ ref: z.string(), id: z.string() }),
  candidates: z.array(bisectCandidate),
  steps: z.array(
    z.object({
      id: z.string(),
      role: z.enum(["good-end", "bad-end", "step", "confirm-culprit", "confirm-parent"]),
      verdict: z.enum(["good", "bad", "skip"]),
      status: z.string(),
      reason: z.string(),
      evidence: z.string().nullable(),
      seconds: z.number(),
      at: z.string(),
    }),
  ),
  answer: z.discriminatedUnion("kind", [
    z.object({
      kind: z.literal("found"),
      culprit: bisectCandidate,
      parent: bisectCandidate,
      confirmed: z.boolean(),
      why: z.string(),
    }),
    z.object({ kind: z.literal("ambiguous"), among: z.array(bisectCandidate), why: z.string() }),
    z.object({ kind: z.literal("ends"), why: z.string() }),
  ]),
  /** For a config bisect: every symbol found, each with where it was set. */
  found: z
    .array(z.object({ symbol: z.string(), good: z.string(), bad: z.string(), set_by: z.string() }))
    .optional(),
  /** Where this report and its Markdown were written (the --json document only). */
  files: z.object({ json: z.string(), markdown: z.string() }).optional(),
  seconds: z.number(),
  created: z.string(),
});

export const OUTPUT_DOCUMENTS = {
  results: {
    schema: RunResultsSchema,
    version: RESULTS_SCHEMA_VERSION,
    file: "results.json",
    title: "cr-guest guest run (results.json)",
  },
  cell: {
    schema: CellResultSchema,
    version: CELL_SCHEMA_VERSION,
    file: "cell.json",
    title: "cr-guest matrix cell (cell.json)",
  },
  matrix: {
    schema: MatrixReportSchema,
    version: REPORT_SCHEMA_VERSION,
    file: "matrix.json",
    title: "cr-guest matrix report (matrix.json)",
  },
  bisect: {
    schema: BisectReportSchema,
    version: BISECT_SCHEMA_VERSION,
    file: "bisect.json",
    title: "cr-guest bisect (bisect.json)",
  },
} as const;

export type OutputDocument = keyof typeof OUTPUT_DOCUMENTS;

/** The published JSON Schema of one document, with the schema numbers readers accept. */
export function jsonSchemaOf(doc: OutputDocument): Record<string, unknown> {
  const d = OUTPUT_DOCUMENTS[doc];
  const js = z.toJSONSchema(d.schema, { target: "draft-2020-12" }) as Record<string, unknown>;
  const props = js.properties as Record<string, Record<string, unknown>>;
  props.schema = { type: "integer", enum: [d.version - 1, d.version].filter((n) => n >= 1) };
  return { $id: `https://cr-guest.invalid/schemas/${doc}.schema.json`, title: d.title, ...js };
}

/** Parses a document read from disk: its shape, and a schema number this version reads. */
export function parseOutput<D extends OutputDocument>(
  doc: D,
  value: unknown,
  file: string,
): z.infer<(typeof OUTPUT_DOCUMENTS)[D]["schema"]> {
  const d = OUTPUT_DOCUMENTS[doc];
  const r = d.schema.safeParse(value);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new OutputSchemaError(
      `${file} is not a valid ${d.file}: ${first.path.join(".") || "(top)"}: ${first.message}`,
    );
  }
  const n = (r.data as { schema: number }).schema;
  if (n !== d.version && n !== d.version - 1)
    throw new OutputSchemaError(
      `${file} has ${d.file} schema ${n}; this cr-guest reads ${[d.version - 1, d.version].filter((x) => x >= 1).join(" and ")}`,
    );
  return r.data as z.infer<(typeof OUTPUT_DOCUMENTS)[D]["schema"]>;
}

export class OutputSchemaError extends UserError {
  constructor(message: string) {
    super(
      message,
      "pass files written by cr-guest (results.json, cell.json, matrix.json) of this version or the one before",
    );
  }
}
