/**
 * The image stage: CRIU artifact + agent + guest runner -> a raw guest image.
 *   fresh:    guest rootfs (mmdebstrap or debootstrap minbase, cached) -> GPT + ext4 via mkfs.ext4 -d -> inject
 *   existing: copy of the user's Kata image (never changed) -> inspect -> inject
 * Injection is one guestfish session that also reads every file back; the sha256 of each
 * must match the host's. Output: images/image/<key>/{disk.img, manifest.json, metadata.json},
 * and images/<name>.img pointing at it.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync, writeFileSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { KATA_AGENT_UNIT, KATA_CONTAINERS_TARGET } from "../agent/agent.js";
import type { AgentArtifact } from "../agent/stage.js";
import type { CriuStageResult } from "../criu/stage.js";
import { ArtifactCache } from "../lib/cache.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { cacheKey, sha256, sha256File } from "../lib/hash.js";
import { requireHostTools } from "../lib/host-tools.js";
import { fromPhase, runPhases, type Phase, type PhaseLog, type PhaseTiming } from "../lib/phases.js";
import {
  GuestfishSession,
  injectionScript,
  parseChecksums,
  requireGuestfish,
  runGuestfish,
  type GuestOp,
} from "./guestfish.js";
import { inspectImage, type ImageInspection } from "./inspect.js";
import { makeRawImage, ROOT_PARTUUID, type ImageLayout } from "./layout.js";
import { ensureGuestHelpers, helperHeaders, helperSources, HELPERS_DIR } from "./helpers.js";
import {
  GUEST_CONTRACT_ENV,
  GUEST_PATHS,
  GUEST_RUNNER_DIR,
  guestContractEnv,
} from "../lib/guest-contract.js";
import { bundleStrace, criuVersionIn, ensureGuestRootfs, guestPackages } from "../lib/rootfs.js";

export const IMAGE_RECIPE_VERSION = 1;
export { GUEST_PATHS, GUEST_RUNNER_DIR };

export interface RunnerFile {
  path: string; // relative to guest/
  sha256: string;
  mode: number;
}

export interface Component {
  name: string;
  version: string;
  path: string;
  sha256: string;
  source: string;
}

export interface GuestManifest {
  schema: 1;
  image_key: string;
  base: string;
  suite: string | null;
  criu: { version: string; provider: string; link: string; patches: string[]; sha256: string };
  agent: { kata_version: string | null; setsid: string; sha256: string; source: string } | "no agent";
  runner: { files: number; sha256: string };
  components: Component[];
}

export interface ImageMetadata {
  name: string;
  base:
    | { kind: "fresh"; suite: string; packages: string[]; rootfs_key: string }
    | {
        kind: "existing";
        path: string;
        sha256: string;
        label: string;
        root_fs: string | undefined;
        dax: boolean;
      };
  root: { device: string; partuuid: string | null };
  criu: { dir: string; version: string; sha256: string; version_in_rootfs: string | null };
  agent: { dir: string; sha256: string; kata_version: string | null; setsid_after: string | null } | null;
  runner: RunnerFile[];
  layout: ImageLayout | null;
  injected: { path: string; sha256: string }[];
  guestfish_launches: number;
  seconds: { rootfs: number; image: number; inject: number };
  /** The build's phases, each timed (artifacts built before phases were named have none). */
  phases?: PhaseTiming[];
  bytes: number;
  created: string;
}

export interface ImageResult {
  dir: string;
  image: string;
  link: string;
  cached: boolean;
  metadata: ImageMetadata;
  manifest: GuestManifest;
}

/**
 * Every file of the guest runner, hashed: part of the image's cache key. The C helpers'
 * sources are not shipped; their static binaries go to bin/ (see helpers.ts).
 */
export async function runnerFiles(dir = GUEST_RUNNER_DIR): Promise<RunnerFile[]> {
  if (!existsSync(dir)) throw new Error(`guest runner directory ${dir} is missing`);
  const out: RunnerFile[] = [];
  const walk = async (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) {
        if (p !== HELPERS_DIR) await walk(p);
      } else
        out.push({
          path: relative(dir, p),
          sha256: await sha256File(p),
          mode: st.mode & 0o111 ? 0o755 : 0o644,
        });
    }
  };
  await walk(dir);
  return out;
}

/** Parent directories of every target, so each upload finds its directory. */
export function withParentDirs(ops: GuestOp[]): GuestOp[] {
  const dirs = new Set<string>();
  for (const o of ops) {
    const target = o.op === "upload" || o.op === "write" ? o.to : o.op === "symlink" ? o.link : undefined;
    if (target) dirs.add(target.slice(0, target.lastIndexOf("/")) || "/");
  }
  return [
    ...[...dirs].sort().map((path) => ({ op: "mkdir" as const, path })),
    ...ops.filter((o) => o.op !== "mkdir"),
    ...ops.filter((o) => o.op === "mkdir"),
  ];
}

export interface InjectionInputs {
  criu: string;
  /** A multi-CRIU image: every build again under its version (criuGuestPath). */
  criuByVersion?: { from: string; to: string }[];
  runner: { dir: string; files: RunnerFile[] };
  helpers: { dir: string; names: string[] };
  agent?: string;
  straceBundle?: { dir: string; files: string[] };
  manifest: string;
}

/** The guestfish operations for an image: pure, so unit tests see what goes where. */
export function injectionOps(inp: InjectionInputs): GuestOp[] {
  const ops: GuestOp[] = [{ op: "upload", from: inp.criu, to: GUEST_PATHS.criu, mode: 0o755 }];
  for (const c of inp.criuByVersion ?? []) ops.push({ op: "upload", from: c.from, to: c.to, mode: 0o755 });
  for (const f of inp.runner.files)
    ops.push({
      op: "upload",
      from: join(inp.runner.dir, f.path),
      to: `${GUEST_PATHS.runner}/${f.path}`,
      mode: f.mode,
    });
  for (const h of inp.helpers.names)
    ops.push({
      op: "upload",
      from: join(inp.helpers.dir, h),
      to: `${GUEST_PATHS.runner}/bin/${h}`,
      mode: 0o755,
    });
  ops.push({ op: "write", to: GUEST_CONTRACT_ENV, content: guestContractEnv(), mode: 0o644 });
  // Legacy iptables under the plain names, first in the init's PATH when the image has them:
  // links made here cost the guest nothing at boot (six `ln` took ~0.6 s under TCG).
  for (const tool of ["iptables", "ip6tables"])
    for (const suffix of ["", "-save", "-restore"])
      ops.push({
        op: "symlink",
        target: `/usr/sbin/${tool}-legacy${suffix}`,
        link: `${GUEST_PATHS.runner}/iptables-legacy/${tool}${suffix}`,
      });
  if (inp.straceBundle)
    for (const f of inp.straceBundle.files)
      ops.push({
        op: "upload",
        from: join(inp.straceBundle.dir, f),
        to: `${GUEST_PATHS.strace}/${f}`,
        mode: 0o755,
      });
  if (inp.agent) {
    ops.push({ op: "upload", from: inp.agent, to: GUEST_PATHS.agent, mode: 0o755 });
    ops.push({ op: "write", to: GUEST_PATHS.agentUnit, content: KATA_AGENT_UNIT, mode: 0o644 });
    ops.push({ op: "write", to: GUEST_PATHS.kataTarget, content: KATA_CONTAINERS_TARGET, mode: 0o644 });
    // As osbuilder does: basic.target pulls in kata-containers.target, which requires the agent.
    ops.push({
      op: "symlink",
      target: GUEST_PATHS.kataTarget,
      link: "/etc/systemd/system/basic.target.wants/kata-containers.target",
    });
  }
  ops.push({ op: "upload", from: inp.manifest, to: GUEST_PATHS.manifest, mode: 0o644 });
  return withParentDirs(ops);
}

async function isDax(image: string): Promise<boolean> {
  // Kata's osbuilder puts an NVDIMM PFN info block at 4 KiB when it builds a DAX image.
  const fh = await open(image, "r");
  try {
    const buf = Buffer.alloc(16);
    await fh.read(buf, 0, 16, 4096);
    return buf.toString("latin1").startsWith("NVDIMM_PFN_INFO");
  } finally {
    await fh.close();
  }
}

function checkBaseImage(path: string): void {
  if (!existsSync(path))
    throw new UserError(
      `base image ${path} does not exist`,
      "pass a raw Kata guest image with --base FILE, or leave image.base empty for a fresh image",
    );
  const st = statSync(path);
  if (!st.isFile())
    throw new UserError(
      `base image ${path} is not a file`,
      "pass a raw image file (e.g. kata-containers.img)",
    );
  try {
    // A read probe: unreadable files fail here with a clear message rather than inside guestfish.
    readFileSyncHead(path);
  } catch (err) {
    throw new UserError(
      `base image ${path} is not readable: ${(err as Error).message}`,
      "check its permissions",
    );
  }
}

function readFileSyncHead(path: string): void {
  const fd = openSync(path, "r");
  try {
    readSync(fd, Buffer.alloc(512), 0, 512, 0);
  } finally {
    closeSync(fd);
  }
}

export interface ImageStageInputs {
  criu: CriuStageResult;
  agent?: AgentArtifact;
  log?: (line: string) => void;
  /** Whether KVM works for the guestfish appliance (from the QEMU probe); TCG otherwise. */
  kvm?: boolean;
  /**
   * More CRIU builds for the same image (a migration's other version): then every CRIU, the
   * main one too, is also installed by version (criuGuestPath), and the manifest lists each.
   */
  more?: CriuStageResult[];
  /** A base made while CRIU built (prepareFreshImage): used when it is this image's, released either way. */
  prepared?: PreparedImage;
}

/**
 * A fresh image's base, made before its CRIU exists (the cold pipeline's side work): the
 * rootfs, the raw disk made from it, and a guestfish session whose appliance is booting. The
 * image stage takes it over when its suite and packages are the image's.
 */
export interface PreparedImage {
  suite: string;
  packages: string[];
  rootfs: { dir: string };
  /** Staging directory: the disk and the session's log until the stage moves them. */
  dir: string;
  disk: string;
  logFile: string;
  layout: ImageLayout;
  session: GuestfishSession;
  seconds: { rootfs: number; image: number };
}

/** The base of a fresh image of a static CRIU (its runtime packages are none) in `suite`. */
export async function prepareFreshImage(
  config: PipelineConfig,
  suite: string,
  log: (line: string) => void = () => undefined,
): Promise<PreparedImage> {
  requireGuestfish();
  requireHostTools(["sgdisk", "mkfs.ext4", "truncate"], [], "a fresh image");
  const cache = new ArtifactCache(config.cache_dir);
  let t = Date.now();
  const rootfs = await ensureGuestRootfs({
    cache,
    suite,
    runtimePackages: [],
    extraPackages: config.image.extra_packages,
    debian: config.debian,
    log,
  });
  const seconds = { rootfs: (Date.now() - t) / 1000, image: 0 };
  const dir = join(cache.root, "tmp", `image-base-${process.pid}-${Date.now()}`);
  await mkdir(dir, { recursive: true });
  try {
    t = Date.now();
    const disk = join(dir, "disk.img");
    const layout = await makeRawImage({
      rootfs: rootfs.dir,
      image: disk,
      extraMiB: config.image.free_mib,
      log,
    });
    seconds.image = (Date.now() - t) / 1000;
    const logFile = join(dir, "guestfish.log");
    log("guestfish: appliance starting, the injection follows once CRIU is built");
    const session = new GuestfishSession({
      image: disk,
      timeoutMs: preparedSessionMinutes(config) * 60_000,
      kvm: false,
      logFile,
    });
    return {
      suite,
      packages: guestPackages([], config.image.extra_packages),
      rootfs: { dir: rootfs.dir },
      dir,
      disk,
      logFile,
      layout,
      session,
      seconds,
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * An early session's deadline: its own, plus the longest it can wait for its script (the
 * kernel it is made beside, then CRIU's build).
 */
function preparedSessionMinutes(config: PipelineConfig): number {
  return (
    config.image.guestfish_timeout_minutes +
    config.kernel.build_timeout_minutes +
    config.criu.build_timeout_minutes
  );
}

/** Ends a prepared base's session and removes what the stage did not take. */
export async function releasePrepared(p: PreparedImage): Promise<void> {
  await p.session.abort();
  await rm(p.dir, { recursive: true, force: true });
}

/** A CRIU build's name in a multi-CRIU image: its version, and its patches if any. */
export function criuLabel(m: Pick<CriuStageResult["metadata"], "version" | "patches">): string {
  return [m.version, ...m.patches.map((p) => p.name)].join("+");
}

/** Where a CRIU build sits in a multi-CRIU image. */
export function criuGuestPath(m: Pick<CriuStageResult["metadata"], "version" | "patches">): string {
  return `${GUEST_PATHS.criuByVersion}/${criuLabel(m)}/criu`;
}

/** The image's cache key: base, CRIU, agent, runner. Pure. */
export function imageKey(parts: {
  base: unknown;
  criuSha: string;
  agentSha: string | null;
  runner: RunnerFile[];
  helpers: string[];
  freeMiB: number;
  moreCriu?: string[];
}): string {
  return cacheKey({
    ...parts,
    runner: parts.runner.map((f) => [f.path, f.sha256, f.mode]),
    contract: guestContractEnv(),
    recipe: IMAGE_RECIPE_VERSION,
  });
}

export async function runImageStage(config: PipelineConfig, inp: ImageStageInputs): Promise<ImageResult> {
  try {
    return await imageStage(config, inp);
  } finally {
    if (inp.prepared) await releasePrepared(inp.prepared);
  }
}

/** plan -> (build, unless cached) -> publish; the build is the phases in buildPhases. */
async function imageStage(config: PipelineConfig, inp: ImageStageInputs): Promise<ImageResult> {
  const plan = await planImage(config, inp);
  const art = await plan.cache.getOrBuild<ImageMetadata>("image", plan.key, (tmp) => buildImage(plan, tmp));
  return publishImage(plan, art);
}

/** One CRIU build of a multi-CRIU image, under its version. */
interface CriuByVersion {
  label: string;
  file: string;
  to: string;
  metadata: CriuStageResult["metadata"];
}

/** What an image is made of and its cache key, decided before anything is built. */
interface ImagePlan {
  config: PipelineConfig;
  inp: ImageStageInputs;
  log: PhaseLog;
  cache: ArtifactCache;
  criuMeta: CriuStageResult["metadata"];
  criuBin: string;
  runner: RunnerFile[];
  /** The user's Kata image (absolute path) and its sha256, for an existing base. */
  existing?: { path: string; sha256: string };
  suite: string;
  packages: string[];
  byVersion: CriuByVersion[];
  key: string;
  /** The base made beside the kernel, when it is this image's. */
  prepared?: PreparedImage;
}

async function planImage(config: PipelineConfig, inp: ImageStageInputs): Promise<ImagePlan> {
  const log = inp.log ?? (() => undefined);
  const criuMeta = inp.criu.metadata;
  const runner = await runnerFiles();
  const existing = config.image.base ? resolve(config.image.base) : undefined;
  if (existing) {
    checkBaseImage(existing);
    if (criuMeta.link !== "static")
      throw new UserError(
        `CRIU ${criuMeta.version} (${criuMeta.link}) needs its suite's shared libraries, which cannot be installed into an existing image`,
        "use the default static build (criu.link: static) for an existing Kata image",
      );
  }
  const suite = criuMeta.guest_suite;
  const packages = guestPackages(criuMeta.runtime_packages, config.image.extra_packages);
  const existingBase = existing ? { path: existing, sha256: await sha256File(existing) } : undefined;
  const baseId = existingBase
    ? { existing: existingBase.sha256 }
    : { fresh: suite, packages, mirror: config.debian.mirror, bootstrap: config.debian.bootstrap };
  const helperIds = [...(await helperSources()), ...(await helperHeaders())].map(
    (h) => `${h.name}:${h.sha256}`,
  );
  const more = inp.more ?? [];
  const byVersion = more.length
    ? [inp.criu, ...more].map((c) => ({
        label: criuLabel(c.metadata),
        file: join(c.dir, "criu"),
        to: criuGuestPath(c.metadata),
        metadata: c.metadata,
      }))
    : [];
  const key = imageKey({
    base: baseId,
    criuSha: criuMeta.criu.sha256,
    agentSha: inp.agent?.metadata.agent.sha256 ?? null,
    runner,
    helpers: helperIds,
    freeMiB: config.image.free_mib,
    ...(more.length ? { moreCriu: byVersion.map((c) => `${c.label}:${c.metadata.criu.sha256}`) } : {}),
  });
  return {
    config,
    inp,
    log,
    cache: new ArtifactCache(config.cache_dir),
    criuMeta,
    criuBin: join(inp.criu.dir, "criu"),
    runner,
    existing: existingBase,
    suite,
    packages,
    byVersion,
    key,
    prepared: existing ? undefined : preparedFor(inp.prepared, suite, packages, log),
  };
}

/** A base made beside the kernel is this image's when its suite and packages are. */
function preparedFor(
  prepared: PreparedImage | undefined,
  suite: string,
  packages: string[],
  log: PhaseLog,
): PreparedImage | undefined {
  if (!prepared) return undefined;
  if (prepared.suite === suite && prepared.packages.join(",") === packages.join(",")) return prepared;
  log(
    `the base made beside the kernel (${prepared.suite}: ${prepared.packages.join(", ")}) is not this image's: making it again`,
  );
  return undefined;
}

/** What the build phases make, in the cache's temporary directory. */
interface ImageBuild {
  readonly tmp: string;
  readonly disk: string;
  readonly gfLog: string;
  /** The fresh base's rootfs (made or taken from the prepared base). */
  rootfs?: string;
  base?: ImageMetadata["base"];
  layout: ImageLayout | null;
  inspection?: ImageInspection;
  versionInRootfs: string | null;
  straceBundle?: InjectionInputs["straceBundle"];
  ops?: GuestOp[];
  script?: ReturnType<typeof injectionScript>;
  /** What guestfish printed: the checksums it read back. */
  readBack?: string;
  injected?: ImageMetadata["injected"];
}

/** The build's phases: the base (fresh or the user's copy), then the injection and its proof. */
function buildPhases(plan: ImagePlan): Phase<ImageBuild>[] {
  const base = plan.existing
    ? [copyBasePhase(plan.existing), straceBundlePhase(plan)]
    : [rootfsPhase(plan), criuRunsPhase(plan), diskPhase(plan)];
  return [...base, scriptPhase(plan), injectPhase(plan), readBackPhase()];
}

async function buildImage(plan: ImagePlan, tmp: string): Promise<ImageMetadata> {
  requireGuestfish();
  const b: ImageBuild = {
    tmp,
    disk: join(tmp, "disk.img"),
    gfLog: join(tmp, "guestfish.log"),
    layout: null,
    versionInRootfs: null,
  };
  const phases = await runPhases(b, buildPhases(plan), { stage: "image", log: plan.log });
  await rm(join(tmp, "gf"), { recursive: true, force: true });
  if (b.straceBundle) await rm(b.straceBundle.dir, { recursive: true, force: true });
  return imageMetadata(plan, b, phases);
}

/** existing: a sparse copy of the user's image (never opened for writing), inspected. */
function copyBasePhase(existing: { path: string; sha256: string }): Phase<ImageBuild> {
  return {
    name: "copy",
    run: async (b, log) => {
      requireHostTools(["sfdisk", "blkid"], [], "an existing base image");
      log(`copying ${existing.path}`);
      const argv = ["cp", "--sparse=always", "--reflink=auto", existing.path, b.disk];
      await run(argv, { timeoutMs: 20 * 60_000 });
      const inspection = await namingUserFile(() => inspectImage(b.disk), b.disk, existing.path);
      b.inspection = inspection;
      b.base = {
        kind: "existing",
        path: existing.path,
        sha256: existing.sha256,
        label: inspection.label,
        root_fs: inspection.root.fsType,
        dax: await isDax(b.disk),
      };
    },
  };
}

/** existing: strace may be missing from a Kata image: bring one with its libraries (runs anywhere). */
function straceBundlePhase(plan: ImagePlan): Phase<ImageBuild> {
  return {
    name: "strace",
    run: async (b, log) => {
      const tools = await ensureGuestRootfs({
        cache: plan.cache,
        suite: plan.config.criu.static_build_suite,
        runtimePackages: [],
        debian: plan.config.debian,
        log,
      });
      b.straceBundle = await bundleStrace(tools.dir, join(b.tmp, "strace-bundle"));
    },
  };
}

/** fresh: the guest rootfs (cached), or the prepared base's. */
function rootfsPhase(plan: ImagePlan): Phase<ImageBuild> {
  return {
    name: "rootfs",
    run: async (b, log) => {
      requireHostTools(["sgdisk", "mkfs.ext4", "truncate"], [], "a fresh image");
      const rootfs = plan.prepared
        ? plan.prepared.rootfs
        : await ensureGuestRootfs({
            cache: plan.cache,
            suite: plan.suite,
            runtimePackages: plan.criuMeta.runtime_packages,
            extraPackages: plan.config.image.extra_packages,
            debian: plan.config.debian,
            log,
          });
      b.rootfs = rootfs.dir;
      b.base = {
        kind: "fresh",
        suite: plan.suite,
        packages: plan.packages,
        rootfs_key: relative(plan.cache.root, rootfs.dir).split("/")[1],
      };
    },
  };
}

/** fresh: proves each CRIU starts in this very userland before it goes into the image. */
function criuRunsPhase(plan: ImagePlan): Phase<ImageBuild> {
  return {
    name: "criu-runs",
    run: async (b, log) => {
      const rootfs = fromPhase(b.rootfs, "the rootfs");
      b.versionInRootfs = await criuVersionIn(rootfs, plan.criuBin);
      log(`criu --version in the ${plan.suite} rootfs: ${b.versionInRootfs.split("\n")[0]}`);
      for (const c of plan.inp.more ?? []) {
        if (!c.metadata.runs_in.includes(plan.suite))
          throw new UserError(
            `CRIU ${criuLabel(c.metadata)} (${c.metadata.link}, built in ${c.metadata.build_suite}) does not run in ${plan.suite}, the image's suite`,
            "use static builds (criu.link: static) for an image with two CRIUs",
          );
        const version = await criuVersionIn(rootfs, join(c.dir, "criu"));
        log(`criu ${criuLabel(c.metadata)} --version in the ${plan.suite} rootfs: ${version.split("\n")[0]}`);
      }
    },
  };
}

/** fresh: GPT + ext4 made from the rootfs (mkfs.ext4 -d), or the prepared base's disk. */
function diskPhase(plan: ImagePlan): Phase<ImageBuild> {
  return {
    name: "disk",
    run: async (b, log) => {
      if (plan.prepared) {
        // Same filesystem: the appliance keeps the disk it opened under its new name.
        await rename(plan.prepared.disk, b.disk);
        b.layout = plan.prepared.layout;
        return;
      }
      b.layout = await makeRawImage({
        rootfs: fromPhase(b.rootfs, "the rootfs"),
        image: b.disk,
        extraMiB: plan.config.image.free_mib,
        log,
      });
    },
  };
}

/** The guest helpers, the manifest and the one guestfish script that puts everything in place. */
function scriptPhase(plan: ImagePlan): Phase<ImageBuild> {
  return {
    name: "script",
    run: async (b, log) => {
      const helpers = await ensureGuestHelpers({
        cache: plan.cache,
        suite: plan.config.criu.static_build_suite,
        debian: plan.config.debian,
        log,
      });
      const base = fromPhase(b.base, "the image's base");
      const manifest = guestManifest(
        plan.key,
        plan.config,
        base,
        plan.criuMeta,
        plan.inp.agent,
        plan.runner,
        plan.byVersion.map((c) => c.metadata),
      );
      const manifestFile = join(b.tmp, "manifest.json");
      await writeFile(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
      b.ops = injectionOps({
        criu: plan.criuBin,
        criuByVersion: plan.byVersion.map((c) => ({ from: c.file, to: c.to })),
        runner: { dir: GUEST_RUNNER_DIR, files: plan.runner },
        helpers,
        agent: plan.inp.agent?.binary,
        straceBundle: b.straceBundle,
        manifest: manifestFile,
      });
      const scratch = join(b.tmp, "gf");
      await mkdir(scratch);
      let n = 0;
      const writeScratch = (content: string) => {
        const f = join(scratch, `write-${n++}`);
        writeFileSync(f, content);
        return f;
      };
      b.script = injectionScript(b.ops, writeScratch, rootDeviceOf(b));
    },
  };
}

const rootDeviceOf = (b: ImageBuild) => b.inspection?.rootDevice ?? "/dev/sda1";

/** One guestfish session: in the appliance started beside the kernel, or a new one. */
function injectPhase(plan: ImagePlan): Phase<ImageBuild> {
  return {
    name: "inject",
    run: async (b, log) => {
      const ops = fromPhase(b.ops, "the guestfish operations");
      const script = fromPhase(b.script, "the guestfish script");
      const prepared = plan.prepared;
      if (prepared) {
        log(`guestfish: ${ops.length} operations in the session started beside the kernel`);
        try {
          b.readBack = (await prepared.session.finish(script.body)).stdout;
        } finally {
          if (existsSync(prepared.logFile)) await rename(prepared.logFile, b.gfLog);
        }
        return;
      }
      log(`guestfish: ${ops.length} operations in one session`);
      const gf = await runGuestfish({
        image: b.disk,
        script: script.text,
        timeoutMs: plan.config.image.guestfish_timeout_minutes * 60_000,
        kvm: plan.inp.kvm ?? false,
        logFile: b.gfLog,
      });
      b.readBack = gf.stdout;
    },
  };
}

/** Every injected file, read back in the same session, must have the host's sha256. */
function readBackPhase(): Phase<ImageBuild> {
  return {
    name: "read-back",
    run: async (b) => {
      const sums = parseChecksums(fromPhase(b.readBack, "guestfish's output"));
      b.injected = await verifyReadBack(fromPhase(b.ops, "the guestfish operations"), sums, b.gfLog);
    },
  };
}

/**
 * The seconds metadata.json has always recorded (bench/image.ts reads them): rootfs, the disk
 * (for an existing base: its copy and the strace bundle), guestfish. A prepared base's were
 * measured when it was made. Pure.
 */
export function imageSeconds(
  phases: PhaseTiming[],
  prepared?: Pick<PreparedImage, "seconds">,
): ImageMetadata["seconds"] {
  const of = (...names: string[]) =>
    phases.filter((p) => names.includes(p.name)).reduce((s, p) => s + p.seconds, 0);
  return {
    rootfs: prepared ? prepared.seconds.rootfs : of("rootfs"),
    image: prepared ? prepared.seconds.image : of("disk", "copy", "strace"),
    inject: of("inject"),
  };
}

function imageMetadata(plan: ImagePlan, b: ImageBuild, phases: PhaseTiming[]): ImageMetadata {
  const { inp, criuMeta } = plan;
  return {
    name: plan.config.image.name,
    base: fromPhase(b.base, "the image's base"),
    root: { device: rootDeviceOf(b), partuuid: plan.existing ? null : ROOT_PARTUUID },
    criu: {
      dir: inp.criu.dir,
      version: criuMeta.version,
      sha256: criuMeta.criu.sha256,
      version_in_rootfs: b.versionInRootfs,
    },
    agent: inp.agent
      ? {
          dir: inp.agent.dir,
          sha256: inp.agent.metadata.agent.sha256,
          kata_version: inp.agent.metadata.kata_version,
          setsid_after: inp.agent.metadata.setsid_after,
        }
      : null,
    runner: plan.runner,
    layout: b.layout,
    injected: fromPhase(b.injected, "the read-back"),
    guestfish_launches: 1,
    seconds: imageSeconds(phases, plan.prepared),
    phases,
    bytes: statSync(b.disk).size,
    created: new Date().toISOString(),
  };
}

/** images/<name>.img and <name>.json point at the artifact; the manifest is read back from it. */
async function publishImage(
  plan: ImagePlan,
  art: { dir: string; cached: boolean; metadata: ImageMetadata },
): Promise<ImageResult> {
  const { cache, config } = plan;
  const image = join(art.dir, "disk.img");
  const link = join(cache.root, `${config.image.name}.img`);
  await pointAt(link, image);
  await pointAt(join(cache.root, `${config.image.name}.json`), join(art.dir, "metadata.json"));
  const manifest = JSON.parse(await readFile(join(art.dir, "manifest.json"), "utf8")) as GuestManifest;
  return { dir: art.dir, image, link, cached: art.cached, metadata: art.metadata, manifest };
}

/** Every uploaded file must read back from the image with the host's sha256. */
async function verifyReadBack(
  ops: GuestOp[],
  sums: Map<string, string>,
  logFile: string,
): Promise<{ path: string; sha256: string }[]> {
  const out: { path: string; sha256: string }[] = [];
  const bad: string[] = [];
  for (const o of ops) {
    if (o.op !== "upload") continue;
    const expected = await sha256File(o.from);
    const got = sums.get(o.to);
    if (got !== expected)
      bad.push(
        `${o.to}: expected ${expected.slice(0, 16)}..., read back ${got ? `${got.slice(0, 16)}...` : "nothing"}`,
      );
    out.push({ path: o.to, sha256: expected });
  }
  for (const o of ops) {
    if (o.op !== "write") continue;
    const expected = sha256(o.content);
    if (sums.get(o.to) !== expected) bad.push(`${o.to}: read back ${sums.get(o.to) ?? "nothing"}`);
    out.push({ path: o.to, sha256: expected });
  }
  if (bad.length)
    throw new UserError(
      `files read back from the image differ from what was injected:\n  ${bad.join("\n  ")}`,
      `read ${logFile}`,
    );
  return out;
}

export function guestManifest(
  key: string,
  config: PipelineConfig,
  base: ImageMetadata["base"],
  criu: CriuStageResult["metadata"],
  agent: AgentArtifact | undefined,
  runner: RunnerFile[],
  byVersion: CriuStageResult["metadata"][] = [],
): GuestManifest {
  const runnerSha = cacheKey(runner.map((f) => [f.path, f.sha256]));
  const components: Component[] = [
    {
      name: "criu",
      version: criu.version,
      path: GUEST_PATHS.criu,
      sha256: criu.criu.sha256,
      source: `${criu.provider} (${criu.link}${criu.patches.length ? `; ${criu.patches.map((p) => p.name).join(", ")}` : ""})`,
    },
    ...byVersion.map((m) => ({
      name: `criu ${criuLabel(m)}`,
      version: m.version,
      path: criuGuestPath(m),
      sha256: m.criu.sha256,
      source: `${m.provider} (${m.link}${m.patches.length ? `; ${m.patches.map((p) => p.name).join(", ")}` : ""})`,
    })),
    ...runner.map((f) => ({
      name: `runner/${f.path}`,
      version: runnerSha,
      path: `${GUEST_PATHS.runner}/${f.path}`,
      sha256: f.sha256,
      source: "cr-guest guest/",
    })),
  ];
  if (agent)
    components.push({
      name: "kata-agent",
      version: agent.metadata.kata_version ?? "prebuilt",
      path: GUEST_PATHS.agent,
      sha256: agent.metadata.agent.sha256,
      source: agent.metadata.from,
    });
  return {
    schema: 1,
    image_key: key,
    base: base.kind === "fresh" ? `fresh ${base.suite} minbase` : `existing ${base.path}`,
    suite: base.kind === "fresh" ? base.suite : null,
    criu: {
      version: criu.version,
      provider: criu.provider,
      link: criu.link,
      patches: criu.patches.map((p) => p.name),
      sha256: criu.criu.sha256,
    },
    agent: agent
      ? {
          kata_version: agent.metadata.kata_version,
          setsid: agent.metadata.setsid_after ?? "unknown (prebuilt)",
          sha256: agent.metadata.agent.sha256,
          source: agent.metadata.source,
        }
      : "no agent",
    runner: { files: runner.length, sha256: runnerSha },
    components,
  };
}

/** Replaces a symlink atomically (a new link renamed over the old one). */
async function pointAt(link: string, target: string): Promise<void> {
  const tmp = `${link}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  await symlink(relative(join(link, ".."), target), tmp);
  await rename(tmp, link);
}

/** Errors about the working copy of a user's image name the user's file, not the copy. */
export async function namingUserFile<T>(f: () => Promise<T>, copy: string, original: string): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof UserError)
      throw new UserError(
        err.message.split(copy).join(original),
        err.hint?.split(copy).join(original),
        err.exitCode,
      );
    throw err;
  }
}
