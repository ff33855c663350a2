/**
 * The CI workflow (.github/workflows/cr-guest-matrix.yml), checked in: valid per GitHub's
 * workflow schema; jobs and steps as the CI design has them (the YAML checks out, caches and
 * moves artifacts, every other step is one command of ours that runs locally too); and its CRIU
 * jobs taken at run time from what `cr-guest ci keys` prints for matrix.yaml.
 */
import { tempDir } from "../helpers/temp.js";
import { describe, expect, it } from "vitest";
import { validateWorkflow } from "@action-validator/core";
import { parse } from "yaml";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { servableFromPins } from "../../scripts/data/criu-catalog.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { criuJobs, GITHUB_WORKFLOW } from "../../scripts/matrix/ci.js";
import { renderGithubWorkflow } from "../../scripts/matrix/command.js";
import { loadMatrixSpec, planMatrix } from "../../scripts/matrix/spec.js";
import { crGuest } from "../helpers/cli.js";

type Step = { id?: string; uses?: string; run?: string; if?: string; with?: Record<string, string | number> };
type Job = {
  needs?: string | string[];
  if?: string;
  outputs?: Record<string, string>;
  steps: Step[];
  strategy?: { "fail-fast"?: boolean; matrix: { criu: string | string[] } };
};
type Workflow = {
  permissions: Record<string, string>;
  concurrency: { group: string; "cancel-in-progress": string };
  defaults: { run: { shell: string } };
  jobs: Record<string, Job>;
};

const TEXT = readFileSync(GITHUB_WORKFLOW, "utf8");
const WF = parse(TEXT) as Workflow;
const JOBS = Object.entries(WF.jobs);
const needsOf = (job: Job) => (job.needs === undefined ? [] : [job.needs].flat());
const runs = (job: Job) => job.steps.flatMap((s) => (s.run === undefined ? [] : [s.run]));

/** `name=value` lines as `ci keys` writes them to $GITHUB_OUTPUT. */
async function keysOutput(args: string[]): Promise<Record<string, string>> {
  const file = join(tempDir("crg-keys-"), "github-output");
  const r = await crGuest(["ci", "keys", ...args], 120_000, { GITHUB_OUTPUT: file });
  expect(r.exitCode, r.stderr).toBe(0);
  return Object.fromEntries(
    readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

describe("the CI workflow", () => {
  it("is valid per GitHub's workflow schema (and the validator refuses a broken one)", () => {
    expect(validateWorkflow(TEXT).errors).toEqual([]);
    expect(
      validateWorkflow(TEXT.replace("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04")).errors.length,
    ).toBeGreaterThan(0);
  });

  it("runs kernels, then one cells job per CRIU version, then the report, even after a failure", () => {
    expect(WF.permissions).toEqual({ contents: "read", actions: "read" });
    expect(WF.concurrency["cancel-in-progress"]).toContain("pull_request");
    // bash: GitHub runs it with -eo pipefail, so a piped command's failure fails the step.
    expect(WF.defaults.run.shell).toBe("bash");
    expect(Object.fromEntries(JOBS.map(([n, j]) => [n, j.needs ?? null]))).toEqual({
      kernels: null,
      cells: "kernels",
      report: "cells",
    });
    expect(WF.jobs.cells.strategy!["fail-fast"]).toBe(false);
    expect(WF.jobs.report.if).toBe("${{ !cancelled() }}");
    expect(TEXT).not.toMatch(/always\(\)/);
  });

  it("is thin: checkout, cache and artifacts in YAML, every other step one command of ours", () => {
    const makefile = readFileSync(join(REPO_ROOT, "Makefile"), "utf8");
    for (const [name, job] of JOBS)
      for (const step of job.steps) {
        if (step.run === undefined) {
          expect(step.uses, `${name}: a step is a run or a known action`).toMatch(
            /^actions\/(checkout|cache|upload-artifact|download-artifact|setup-node)@v4$/,
          );
          continue;
        }
        // One command per step: no pipes, no chains, no inline scripts.
        expect(step.run, `${name}: ${step.run}`).toMatch(/^(bin\/cr-guest ci|make) [^|;&\n]+$/);
        const target = /^make (\S+)/.exec(step.run)?.[1];
        if (target) expect(makefile, `make ${target}`).toMatch(new RegExp(`^${target}:`, "m"));
      }
    // Cache keys are unique per run (saved every time) and restored by prefix.
    expect(TEXT.match(/key: .*\$\{\{ github\.run_id \}\}/g)!.length).toBe(4);
  });

  it("runs the CI steps in the order `make ci-local` plays them", () => {
    const steps = (lines: string[]) =>
      lines
        .flatMap((l) => /(?:bin\/cr-guest|\$\(CRG\)) ci (\w+)/.exec(l)?.[1] ?? [])
        .filter((s, i, a) => a.indexOf(s) === i);
    const inWorkflow = steps(JOBS.flatMap(([, j]) => runs(j)));
    const makefile = readFileSync(join(REPO_ROOT, "Makefile"), "utf8");
    const ciLocal = makefile.slice(makefile.indexOf("\nci-local:")).split("\n\n")[0].split("\n");
    expect(inWorkflow).toEqual(["keys", "kernels", "cell", "report"]);
    expect(steps(ciLocal)).toEqual(inWorkflow);
  });

  it("downloads only artifacts that a job it needs uploads", () => {
    const uploads = new Map<string, string[]>();
    for (const [name, job] of JOBS)
      uploads.set(
        name,
        job.steps
          .filter((s) => s.uses?.startsWith("actions/upload-artifact"))
          .map((s) => String(s.with!.name)),
      );
    for (const [name, job] of JOBS)
      for (const s of job.steps.filter((x) => x.uses?.startsWith("actions/download-artifact"))) {
        const want = String(s.with!.name ?? s.with!.pattern);
        // An artifact name with ${{ matrix.criu }} in it matches a pattern's * (and a name itself).
        const re = new RegExp(`^${want.replace(/\*/g, ".*")}$`);
        const from = needsOf(job).flatMap((n) => uploads.get(n) ?? []);
        expect(
          from.some((u) => re.test(u.replace(/\$\{\{ matrix\.criu \}\}/, "4.1.1"))),
          `${name} downloads ${want}; its needs upload ${from.join(", ")}`,
        ).toBe(true);
      }
  });

  it(
    "takes its CRIU jobs and cache keys from `cr-guest ci keys` (real run on matrix.yaml)",
    { timeout: 240_000 },
    async () => {
      // The cells job's matrix is the JSON list the kernels job's keys step writes.
      expect(WF.jobs.cells.strategy!.matrix.criu).toBe(
        "${{ fromJSON(needs.kernels.outputs.criu_versions) }}",
      );
      expect(WF.jobs.kernels.outputs).toEqual({ criu_versions: "${{ steps.keys.outputs.criu_versions }}" });
      const keysStep = (job: Job) => job.steps.find((s) => s.id === "keys")!;
      expect(keysStep(WF.jobs.kernels).run).toBe("bin/cr-guest ci keys --matrix matrix.yaml");
      expect(keysStep(WF.jobs.cells).run).toContain('--criu "${{ matrix.criu }}"');
      const written = {
        kernels: await keysOutput(["--matrix", join(REPO_ROOT, "matrix.yaml")]),
        cells: await keysOutput(["--matrix", join(REPO_ROOT, "matrix.yaml"), "--criu", "4.1.1"]),
      };
      // Every keys output a job reads is one the command writes.
      for (const job of ["kernels", "cells"] as const) {
        const read = [...JSON.stringify(WF.jobs[job]).matchAll(/steps\.keys\.outputs\.(\w+)/g)].map(
          (m) => m[1],
        );
        expect(read.length, job).toBeGreaterThan(0);
        for (const name of read) expect(Object.keys(written[job]), `${job} reads ${name}`).toContain(name);
      }
      expect(written.cells.criu).toMatch(/^[0-9a-f]{16}$/);
      // The list: the matrix's CRIU versions the catalog serves from pins (3.19 from its tag).
      const plan = planMatrix(loadMatrixSpec(join(REPO_ROOT, "matrix.yaml")));
      const served = plan.spec.axes.criu
        .map((v) => v.id)
        .filter((id) => servableFromPins(id, repoData().criu));
      expect(JSON.parse(written.kernels.criu_versions)).toEqual(served);
      expect(served).toContain("3.19");
    },
  );

  it("lists a CRIU job by its axis id, and only versions the catalog serves from pins", () => {
    const small = planMatrix(loadMatrixSpec(join(REPO_ROOT, "test/fixtures/matrix/small.yaml")));
    // "4.1" resolves to 4.1.1; the job runs `ci cell --criu 4.1`, which picks the cells by that id.
    expect(criuJobs(small.cells)).toEqual(["3.17.1", "4.1"]);
    const plan = planMatrix(loadMatrixSpec(join(REPO_ROOT, "matrix.yaml")));
    const bare = {
      ...repoData().criu,
      versions: new Map(
        [...repoData().criu.versions].map(([k, e]) => [
          k,
          k === "3.19" ? { version: k, min_suite: e.min_suite } : e,
        ]),
      ),
    };
    expect(criuJobs(plan.cells)).toContain("3.19");
    expect(criuJobs(plan.cells, bare)).not.toContain("3.19");
  });

  it("is no longer generated: the old --emit-github path says where the workflow is", () => {
    expect(() => renderGithubWorkflow()).toThrow(/checked in/);
  });
});
