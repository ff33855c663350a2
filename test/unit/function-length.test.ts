/**
 * No function in scripts/ runs over MAX_LINES lines unless a comment right before it says why
 * (it contains LONG_MARKER, e.g. "// long because: one table of every flag"). A long function
 * usually runs several phases inline; scripts/lib/phases.ts is the way to name them instead.
 * Functions, methods, accessors, constructors, function expressions and arrow functions all
 * count, each over its whole span (a function's nested closures are part of it).
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/paths.js";

const MAX_LINES = 80;
const LONG_MARKER = /long because/i;

/** Paths allowed long functions without a marker: none (a long function says why, LONG_MARKER). */
const ALLOWED_FOR_NOW: { path: string; owner: string }[] = [];

export interface LongFunction {
  file: string;
  name: string;
  line: number;
  lines: number;
}

function nameOf(node: ts.Node, sf: ts.SourceFile): string {
  const named = node as ts.Node & { name?: ts.Node };
  if (named.name) return named.name.getText(sf);
  if (ts.isConstructorDeclaration(node)) return "constructor";
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent)) return parent.name.getText(sf);
  if (parent && ts.isPropertyAssignment(parent)) return parent.name.getText(sf);
  if (parent && ts.isCallExpression(parent))
    return `callback of ${parent.expression.getText(sf).slice(0, 40)}`;
  return "(anonymous)";
}

/** A comment containing LONG_MARKER just before the function or the statement that holds it. */
function markedLong(node: ts.Node, text: string): boolean {
  for (let n: ts.Node | undefined = node; n && !ts.isSourceFile(n); n = n.parent) {
    const comments = ts.getLeadingCommentRanges(text, n.getFullStart()) ?? [];
    if (comments.some((c) => LONG_MARKER.test(text.slice(c.pos, c.end)))) return true;
    if (ts.isStatement(n) || ts.isClassElement(n) || ts.isObjectLiteralElement(n)) break;
  }
  return false;
}

/** Every function in `text` longer than `max` lines that no comment explains. Pure. */
export function longFunctions(file: string, text: string, max = MAX_LINES): LongFunction[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: LongFunction[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = end - start + 1;
      if (lines > max && !markedLong(node, text))
        out.push({ file, name: nameOf(node, sf), line: start + 1, lines });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const allowed = (file: string) => ALLOWED_FOR_NOW.find((a) => file.startsWith(a.path));

describe("function length", () => {
  it("finds a long function, a long arrow and a long method, and accepts a marked one", () => {
    const body = (n: number) => Array.from({ length: n }, (_, i) => `  const x${i} = ${i};`).join("\n");
    const src = [
      `export function short() {\n${body(5)}\n}`,
      `export async function tooLong() {\n${body(90)}\n}`,
      `const arrow = async () => {\n${body(90)}\n};`,
      `class C {\n  method() {\n${body(90)}\n  }\n}`,
      `// long because: one table, read top to bottom\nexport function table() {\n${body(90)}\n}`,
      `run(async (tmp) => {\n${body(90)}\n});`,
    ].join("\n");
    const found = longFunctions("x.ts", src).map((f) => `${f.name}:${f.lines}`);
    expect(found).toEqual(["tooLong:92", "arrow:92", "method:92", "callback of run:92"]);
  });

  it("no function in scripts/ runs over 80 lines without a comment saying why", () => {
    const files = tsFiles(join(REPO_ROOT, "scripts")).map((f) => relative(REPO_ROOT, f));
    expect(files.length).toBeGreaterThan(50);
    const long = files
      .filter((f) => !allowed(f))
      .flatMap((f) => longFunctions(f, readFileSync(join(REPO_ROOT, f), "utf8")))
      .map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`);
    expect(long, "split these into named steps (scripts/lib/phases.ts), or say why above them").toEqual([]);
  });

  it("every allow-list entry with files still has a long function (else drop it)", () => {
    const files = tsFiles(join(REPO_ROOT, "scripts")).map((f) => relative(REPO_ROOT, f));
    const stale = ALLOWED_FOR_NOW.filter((a) => files.some((f) => f.startsWith(a.path))).filter(
      (a) =>
        !files
          .filter((f) => f.startsWith(a.path))
          .some((f) => longFunctions(f, readFileSync(join(REPO_ROOT, f), "utf8")).length),
    );
    expect(stale.map((a) => `${a.path} (${a.owner})`)).toEqual([]);
  });
});
