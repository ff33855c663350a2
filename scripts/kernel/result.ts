/**
 * What a kernel stage gives back (built or prebuilt), and the verification summary both
 * record: shared by kernel/stage.ts and kernel/prebuilt.ts without either importing the other.
 */
import { basename } from "node:path";
import { UserError } from "../lib/errors.js";
import type { fragmentSummary } from "./configure.js";
import type { KernelSource } from "./sources.js";
import type { TrapEntry } from "./expert-trap.js";
import type { KconfigTree } from "./kconfig.js";
import { formatVerifyReport, type VerifyReport } from "./verify.js";

export interface KernelMetadata {
  kind: "build" | "debian-cloud";
  version: string;
  release?: string;
  source: KernelSource["metadata"] | { provider: string; package: string; version: string; sha256: string };
  base?: string;
  fragments: ReturnType<typeof fragmentSummary>;
  config_sha256: string;
  toolchain?: string[];
  build_seconds?: number;
  ccache?: { hits: number; misses: number } | null;
  vmlinuz: { bytes: number; sha256: string };
  verify: {
    checked: number;
    ok: number;
    mismatches: { symbol: string; requested: string; final: string; why: string[]; allowed?: string }[];
    unknown: string[];
    whitelisted?: string[];
    passed: boolean;
  };
  boot_check?: { status: string; seconds: number; mismatches: unknown[]; release?: string } | null;
  created: string;
}

export interface KernelStageOptions {
  extraFragments?: string[];
  checkConfigOnly?: boolean;
  bootCheck?: boolean;
  /** The CRIU the kernel is for: its doctor explains what the EXPERT trap costs. */
  criuVersion?: string;
  /** Keep the final .config here (--config-out). */
  configOut?: string;
  log?: (line: string) => void;
  /**
   * Build in the fragment set's build dir instead of one of its own (an incremental make from
   * the set's kernel): for variants that differ from it in a few symbols (proofs).
   */
  incremental?: boolean;
  /**
   * Called with the final .config once it is configured and verified, before the compile:
   * what the side work needs to build CRIU for this kernel while it compiles.
   */
  onConfigured?: (config: Map<string, string>, version: string) => void;
}

export interface KernelStageResult {
  dir?: string;
  cached: boolean;
  metadata?: KernelMetadata;
  /** This run's verification; none for a kernel found in the cache (metadata.verify sums it up). */
  report?: VerifyReport;
  reportText: string;
  warnings: string[];
  /** What went right that a user wants to see (boot check results). */
  notes: string[];
  seconds: { [step: string]: number };
  /** The final .config (check-config runs). */
  finalConfig?: Map<string, string>;
  /** Every symbol the fragments asked for, with the value asked. */
  requested: Map<string, string>;
  /** Options EXPERT=y turned off (measured by a second configure), C/R-relevant first. */
  expertTrap?: TrapEntry[];
  /** The kernel's Kconfig, parsed (when this run configured). */
  kconfig?: KconfigTree;
}

/** What a guest run needs to know about a kernel. */
export interface KernelRef {
  dir: string;
  key: string;
  version: string;
  release?: string | null;
  config_sha256: string;
  /** Symbols the fragments asked for, with the value the guest should see. */
  requested: Map<string, string>;
}

/** The kernel of a stage result, as the guest run sees it. */
export function kernelRef(k: KernelStageResult): KernelRef {
  if (!k.dir || !k.metadata) throw new Error("the kernel stage produced no kernel");
  const requested = new Map(k.requested);
  // A drop accepted by the allowlist is what the guest will (rightly) see.
  for (const m of k.metadata.verify.mismatches) if (m.allowed) requested.set(m.symbol, m.final);
  return {
    dir: k.dir,
    key: basename(k.dir),
    version: k.metadata.version,
    release: k.metadata.release ?? null,
    config_sha256: k.metadata.config_sha256,
    requested,
  };
}

/** The value each requested symbol was asked to have. */
export function requestedValues(requested: { values: Map<string, { value: string }> }): Map<string, string> {
  return new Map([...requested.values].map(([sym, e]) => [sym, e.value]));
}

export function verifySummary(report: VerifyReport): KernelMetadata["verify"] {
  return {
    checked: report.checked,
    ok: report.ok.length,
    mismatches: report.mismatches.map((m) => ({
      symbol: m.symbol,
      requested: m.requested,
      final: m.final,
      why: m.why,
      allowed: m.allowed?.reason,
    })),
    unknown: report.unknown.map((u) => u.symbol),
    whitelisted: [...report.unknown, ...report.mismatches].filter((x) => x.whitelisted).map((x) => x.symbol),
    passed: report.passed,
  };
}

/** Verification failures stop the stage before any long build. */
export function failOnVerify(report: VerifyReport, label: string): void {
  if (report.passed) return;
  throw new UserError(
    formatVerifyReport(report, label),
    report.unknown.length
      ? "remove or correct the unknown symbols in the fragment files named above"
      : "add the unmet dependencies to a fragment, or accept the drop in kernel-fragments/allowlist.yaml",
    1,
  );
}
