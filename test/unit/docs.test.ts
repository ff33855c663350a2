/**
 * The docs describe everything a user can name, as tuxmake's test_doc does: every command,
 * flag, scenario, fragment set, CRIU and kernel provider and config key has a DESCRIBED entry
 * somewhere in docs/, not a bare mention. An entry is a line that starts with the name in
 * backticks (alone or in a list of names), followed by at least MIN_WORDS words of description:
 *   - a bullet or a line:  "- `name`: what it is ..."  (continuation lines of the bullet count)
 *   - a table row:         "| `name` | what it is ... |"  (the cell right after the name)
 *   - a heading:           "### `name`" and the paragraph under it
 * A name in the middle of a sentence, a bare bullet or a row with an empty description is not
 * an entry. Also: the README's size and exit codes, links, and no words about "this machine".
 */
import { readFileSync, readdirSync, existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { FLAGS } from "../../scripts/cli-flags.js";
import { COMMANDS, EXIT_CODES } from "../../scripts/cli.js";
import { loadCriuCatalog } from "../../scripts/data/criu-catalog.js";
import { loadScenarios } from "../../scripts/data/scenarios.js";
import { CONFIG_SCHEMA, CRIU_PROVIDERS, KERNEL_PROVIDERS, loadConfig } from "../../scripts/lib/config.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { keysOf, schemaAt } from "../../scripts/lib/yaml-schema.js";
import type { z } from "zod";

const DOCS = join(REPO_ROOT, "docs");
const README = join(REPO_ROOT, "README.md");
export const MIN_WORDS = 4;

function markdownFiles(dir = DOCS): string[] {
  return readdirSync(dir)
    .map((n) => join(dir, n))
    .flatMap((p) => (statSync(p).isDirectory() ? markdownFiles(p) : p.endsWith(".md") ? [p] : []));
}

const words = (text: string) => text.split(/\s+/).filter((w) => /[A-Za-z]/.test(w)).length;

/** The name a code span stands for: its first word (`--criu V` is --criu, `report merge` report). */
const termOf = (span: string) => span.trim().split(/\s+/)[0];

/** A leading list of code spans (`a`, `b` / `c` and `d`) and the text after it, or null. */
function leadingSpans(text: string): { terms: string[]; rest: string } | null {
  const m = /^((?:`[^`]+`)(?:\s*(?:,|\/|\band\b|\bor\b)\s*`[^`]+`)*)(.*)$/s.exec(text);
  if (!m) return null;
  return { terms: [...m[1].matchAll(/`([^`]+)`/g)].map((s) => termOf(s[1])), rest: m[2] };
}

function tableCells(line: string): string[] {
  return line
    .trim()
    .replace(/^\||\|$/g, "")
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());
}

const BULLET = /^\s*(?:[-*+]|\d+\.)\s+/;
const HEADING = /^#{1,6}\s+/;

/** The names that have a described entry in this Markdown text. */
export function describedTerms(markdown: string): Set<string> {
  const lines = markdown.split("\n");
  const found = new Set<string>();
  let fence = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^\s*```/.test(line)) fence = !fence;
    if (fence || /^\s*```/.test(line)) continue;
    if (/^\s*\|/.test(line)) {
      const [first, second = ""] = tableCells(line);
      const lead = leadingSpans(first);
      if (lead && !lead.rest.trim() && words(second) >= MIN_WORDS) lead.terms.forEach((t) => found.add(t));
      continue;
    }
    if (HEADING.test(line)) {
      const lead = leadingSpans(line.replace(HEADING, "").trim());
      if (!lead || lead.rest.trim()) continue;
      let j = i + 1;
      while (j < lines.length && !lines[j].trim()) j++;
      const para: string[] = [];
      for (; j < lines.length && lines[j].trim() && !/^\s*(#|```|\|)/.test(lines[j]); j++)
        para.push(lines[j]);
      if (words(para.join(" ")) >= MIN_WORDS) lead.terms.forEach((t) => found.add(t));
      continue;
    }
    const lead = leadingSpans(line.replace(BULLET, "").trimStart());
    if (!lead) continue;
    // A bullet's description may wrap onto its indented continuation lines.
    let description = lead.rest;
    for (let j = i + 1; BULLET.test(line) && j < lines.length; j++) {
      const next = lines[j];
      if (!next.trim() || BULLET.test(next) || !/^\s+/.test(next)) break;
      description += ` ${next}`;
    }
    if (words(description.replace(/^[\s:—–(-]+/, "")) >= MIN_WORDS) lead.terms.forEach((t) => found.add(t));
  }
  return found;
}

/** The leaf keys of the config schema as dotted paths (a record, fragment_sets, is one leaf). */
export function configKeys(schema: z.ZodType = CONFIG_SCHEMA, prefix: string[] = []): string[] {
  const keys = keysOf(schemaAt(schema, prefix));
  if (!keys.length) return [prefix.join(".")];
  return keys.flatMap((k) => configKeys(schema, [...prefix, k]));
}

const docsText = () => markdownFiles().map((f) => readFileSync(f, "utf8"));
const described = () => {
  const all = new Set<string>();
  for (const text of docsText()) for (const t of describedTerms(text)) all.add(t);
  return all;
};
const missing = (names: string[], have = described()) => names.filter((n) => !have.has(n));

describe("the entry matcher", () => {
  it("takes bullets, table rows and headings with a description", () => {
    const md = [
      "- `alpha`: what alpha does to the widgets",
      "| `beta`, `gamma` | the pair of keys that matter here and there |",
      "### `delta`",
      "",
      "Delta frobs the widgets of a run.",
      "- `epsilon`: a description that",
      "  wraps onto the next line",
      "`--zeta N` (`-z`) sets the frob level of widgets",
    ].join("\n");
    expect([...describedTerms(md)].sort()).toEqual(["--zeta", "alpha", "beta", "delta", "epsilon", "gamma"]);
  });

  it("refuses a bare mention, a bare bullet, a short or empty description, a heading without prose", () => {
    const md = [
      "The `alpha` key sets the thing we want for widgets.",
      "- `beta`",
      "- `gamma`: a thing",
      "| `delta` | |",
      "| `epsilon` | x | a long description in the third cell only |",
      "| `zeta` and more words | a description that is long enough |",
      "### `eta`",
      "",
      "```",
      "eta frobs the widgets of a run",
      "```",
      "```",
      "- `theta`: inside a code block it is no entry at all",
      "```",
    ].join("\n");
    expect([...describedTerms(md)]).toEqual([]);
  });
});

describe("the docs describe every name a user can give", () => {
  it("every command", () => {
    expect(missing(Object.keys(COMMANDS))).toEqual([]);
  });

  it("every flag", () => {
    expect(missing(Object.keys(FLAGS).map((f) => `--${f}`))).toEqual([]);
  });

  it("every scenario of scenarios.yaml", () => {
    const names = loadScenarios(join(REPO_ROOT, "scenarios.yaml")).map((s) => s.name);
    expect(names.length).toBeGreaterThan(5);
    expect(missing(names)).toEqual([]);
  });

  it("every fragment set of pipeline.yaml", () => {
    const sets = Object.keys(loadConfig().fragment_sets);
    expect(sets).toContain("default");
    expect(missing(sets)).toEqual([]);
  });

  it("every CRIU provider (config schema and catalog) and every kernel provider", () => {
    const criu = [...new Set([...CRIU_PROVIDERS, ...loadCriuCatalog().providerOrder])];
    expect(missing([...criu, ...KERNEL_PROVIDERS])).toEqual([]);
  });

  it("every config key of the schema, as a dotted path", () => {
    const keys = configKeys();
    // The walk reaches nested objects and stops at records and scalars.
    expect(keys).toEqual(
      expect.arrayContaining(["cache_dir", "kernel.version", "criu.git.url", "fragment_sets"]),
    );
    expect(keys.length).toBeGreaterThan(50);
    expect(missing(keys)).toEqual([]);
  });

  it("the planned key debian.accept_expired_release is described even before the schema has it", () => {
    expect(described().has("debian.accept_expired_release")).toBe(true);
  });
});

describe("the README and the docs as documents", () => {
  const readme = readFileSync(README, "utf8");

  it("the README stays short: at most 150 lines", () => {
    expect(readme.trimEnd().split("\n").length).toBeLessThanOrEqual(150);
  });

  it("the README lists every exit code of the CLI", () => {
    for (const [code] of EXIT_CODES) expect(readme).toMatch(new RegExp(`^\\| ${code} \\|`, "m"));
  });

  it("the README's map links every page of docs/", () => {
    for (const f of markdownFiles()) expect(readme).toContain(`](docs/${f.slice(DOCS.length + 1)})`);
  });

  it("no page speaks of the machine it was written on", () => {
    for (const f of [README, ...markdownFiles()]) {
      const hits = readFileSync(f, "utf8")
        .split("\n")
        .filter((l) => /\bhere\b|this machine|this session/i.test(l));
      expect(hits, f).toEqual([]);
    }
  });

  it("every relative link resolves, anchors included", () => {
    const slug = (h: string) =>
      h
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, "")
        .replace(/ /g, "-");
    const anchors = (file: string) =>
      new Set(
        readFileSync(file, "utf8")
          .split("\n")
          .filter((l) => HEADING.test(l))
          .map((l) => slug(l.replace(HEADING, "").trim())),
      );
    const broken: string[] = [];
    for (const f of [README, ...markdownFiles()])
      for (const m of readFileSync(f, "utf8").matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(m[1])) continue;
        const [path, anchor] = m[1].split("#");
        const target = path ? resolve(dirname(f), path) : f;
        if (!existsSync(target)) broken.push(`${f}: ${m[1]}`);
        else if (anchor && target.endsWith(".md") && !anchors(target).has(anchor))
          broken.push(`${f}: ${m[1]}`);
      }
    expect(broken).toEqual([]);
  });
});
