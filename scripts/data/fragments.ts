/**
 * Kernel config fragments: `CONFIG_X=y  # why` lines (also `# CONFIG_X is not set`).
 * Parsing and merging are pure; the merged result is what the kernel is asked for and
 * what verification compares the final .config against.
 */
import { readFileSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import semver from "semver";
import { UserError } from "../lib/errors.js";
import { sha256 } from "../lib/hash.js";
import { FRAGMENTS_DIR } from "../lib/paths.js";

export interface FragmentEntry {
  symbol: string; // CONFIG_X
  value: string; // y, m, n, a number or a "string"
  reason: string;
  file: string;
  line: number;
  /** `# [kernel RANGE] reason`: the line applies only to kernels in this semver range. */
  kernels?: string;
}

export interface Fragment {
  name: string;
  file: string;
  sha256: string;
  entries: FragmentEntry[];
}

const ASSIGN = /^(CONFIG_[A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^\s#]+)\s*(?:#\s*(.*))?$/;
const NOT_SET = /^#\s*(CONFIG_[A-Za-z0-9_]+) is not set\s*(?:#\s*(.*))?$/;

export function parseFragment(text: string, file: string): Fragment {
  const entries: FragmentEntry[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const notSet = NOT_SET.exec(line);
    if (notSet) {
      entries.push({ symbol: notSet[1], value: "n", reason: notSet[2] ?? "", file, line: i + 1 });
      return;
    }
    if (line.startsWith("#")) return;
    const m = ASSIGN.exec(line);
    if (!m)
      throw new UserError(
        `bad fragment line at ${file}:${i + 1}: '${line}'`,
        'write CONFIG_NAME=value  # reason (value y, m, n, a number or a "string")',
      );
    entries.push({
      symbol: m[1],
      value: m[2],
      ...kernelRange((m[3] ?? "").trim(), file, i + 1),
      file,
      line: i + 1,
    });
  });
  return { name: basename(file).replace(/\.conf$/, ""), file, sha256: sha256(text), entries };
}

/** A reason may start with `[kernel >=6.17]`: the symbol exists, or matters, only there. */
function kernelRange(reason: string, file: string, line: number): { reason: string; kernels?: string } {
  const m = /^\[kernel ([^\]]+)\]\s*(.*)$/.exec(reason);
  if (!m) return { reason };
  if (!semver.validRange(m[1]))
    throw new UserError(
      `bad kernel range at ${file}:${line}: '${m[1]}'`,
      "write a semver range, e.g. # [kernel >=6.17] why",
    );
  return { reason: m[2], kernels: m[1] };
}

/** The fragments as they apply to one kernel version: lines for other ranges left out. */
export function forKernel(fragments: Fragment[], version: string): Fragment[] {
  return fragments.map((f) => ({
    ...f,
    entries: f.entries.filter((e) => !e.kernels || semver.satisfies(version, e.kernels)),
  }));
}

export function loadFragmentFile(file: string): Fragment {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new UserError(
      `cannot read fragment ${file}`,
      "check the path given to --fragment or kernel.extra_fragments",
    );
  }
  return parseFragment(text, file);
}

/** Every fragment of kernel-fragments/ by name (guest-base, checkpoint-restore, ...). */
export function loadFragmentDir(dir = FRAGMENTS_DIR): Map<string, Fragment> {
  return new Map(
    readdirSync(dir)
      .filter((n) => n.endsWith(".conf"))
      .sort()
      .map((n) => [n.replace(/\.conf$/, ""), loadFragmentFile(join(dir, n))]),
  );
}

export interface RequestedConfig {
  /** CONFIG_X -> value, later fragments overriding earlier ones. */
  values: Map<string, FragmentEntry>;
  /** Symbols set differently by two fragments: the later one wins, as in merge_config.sh. */
  overrides: { symbol: string; from: FragmentEntry; to: FragmentEntry }[];
}

export function mergeFragments(fragments: Fragment[]): RequestedConfig {
  const values = new Map<string, FragmentEntry>();
  const overrides: RequestedConfig["overrides"] = [];
  for (const fragment of fragments)
    for (const entry of fragment.entries) {
      const previous = values.get(entry.symbol);
      if (previous && previous.value !== entry.value)
        overrides.push({ symbol: entry.symbol, from: previous, to: entry });
      values.set(entry.symbol, entry);
    }
  return { values, overrides };
}

/** The merged fragment as the kernel's config tools read it (no reasons, one line a symbol). */
export function renderConfigFragment(requested: RequestedConfig): string {
  const lines = [...requested.values.values()].map((e) =>
    e.value === "n" ? `# ${e.symbol} is not set` : `${e.symbol}=${e.value}`,
  );
  return `${lines.join("\n")}\n`;
}

/** Parses a .config into CONFIG_X -> value ("n" for "is not set"). */
/** A kernel .config file, parsed; a file that cannot be read is named. */
export function loadDotConfig(file: string): Map<string, string> {
  return readDotConfig(file).values;
}

/** A .config's values and the kernel version its header names, from one read. */
export function readDotConfig(file: string): { values: Map<string, string>; version: string | undefined } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new UserError(`cannot read kernel config ${file}`, "pass a kernel .config file");
  }
  return { values: parseDotConfig(text), version: dotConfigVersion(text) };
}

/** The kernel version a .config was written for, from its "# Linux/x86_64 6.1.176 Kernel Configuration" header. */
export function dotConfigVersion(text: string): string | undefined {
  return /^# Linux\/\S+ (\S+) Kernel Configuration$/m.exec(text)?.[1];
}

export function parseDotConfig(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const notSet = NOT_SET.exec(line);
    if (notSet) values.set(notSet[1], "n");
    else {
      const eq = line.indexOf("=");
      if (line.startsWith("CONFIG_") && eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1));
    }
  }
  return values;
}
