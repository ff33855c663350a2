/**
 * `cr-guest bisect criu --git SOURCE --good REF --bad REF --test ID`: the first CRIU commit
 * that turns a test from PASS to FAIL on this pipeline's kernel and image. SOURCE is a git URL,
 * a local checkout or a git bundle; its commits are fetched into the cache's CRIU object store
 * and each step builds CRIU at one commit (cached by commit) and boots the one test. The range
 * is the first-parent history from good to bad (git bisect --first-parent).
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { CommandContext } from "../commands.js";
import { gitOut, resolveGitSource, type GitSource } from "../criu/sources.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { cacheKey, sha256 } from "../lib/hash.js";
import { repoData } from "../data/repo-data.js";
import { knownTestIds, selectTest } from "../boot/test-selection.js";
import { nextStep, worstCase, type BisectRange, type Candidate } from "./plan.js";
import { runBisect, type BisectSubject } from "./run.js";
import { scenariosOf } from "./step.js";

/** The pipeline config of one step: CRIU from the object store at this commit, nothing else. */
export function atCommit(config: PipelineConfig, repo: string, commit: string): PipelineConfig {
  return {
    ...config,
    criu: { ...config.criu, version: "", providers: ["git"], git: { url: repo, ref: commit } },
  };
}

/** The first-parent commits after `good` up to `bad`, oldest first, with their subjects. */
export function rangeOf(repo: string, good: string, bad: string): Candidate[] {
  const log = gitOut(["log", "--first-parent", "--reverse", "--format=%H%x09%s", `${good}..${bad}`], repo);
  if (log.code !== 0)
    throw new UserError(`git log ${good}..${bad} failed: ${log.err.trim()}`, "is the cache writable?");
  return log.out
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [id, ...title] = l.split("\t");
      return { id: id!, title: title.join("\t") };
    });
}

/**
 * A ref of the source as a commit in the cache's object store. A source advertises only its
 * branches and tags (a bundle nothing else), so `v3.18~3`, `2ba872782^` or an abbreviated
 * commit are resolved after fetching its tags, in the store.
 */
export function resolveRef(cacheRoot: string, source: string, ref: string): GitSource {
  try {
    return resolveGitSource(cacheRoot, source, ref);
  } catch (err) {
    if (!(err instanceof UserError) || !/does not exist/.test(err.message)) throw err;
    const repo = join(resolve(cacheRoot), "git", "criu.git");
    gitOut(
      ["fetch", "--quiet", "--force", "--no-tags", source, "+refs/tags/*:refs/tags/*"],
      repo,
      10 * 60_000,
    );
    const commit = gitOut(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], repo).out.trim();
    if (!/^[0-9a-f]{40}$/.test(commit)) throw err;
    return { ...resolveGitSource(cacheRoot, repo, commit), url: source, ref };
  }
}

export async function bisectCriuCommand(ctx: CommandContext, config: PipelineConfig): Promise<number> {
  const v = ctx.values;
  const given = v.git;
  if (!given)
    throw new UserError(
      "bisect criu needs --git SOURCE: a git URL, a CRIU checkout or a git bundle",
      "e.g. --git ../shared/criu-git/criu-tags.bundle --good v3.18 --bad v3.19",
    );
  // A path is taken from here (git fetch runs in the cache's object store).
  const source = existsSync(given) ? resolve(given) : given;
  const good = resolveRef(config.cache_dir, source, v.good!);
  const bad = resolveRef(config.cache_dir, source, v.bad!);
  if (good.commit === bad.commit)
    throw new UserError(
      `--good ${v.good} and --bad ${v.bad} are the same commit (${good.commit.slice(0, 12)})`,
      "name two different refs: the last known good and the first known bad",
    );
  const repo = good.repo;
  if (gitOut(["merge-base", "--is-ancestor", good.commit, bad.commit], repo).code !== 0)
    throw new UserError(
      `--good ${v.good} (${good.commit.slice(0, 12)}) is not an ancestor of --bad ${v.bad} (${bad.commit.slice(0, 12)})`,
      "bisect from an older good commit to a newer bad one (swap them if the test got fixed)",
    );
  const candidates = rangeOf(repo, good.commit, bad.commit);
  const test = v.test!;
  const map = repoData().kernelRequirements;
  // The test must exist at one end at least; a step whose CRIU lacks it cannot be tested.
  const ends = [bad.version, good.version];
  if (!ends.some((ver) => knownTestIds(ver, map, scenariosOf(config, ver)).includes(test)))
    selectTest(test, bad.version, map, scenariosOf(config, bad.version));
  const goodTitle = gitOut(["log", "-1", "--format=%s", good.commit], repo).out.trim();
  const fragments = (v.fragment ?? []).map((f) => sha256(readFileSync(f)));
  const id = cacheKey({
    kind: "criu",
    good: good.commit,
    bad: bad.commit,
    test,
    // Everything else the steps build with (the kernel, the image, the boot), not the source.
    config: { ...config, cache_dir: "", criu: { ...config.criu, version: "", git: { url: "", ref: "" } } },
    fragments,
  });
  const subject: BisectSubject = {
    id,
    kind: "criu",
    test,
    source,
    good: { ref: v.good!, id: good.commit },
    bad: { ref: v.bad!, id: bad.commit },
    range: { good: { id: good.commit, title: goodTitle }, candidates, steps: [] },
    describe: (c) => `${c.id.slice(0, 12)} ${c.title}`,
    step: (c) => ({ config: atCommit(config, repo, c.id), kernel: { extraFragments: v.fragment ?? [] } }),
  };
  if (v["dry-run"]) return dryRun(ctx, subject);
  return (await runBisect(ctx, config, subject)).code;
}

function dryRun(ctx: CommandContext, s: BisectSubject): number {
  const w = worstCase(s.range.candidates.length);
  const first = nextStep(s.range as BisectRange);
  ctx.say(
    `bisect criu ${s.good.ref}..${s.bad.ref} (${s.range.candidates.length} first-parent commits after ${s.good.id.slice(0, 12)}), test ${s.test}:`,
  );
  ctx.say(
    `  confirm the ends (${s.good.ref} passes, ${s.bad.ref} fails), halve, re-run the culprit and its parent`,
  );
  ctx.say(`  worst case: ${w.builds} CRIU builds (cached by commit) and ${w.boots} boots`);
  if (first.action === "test") ctx.say(`  first step: ${s.describe(first.candidate)} (${first.role})`);
  ctx.say(`  state: bisect ${s.id} under the cache (resumes after Ctrl-C)`);
  ctx.emit({
    id: s.id,
    kind: s.kind,
    test: s.test,
    good: s.good,
    bad: s.bad,
    candidates: s.range.candidates,
    worst_case: w,
  });
  return 0;
}
