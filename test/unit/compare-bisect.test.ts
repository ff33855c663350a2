/**
 * `cr-guest compare`'s bisect commands: a regression between two CRIU versions gets `bisect
 * criu` (tags, or the commits a git build recorded), one between two kernel configs `bisect
 * config` (the cached .configs); both changed, or neither, gets none. Cells built from the real
 * guest run in test/fixtures/runs (kernel 6.12.107, CRIU 4.1.1).
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { cellTests, type CellResult } from "../../scripts/matrix/cell.js";
import type { RunResults } from "../../scripts/boot/stage.js";
import {
  CRIU_GIT,
  compareReports,
  criuTag,
  renderComparison,
  shellWord,
} from "../../scripts/matrix/report.js";
import { cell } from "../helpers/cells.js";

const RUN: RunResults = JSON.parse(
  readFileSync(join(REPO_ROOT, "test/fixtures/runs/6.12.107-criu-4.1.1-results.json"), "utf8"),
);
type Ids = CellResult["identities"];
const KERNEL = RUN.identities.kernel;
const CRIU = { key: "ck", ...RUN.identities.criu };

/** The fixture run as a cell; `failing` turned from PASS to FAIL, identities changed by `ids`. */
function runCell(ids: Partial<Ids> = {}, failing: string[] = []): CellResult {
  const tests = cellTests(RUN.tests).map((t) =>
    failing.includes(t.name) ? { ...t, status: "FAIL" as const } : t,
  );
  return cell("4.1.1", "6.12", "none", tests, { identities: { kernel: KERNEL, criu: CRIU, ...ids } });
}
const REGRESSED = ["criu-check", "simple-process/dump-restore"];
const bisects = (old: CellResult, now: CellResult) =>
  compareReports([old], [now]).regressions.map((r) => ({
    test: r.test,
    bisect: r.bisect,
    note: r.bisect_note,
  }));

describe("compare: the bisect command of a regression", () => {
  it("CRIU changed, kernel the same: bisect criu between the two tags, one command per regressed test", () => {
    const now = runCell({ criu: { ...CRIU, version: "4.2.0", sha256: "e".repeat(64) } }, REGRESSED);
    const want = (test: string) =>
      `cr-guest bisect criu --git ${CRIU_GIT} --good v4.1.1 --bad v4.2 --test ${test}`;
    expect(bisects(runCell(), now)).toEqual([
      { test: "criu-check", bisect: [want("criu-check")], note: undefined },
      { test: "simple-process/dump-restore", bisect: [want("simple-process/dump-restore")], note: undefined },
    ]);
    // What the CLI prints (text, --markdown) and --json carries.
    const c = compareReports([runCell()], [now]);
    expect(renderComparison(c, false)).toContain(
      `  4.1.1_6.12_none_native criu-check: PASS -> FAIL (Looks good.)\n    bisect: ${want("criu-check")}\n`,
    );
    expect(renderComparison(c, true)).toContain(`\n  - bisect: \`${want("simple-process/dump-restore")}\``);
    expect(JSON.parse(JSON.stringify(c)).regressions[0].bisect).toEqual([want("criu-check")]);
  });

  it("a CRIU built from git is bisected between its recorded commits; without one, not at all", () => {
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const git = { ...CRIU, provider: "git", version: "4.2", sha256: "f".repeat(64) };
    expect(bisects(runCell(), runCell({ criu: { ...git, commit } }, ["criu-check"]))[0].bisect).toEqual([
      `cr-guest bisect criu --git ${CRIU_GIT} --good v4.1.1 --bad ${commit} --test criu-check`,
    ]);
    expect(bisects(runCell(), runCell({ criu: git }, ["criu-check"]))[0].bisect).toEqual([]);
  });

  it("kernel config changed, CRIU the same: bisect config between the two cached .configs, with --criu", () => {
    const kernel = { ...KERNEL, key: "0a1b2c3d4e5f6071", config_sha256: "d".repeat(64) };
    expect(bisects(runCell(), runCell({ kernel }, ["criu-check"]))[0].bisect).toEqual([
      `cr-guest bisect config --good images/kernel/${KERNEL.key}/config --bad images/kernel/0a1b2c3d4e5f6071/config --test criu-check --criu 4.1.1`,
    ]);
    // Another kernel version is not a config change.
    const version = { ...kernel, version: "6.12.110", release: "6.12.110" };
    expect(bisects(runCell(), runCell({ kernel: version }, ["criu-check"]))[0].bisect).toEqual([]);
  });

  it("both changed: no command, a note; nothing changed or no regression: no command", () => {
    const both = runCell(
      { kernel: { ...KERNEL, key: "k2", config_sha256: "d".repeat(64) }, criu: { ...CRIU, version: "4.2" } },
      ["criu-check"],
    );
    expect(bisects(runCell(), both)).toEqual([
      {
        test: "criu-check",
        bisect: [],
        note: "CRIU and the kernel config both changed: bisect one at a time",
      },
    ]);
    expect(renderComparison(compareReports([runCell()], [both]), false)).toContain(
      "\n    CRIU and the kernel config both changed: bisect one at a time",
    );
    expect(bisects(runCell(), runCell({}, ["criu-check"]))).toEqual([
      { test: "criu-check", bisect: [], note: undefined },
    ]);
    expect(compareReports([runCell()], [runCell({ criu: { ...CRIU, version: "4.2" } })]).regressions).toEqual(
      [],
    );
  });

  it("tags and shell words as typed", () => {
    expect(["4.2.0", "4.2", "4.0", "4.1.1", "3.17.1"].map(criuTag)).toEqual([
      "v4.2",
      "v4.2",
      "v4.0",
      "v4.1.1",
      "v3.17.1",
    ]);
    expect(shellWord("pidns-init/setsid")).toBe("pidns-init/setsid");
    expect(shellWord("my cache/kernel/k/config")).toBe("'my cache/kernel/k/config'");
    expect(shellWord("it's")).toBe(`'it'\\''s'`);
  });
});
