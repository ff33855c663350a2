/**
 * The stages composed, each cached: kernel -> CRIU -> agent -> image. The smoke command and
 * every matrix cell go through here, so a cell and a single run build exactly the same things.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { PipelineConfig } from "./lib/config.js";
import { UserError } from "./lib/errors.js";
import { runSteps } from "./lib/progress.js";
import { parseDotConfig } from "./kernel/fragments.js";
import { runKernelStage, type KernelStageResult } from "./kernel/stage.js";
import { kernelRefFrom, type KernelRef } from "./boot/stage.js";
import { runCriuStage, type CriuStageResult } from "./criu/stage.js";
import { runAgentStage, type AgentArtifact } from "./agent/stage.js";
import { runImageStage, type ImageResult } from "./image/stage.js";
import type { Finding } from "./criu/doctor.js";

export async function readKernelConfig(file: string): Promise<Map<string, string>> {
  try {
    return parseDotConfig(await readFile(file, "utf8"));
  } catch {
    throw new UserError(`cannot read kernel config ${file}`, "pass a kernel .config file");
  }
}

export interface PreparedKernel {
  stage: KernelStageResult;
  ref: KernelRef;
  config: Map<string, string>;
}

/** The guest kernel (built or cached) with what the guest run needs to know about it. */
export async function prepareKernel(config: PipelineConfig, extraFragments: string[] = []): Promise<PreparedKernel> {
  const stage = await runKernelStage(config, { extraFragments, bootCheck: false });
  const ref = kernelRefFrom(config, stage, extraFragments);
  return { stage, ref, config: await readKernelConfig(join(ref.dir, "config")) };
}

export interface PreparedImage extends ImageResult {
  criu: CriuStageResult;
  agent?: AgentArtifact;
  /** What the CRIU provider chain said on its way (404s, skipped providers). */
  notes: string[];
  /** The compatibility check against the kernel it will boot: a prediction. */
  findings: Finding[];
}

/**
 * CRIU, agent and image for `config`. With `kernel`, the compatibility check runs against
 * that kernel's config; `force` builds even when it predicts a failure (the matrix wants to
 * observe that failure, not refuse it).
 */
export async function prepareImage(config: PipelineConfig, opts: { force?: boolean; kernel?: PreparedKernel; strict?: boolean } = {}): Promise<PreparedImage> {
  const criu = await runCriuStage(config, { force: opts.force, strict: opts.strict, kernelConfig: opts.kernel?.config, kernelVersion: opts.kernel?.ref.version });
  const state: { agent?: AgentArtifact; image?: ImageResult } = {};
  await runSteps(state, [
    { title: "kata-agent", skip: () => (config.agent.binary || config.agent.kata_src ? false : "no agent configured"), run: async (s, log) => void (s.agent = await runAgentStage(config, log)) },
    { title: `Image ${config.image.name}`, run: async (s, log) => void (s.image = await runImageStage(config, { criu, agent: s.agent, log })) },
  ]);
  return { ...state.image!, criu, agent: state.agent, notes: criu.attempts, findings: criu.findings };
}
