/**
 * What a kernel stage gives back (built or prebuilt), and the verification summary both
 * record: shared by kernel/stage.ts and kernel/prebuilt.ts without either importing the other.
 */
import { existsSync } from "node:fs";
import { UserError } from "../lib/errors.js";
import { loadYamlFile } from "../lib/yaml-file.js";
import type { fragmentSummary } from "./configure.js";
import type { KernelSource } from "./sources.js";
import { formatVerifyReport, type AllowEntry, type VerifyReport } from "./verify.js";

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
  verify: { checked: number; ok: number; mismatches: { symbol: string; requested: string; final: string; why: string[]; allowed?: string }[]; unknown: string[]; passed: boolean };
  boot_check?: { status: string; seconds: number; mismatches: unknown[]; release?: string } | null;
  created: string;
}

export interface KernelStageOptions {
  extraFragments?: string[];
  checkConfigOnly?: boolean;
  bootCheck?: boolean;
  log?: (line: string) => void;
}

export interface KernelStageResult {
  dir?: string;
  cached: boolean;
  metadata?: KernelMetadata;
  report: VerifyReport;
  reportText: string;
  warnings: string[];
  /** What went right that a user wants to see (boot check results). */
  notes: string[];
  seconds: { [step: string]: number };
  /** The final .config (check-config runs). */
  finalConfig?: Map<string, string>;
}

export function loadAllowlist(file: string): AllowEntry[] {
  if (!file || !existsSync(file)) return [];
  const doc = loadYamlFile(file);
  const list = (doc.value as { accepted?: AllowEntry[] } | null)?.accepted ?? [];
  list.forEach((a, i) => {
    if (!a?.symbol || !a.kernels || !a.reason)
      throw new UserError(`${file}:${doc.lineOf(["accepted", i]) ?? "?"}: an allowlist entry needs symbol, kernels and reason`, "see the comment at the top of the file");
  });
  return list;
}

export function verifySummary(report: VerifyReport): KernelMetadata["verify"] {
  return {
    checked: report.checked,
    ok: report.ok.length,
    mismatches: report.mismatches.map((m) => ({ symbol: m.symbol, requested: m.requested, final: m.final, why: m.why, allowed: m.allowed?.reason })),
    unknown: report.unknown.map((u) => u.symbol),
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

