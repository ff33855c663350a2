/**
 * `migrate --dry-run`: the stages runMigration (migrate/run.ts) would run, planned as
 * plan-only.ts plans a single run's: each side's kernel and CRIU, one image holding both
 * CRIUs, and boot A (dump) then boot B (restore), or one boot in place. The boots' run.conf
 * is composed as runMigration composes it.
 */
import { join } from "node:path";
import semver from "semver";
import { resolveAndPlanCriu } from "./criu/stage.js";
import { repoData } from "./data/repo-data.js";
import { loadScenarios, migratingCases } from "./data/scenarios.js";
import type { StageOutcome } from "./driver.js";
import { criuGuestPath } from "./image/stage.js";
import type { PipelineConfig } from "./lib/config.js";
import { GUEST_PATHS } from "./lib/guest-contract.js";
import { migrateConf, pairAxes, pairId, type PairSpec } from "./migrate/pair.js";
import { imageSide, sideConfig } from "./migrate/run.js";
import {
  plannedStage,
  planAgentStage,
  planBootStage,
  planCriuStage,
  planImageStage,
  planKernelStage,
  type DryRun,
  type KnownCriu,
  type KnownKernel,
  type PlannedStage,
} from "./plan-only.js";

/** A cached CRIU as the driver hands it on (imageSide reads its metadata). */
function criuOutcome(k: KnownCriu): StageOutcome<"criu"> {
  const value = { dir: k.dir, cached: true, metadata: k.metadata, findings: [], attempts: [] };
  return { stage: "criu", status: "done", cached: true, seconds: 0, identity: null, notes: [], value };
}

interface Side {
  config: PipelineConfig;
  kernel?: KnownKernel;
  criu?: KnownCriu;
}

/** Each side's kernel and CRIU; a stage both sides share is listed once ("from and to"). */
async function planSides(
  base: { configFile?: string; set: string[] },
  pair: PairSpec,
  stages: PlannedStage[],
): Promise<[Side, Side]> {
  const cfgA = sideConfig(base, pair.from);
  const cfgB = sideConfig(base, pair.to);
  const sameKernel = JSON.stringify(cfgB.kernel) === JSON.stringify(cfgA.kernel);
  const kA = await planKernelStage(cfgA, { role: sameKernel ? "from and to" : "from" });
  const kB = sameKernel ? kA : await planKernelStage(cfgB, { role: "to" });
  stages.push(kA.stage, ...(sameKernel ? [] : [kB.stage]));
  // The migration builds each side's CRIU even against a predicted failure (that is evidence).
  const criuOf = (config: PipelineConfig, kernel: KnownKernel | undefined, role: string) =>
    planCriuStage(
      config,
      resolveAndPlanCriu(config, { strict: false }),
      { kernel },
      { role, criuForce: true },
    );
  let cA = await criuOf(cfgA, kA.known, "from");
  const cB = await criuOf(cfgB, kB.known, "to");
  if (cA.stage.key && cA.stage.key === cB.stage.key) cA = await criuOf(cfgA, kA.known, "from and to");
  stages.push(cA.stage, ...(cA.stage.key && cA.stage.key === cB.stage.key ? [] : [cB.stage]));
  return [
    { config: cfgA, kernel: kA.known, criu: cA.known },
    { config: cfgB, kernel: kB.known, criu: cB.known },
  ];
}

export async function planMigration(
  base: { configFile?: string; set: string[] },
  pair: PairSpec,
  o: { force?: boolean } = {},
): Promise<DryRun> {
  const stages: PlannedStage[] = [];
  const [a, b] = await planSides(base, pair, stages);
  const image = await planPairImage(a, b, stages);
  const notes = [
    `the pair's verdict goes to ${join(a.config.cache_dir, "migrate", pairId(pair), "pair.json")}`,
  ];
  const done = { command: "migrate", cache_dir: a.config.cache_dir, stages, notes };
  if (!a.criu || !b.criu) {
    notes.push(
      `the image holds both CRIUs, in the guest suite both run in: which one is known once both are built`,
    );
    const detail = "the key is known once both CRIUs and the image are built";
    stages.push(
      ...(pair.inPlace ? ["dump and restore"] : ["dump", "restore"]).map((role) =>
        plannedStage("boot", null, undefined, { fresh: "run", detail, role }),
      ),
    );
    return done;
  }
  // The cases both CRIUs run, and each boot's run.conf, as runMigration composes them.
  const catalog = repoData().criu;
  const versions = { dump: a.criu.metadata.version, restore: b.criu.metadata.version };
  const scenarios = loadScenarios(a.config.boot.scenarios).filter(
    (s) => semver.satisfies(versions.dump, s.criu) && semver.satisfies(versions.restore, s.criu),
  );
  const cases = migratingCases(scenarios);
  const paths = image.sameCriu
    ? { dump: GUEST_PATHS.criu, restore: GUEST_PATHS.criu }
    : { dump: criuGuestPath(a.criu.metadata), restore: criuGuestPath(b.criu.metadata) };
  const conf = (phase: "dump" | "restore" | "both") => migrateConf(phase, cases, paths, versions, catalog);
  const known = (s: Side) => ({ kernel: s.kernel, criu: s.criu, image: image.known });
  notes.push(`${cases.length} migrating cases: ${pairAxes(pair)}`);
  if (pair.inPlace) {
    const one = await planBootStage(a.config, known(a), {
      role: "dump and restore",
      bootConf: conf("both"),
      force: o.force,
    });
    stages.push(one.stage);
    return done;
  }
  const bootA = await planBootStage(a.config, known(a), {
    role: "dump",
    bootConf: conf("dump"),
    transfer: { mode: "write" },
    force: o.force,
  });
  stages.push(bootA.stage);
  // Boot B reads boot A's transfer disk: its key is known once boot A has run.
  stages.push(
    bootA.stage.dir && bootA.known
      ? (
          await planBootStage(b.config, known(b), {
            role: "restore",
            bootConf: conf("restore"),
            transfer: { mode: "read", readFrom: join(bootA.stage.dir, "transfer.img") },
            force: o.force,
          })
        ).stage
      : plannedStage("boot", null, undefined, {
          fresh: "run",
          detail: "restore from boot A's transfer disk: the key is known once boot A has run",
          role: "restore",
        }),
  );
  return done;
}

/**
 * The agent and the one image of both CRIUs: the side whose guest suite both run in makes it
 * (imageSide of migrate/run.ts), known once both are built; the other CRIU goes in beside.
 */
async function planPairImage(a: Side, b: Side, stages: PlannedStage[]) {
  const [primaryCfg, primary, other] =
    a.criu && b.criu
      ? imageSide(repoData().criu, [a.config, criuOutcome(a.criu)], [b.config, criuOutcome(b.criu)])
      : [a.config, undefined, undefined];
  const sameCriu =
    primary !== undefined && other?.value.metadata.criu.sha256 === primary.value.metadata.criu.sha256;
  const agent = await planAgentStage(primaryCfg);
  stages.push(agent.stage);
  const image = await planImageStage(
    primaryCfg,
    {
      criuPlan: resolveAndPlanCriu(primaryCfg, { strict: false }),
      criu: primary ? { dir: primary.value.dir, metadata: primary.value.metadata } : undefined,
      agent: agent.known,
    },
    { moreCriu: other && !sameCriu ? [{ dir: other.value.dir, metadata: other.value.metadata }] : [] },
  );
  stages.push(image.stage);
  return { known: image.known, sameCriu };
}
