/** matrix.json: the report as data (its schema is in lib/output-schemas.ts), built from cells. */
import type { z } from "zod";
import { REPORT_SCHEMA_VERSION, type MatrixReportSchema } from "../../lib/output-schemas.js";
import type { FindingRule } from "../../data/findings.js";
import { repoData } from "../../data/repo-data.js";
import type { CellResult, CellStatus } from "../cell.js";
import { reportColumns } from "./columns.js";
import { deriveFindings, statusDependencies } from "./findings.js";

export const REPORT_SCHEMA = REPORT_SCHEMA_VERSION;

/** matrix.json (the schema is in lib/output-schemas.ts). */
export type MatrixReport = z.infer<typeof MatrixReportSchema>;

function totals(cells: CellResult[]): Record<CellStatus, number> {
  const t: Record<CellStatus, number> = { PASS: 0, FAIL: 0, ERROR: 0, "BUILD-FAILED": 0, SKIPPED: 0 };
  for (const c of cells) t[c.status]++;
  return t;
}

export function buildReport(
  name: string,
  cells: CellResult[],
  o: {
    excluded?: MatrixReport["excluded"];
    rules?: FindingRule[];
    duplicates?: string[];
    created?: string;
  } = {},
): MatrixReport {
  return {
    schema: REPORT_SCHEMA,
    name,
    created: o.created ?? new Date().toISOString(),
    cells,
    // Migration pairs have their own grid (renderPairGrids): the columns are the cells' tests.
    columns: reportColumns(cells.filter((c) => !c.migration)),
    findings: deriveFindings(cells, o.rules ?? repoData().findings),
    dependencies: statusDependencies(cells),
    excluded: o.excluded ?? [],
    totals: totals(cells),
    merged_duplicates: o.duplicates ?? [],
  };
}
