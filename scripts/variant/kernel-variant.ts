/**
 * The one builder of kernel variants, shared by `explain --prove` (the default kernel with
 * symbols off) and `bisect config` (one config with part of another's values): a fragment on
 * top of a config's own, configured again and again (seconds each) until the request is one
 * Kconfig keeps, each time refined from what Kconfig did with the last; then built
 * incrementally in the fragment set's build directory and booted by the driver like any kernel.
 */
import type { DriveOptions } from "../driver.js";
import type { KconfigTree } from "../kernel/kconfig.js";
import type { PipelineConfig } from "../lib/config.js";
import { UserError } from "../lib/errors.js";
import { writeAtomic } from "../lib/fs-atomic.js";

/** One line of a variant's fragment, with why it is there. */
export interface VariantLine {
  symbol: string;
  /** y, m, n, a number or a "string", as in a .config. */
  value: string;
  why: string;
}

export function renderVariant(lines: VariantLine[], title: string): string {
  const body = lines.map((l) =>
    l.value === "n"
      ? `# CONFIG_${l.symbol} is not set  # ${l.why}`
      : `CONFIG_${l.symbol}=${l.value}  # ${l.why}`,
  );
  return [`# ${title}`, ...body, ""].join("\n");
}

/** What one configure of the variant told. */
export interface ConfigureFeedback {
  /** Requested symbols whose final value differs (Kconfig overrode the request). */
  mismatches: { symbol: string; requested: string; final: string }[];
  /** Options EXPERT=y turned off that are on without it (the EXPERT trap). */
  trap: string[];
  final: Map<string, string>;
}

export interface ConfigureOptions {
  /** The fragment written (the variant's request). */
  file: string;
  title: string;
  /** More fragments before the variant's (a bisect end's own). */
  fragments?: string[];
  lines: VariantLine[];
  /** The next request from this one and what Kconfig did with it; the same request: settled. */
  refine: (lines: VariantLine[], fb: ConfigureFeedback) => VariantLine[];
  /** Configures before the request must have settled. */
  max?: number;
}

/** The kernel stage's options of a variant: its fragment last, built in the set's build dir. */
export function variantKernel(file: string, fragments: string[] = []): NonNullable<DriveOptions["kernel"]> {
  return { extraFragments: [...fragments, file], incremental: true };
}

/** Configures the variant until its request is stable; returns it, the final .config and Kconfig. */
export async function configureVariant(
  config: PipelineConfig,
  o: ConfigureOptions,
): Promise<{ lines: VariantLine[]; final: Map<string, string>; kconfig?: KconfigTree }> {
  const { drive } = await import("../driver.js");
  let current = o.lines;
  const max = o.max ?? 4;
  for (let i = 0; i < max; i++) {
    await writeAtomic(o.file, renderVariant(current, o.title));
    const out = await drive(config, ["kernel"], {
      kernel: { extraFragments: [...(o.fragments ?? []), o.file], checkConfigOnly: true },
    });
    const stage = out.kernel!.value.stage;
    const final = stage.finalConfig!;
    const fb: ConfigureFeedback = {
      mismatches: (stage.report?.mismatches ?? []).map((m) => ({
        symbol: m.symbol.replace(/^CONFIG_/, ""),
        requested: m.requested,
        final: m.final,
      })),
      trap: (stage.expertTrap ?? []).map((t) => t.symbol.replace(/^CONFIG_/, "")),
      final,
    };
    const next = o.refine(current, fb);
    if (JSON.stringify(next) === JSON.stringify(current))
      return { lines: current, final, kconfig: stage.kconfig };
    current = next;
  }
  throw new UserError(
    `the kernel variant '${o.title}' did not settle in ${max} configures: ${o.file}`,
    "change fewer symbols at once",
  );
}
