/**
 * What the kernel's own Kconfig says of each symbol the kernel requirements map names: where it
 * is defined, its type, its prompt (and the condition that shows it: EXPERT), its dependencies
 * and what selects it. Written from a real kernel tree into a small committed fixture, so unit
 * tests check the map's symbols against the kernel without the tree:
 *
 *   node_modules/.bin/tsx scripts/kernel/requirement-symbols.ts <linux-6.12.107 source tree>
 *
 * writes test/fixtures/kconfig/kernel-requirements-symbols.json; a symbol the tree does not
 * define is an error (exit 2).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../lib/errors.js";
import { REPO_ROOT } from "../lib/paths.js";
import { exprToString, parseKernelKconfig, type KconfigTree } from "./kconfig.js";
import { allSymbols, loadKernelRequirements, type KernelRequirements } from "../data/kernel-requirements.js";

export const SYMBOLS_FIXTURE = join(
  REPO_ROOT,
  "test",
  "fixtures",
  "kconfig",
  "kernel-requirements-symbols.json",
);

export interface SymbolFacts {
  /** path:line of each definition in the tree. */
  defined: string[];
  type: string | null;
  /** The prompt's condition ("EXPERT"), "" for an unconditional prompt, null for none (selected only). */
  prompt_if: string | null;
  depends: string[];
  selected_by: string[];
}

export interface SymbolsFixture {
  kernel: string;
  arch: string;
  generated_by: string;
  symbols: Record<string, SymbolFacts>;
}

/** VERSION.PATCHLEVEL.SUBLEVEL of a kernel tree's Makefile. */
export function treeVersion(tree: string): string {
  const makefile = join(tree, "Makefile");
  if (!existsSync(makefile))
    throw new UserError(`${tree} is not a kernel source tree (no Makefile)`, "name an unpacked linux tree");
  const text = readFileSync(makefile, "utf8");
  const get = (k: string) => new RegExp(`^${k}\\s*=\\s*(\\S*)`, "m").exec(text)?.[1] ?? "0";
  return `${get("VERSION")}.${get("PATCHLEVEL")}.${get("SUBLEVEL")}`;
}

/** The facts of each named symbol in a parsed Kconfig tree; names it does not define are refused. */
export function symbolFacts(tree: KconfigTree, names: string[]): Record<string, SymbolFacts> {
  const missing = names.filter((n) => !tree.symbols.has(n));
  if (missing.length)
    throw new UserError(
      `the kernel's Kconfig defines no ${missing.map((m) => `CONFIG_${m}`).join(", ")}`,
      "fix the symbol in criu-builds/kernel-requirements.yaml",
    );
  return Object.fromEntries(
    names.map((n) => {
      const s = tree.symbols.get(n)!;
      const prompted = s.defs.find((d) => d.prompt);
      const facts: SymbolFacts = {
        defined: s.defs.map((d) => `${d.file}:${d.line}`),
        type: s.type ?? null,
        prompt_if: prompted ? (prompted.prompt!.cond ? exprToString(prompted.prompt!.cond) : "") : null,
        depends: [...new Set(s.defs.flatMap((d) => d.depends.map((e) => exprToString(e))))],
        selected_by: s.selectedBy.map((x) => (x.cond ? `${x.by} if ${exprToString(x.cond)}` : x.by)),
      };
      return [n, facts];
    }),
  );
}

/** The fixture for a map, read from a kernel tree (which must be the map's kernel_tree version). */
export function buildSymbolsFixture(srctree: string, map: KernelRequirements): SymbolsFixture {
  const version = treeVersion(srctree);
  if (version !== map.kernelTree)
    throw new UserError(
      `${srctree} is linux ${version}, the map's kernel_tree is ${map.kernelTree}`,
      `pass a linux ${map.kernelTree} tree`,
    );
  return {
    kernel: version,
    arch: "x86",
    generated_by: `node_modules/.bin/tsx scripts/kernel/requirement-symbols.ts <linux-${version} tree>`,
    symbols: symbolFacts(parseKernelKconfig(srctree, "x86"), allSymbols(map)),
  };
}

export function readSymbolsFixture(file = SYMBOLS_FIXTURE): SymbolsFixture {
  return JSON.parse(readFileSync(file, "utf8")) as SymbolsFixture;
}

if (process.argv[1] && /requirement-symbols\.[tj]s$/.test(process.argv[1])) {
  const srctree = process.argv[2];
  try {
    if (!srctree)
      throw new UserError("which kernel tree?", "usage: requirement-symbols.ts <linux source tree>");
    const fixture = buildSymbolsFixture(srctree, loadKernelRequirements());
    writeFileSync(SYMBOLS_FIXTURE, `${JSON.stringify(fixture, null, 2)}\n`);
    console.log(
      `${SYMBOLS_FIXTURE}: ${Object.keys(fixture.symbols).length} symbols of linux ${fixture.kernel}`,
    );
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    console.error(`error: ${e.message}${e.hint ? `\n  fix: ${e.hint}` : ""}`);
    process.exit(2);
  }
}
