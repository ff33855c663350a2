/**
 * Findings in plain words: the rules kept as data (criu-builds/findings.yaml) matched against
 * the cells' evidence, and what each test's status depends on, read off the cells.
 */
import semver from "semver";
import { kernelSemver, semverOf } from "../../data/criu-catalog.js";
import type { FindingRule } from "../../data/findings.js";
import type { TestStatus } from "../../boot/results.js";
import type { CellResult, CellTest } from "../cell.js";
import { AXES, type AxisName } from "../spec.js";
import { matchesTest } from "./columns.js";

export interface ReportFinding {
  id: string;
  say: string;
  /** Cells that show the evidence, with the message that matched. */
  seen_in: { cell: string; test: string; message: string }[];
  /** Cells where the same test passes: the contrast. */
  passes_in: string[];
}

const evidenceOf = (t: CellTest) => [t.message, ...t.error_lines].join("\n");

/** The cell's CRIU and guest kernel versions are in the ranges (an unknown kernel is not). */
function holdsIn(holds: { criu: string; kernel?: string }, cell: CellResult): boolean {
  if (!semver.satisfies(semverOf(cell.criu_version), holds.criu)) return false;
  if (!holds.kernel) return true;
  const kernel = cell.identities.kernel?.version ?? cell.guest?.kernel;
  return kernel !== undefined && semver.satisfies(kernelSemver(kernel), holds.kernel);
}

export function deriveFindings(cells: CellResult[], rules: FindingRule[]): ReportFinding[] {
  const claimed = new Set<string>(); // cell+test: the first rule that explains it wins
  const out: ReportFinding[] = [];
  for (const rule of rules) {
    const re = new RegExp(rule.message, "i");
    const seen: ReportFinding["seen_in"] = [];
    const passes = new Set<string>();
    for (const cell of cells) {
      if (rule.holds && !holdsIn(rule.holds, cell)) continue;
      for (const t of cell.tests) {
        if (!matchesTest(rule.test, t.name)) continue;
        if (t.status === "PASS") passes.add(cell.id);
        const k = `${cell.id}\u0000${t.name}`;
        if (claimed.has(k)) continue;
        if ((rule.status === "any" || t.status === rule.status) && re.test(evidenceOf(t))) {
          claimed.add(k);
          seen.push({
            cell: cell.id,
            test: t.name,
            message: (t.error_lines.find((l) => re.test(l)) ?? t.message).slice(0, 200),
          });
        }
      }
    }
    if (seen.length)
      out.push({
        id: rule.id,
        say: rule.say.replace(/\s+/g, " ").trim(),
        seen_in: seen,
        passes_in: [...passes].filter((id) => !seen.some((s) => s.cell === id)),
      });
  }
  return out;
}

/** The one axis whose value alone decides the test's status across the cells, if any. */
function decidingAxis(byCell: Map<CellResult, TestStatus>): AxisName | undefined {
  return AXES.find((a: AxisName) => {
    const seen = new Map<string, TestStatus>();
    for (const [c, s] of byCell) {
      const v = c.axes[a];
      if (seen.has(v) && seen.get(v) !== s) return false;
      seen.set(v, s);
    }
    return new Set(seen.values()).size > 1;
  });
}

/** Why a test's status differs between cells: by the deciding axis, else the cells where it fails. */
function whyItDiffers(byCell: Map<CellResult, TestStatus>): string {
  const axis = decidingAxis(byCell);
  if (axis) {
    const groups = new Map<TestStatus, Set<string>>();
    for (const [c, s] of byCell) groups.set(s, (groups.get(s) ?? new Set()).add(c.axes[axis]));
    return [...groups].map(([s, vs]) => `${s} with ${axis} ${[...vs].join(", ")}`).join("; ");
  }
  const failing = [...byCell].filter(([, s]) => s !== "PASS").map(([c, s]) => `${c.id} (${s})`);
  return `not PASS in ${failing.join(", ")}; PASS elsewhere`;
}

/**
 * For each test whose status differs between completed cells: the axis it depends on, when
 * one axis alone decides it (e.g. "membarrier/registration: FAIL with criu 3.17.1; PASS with
 * criu 4.1.1, 4.2.1"), else the cells where it fails.
 */
export function statusDependencies(cells: CellResult[]): string[] {
  const done = cells.filter((c) => c.status === "PASS" || c.status === "FAIL");
  const names = [...new Set(done.flatMap((c) => c.tests.map((t) => t.name)))];
  // Tests that depend on the same thing in the same way are one line (e.g. every --feature
  // check failing with the same unpatched CRIU).
  const byWhy = new Map<string, string[]>();
  for (const name of names) {
    const byCell = new Map(
      done
        .map((c) => [c, c.tests.find((t) => t.name === name)?.status])
        .filter((e): e is [CellResult, TestStatus] => Boolean(e[1])),
    );
    if (new Set(byCell.values()).size < 2) continue;
    const why = whyItDiffers(byCell);
    byWhy.set(why, [...(byWhy.get(why) ?? []), name]);
  }
  const named = (names: string[]) =>
    names.length > 4 ? `${names.slice(0, 3).join(", ")} and ${names.length - 3} more` : names.join(", ");
  return [...byWhy].map(([why, names]) => `${named(names)}: ${why}`);
}
