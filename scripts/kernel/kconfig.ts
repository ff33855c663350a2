/**
 * A Kconfig reader, enough to explain a final .config: where each symbol is defined, its
 * type, prompts, `depends on` (including enclosing if/menu/choice), selects and defaults.
 * merge_config.sh warnings are not a reliable check, so we answer "why did CONFIG_X not
 * land" from the kernel's own Kconfig and the values in the final .config.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { UserError } from "../lib/errors.js";

export type Expr =
  | { kind: "sym"; name: string }
  | { kind: "const"; value: string }
  | { kind: "not"; e: Expr }
  | { kind: "and" | "or"; l: Expr; r: Expr }
  | { kind: "cmp"; op: string; l: Expr; r: Expr }
  | { kind: "macro"; text: string };

export interface SymbolDef {
  file: string;
  line: number;
  type?: string;
  prompt?: { text: string; cond?: Expr };
  /** Own `depends on` plus those of enclosing if/menu/choice blocks. */
  depends: Expr[];
  defaults: { value: Expr; cond?: Expr }[];
  choice?: number;
}

export interface KSymbol {
  name: string;
  type?: string;
  defs: SymbolDef[];
  selectedBy: { by: string; cond?: Expr }[];
  impliedBy: { by: string; cond?: Expr }[];
}

export interface KconfigTree {
  symbols: Map<string, KSymbol>;
  files: number;
}

// ---------------------------------------------------------------- expressions

type Token = { t: "id" | "str" | "op" | "macro"; v: string };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === "$" && text[i + 1] === "(") {
      let depth = 0;
      let j = i + 1;
      for (; j < text.length; j++) {
        if (text[j] === "(") depth++;
        else if (text[j] === ")" && --depth === 0) break;
      }
      tokens.push({ t: "macro", v: text.slice(i, j + 1) });
      i = j + 1;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === "\\" ? 2 : 1;
      tokens.push({ t: "str", v: text.slice(i + 1, j) });
      i = j + 1;
    } else {
      const two = text.slice(i, i + 2);
      if (["&&", "||", "!=", "<=", ">="].includes(two)) {
        tokens.push({ t: "op", v: two });
        i += 2;
      } else if ("!()=<>".includes(c)) {
        tokens.push({ t: "op", v: c });
        i++;
      } else {
        const m = /^[A-Za-z0-9_.\-+x]+/.exec(text.slice(i));
        if (!m) {
          i++; // stray character: ignore rather than fail on exotic syntax
          continue;
        }
        tokens.push({ t: "id", v: m[0] });
        i += m[0].length;
      }
    }
  }
  return tokens;
}

export function parseExpr(text: string): Expr {
  const tokens = tokenize(text);
  let pos = 0;
  const peek = () => tokens[pos];
  const isOp = (v: string) => peek()?.t === "op" && peek()!.v === v;
  const term = (): Expr => {
    const tok = tokens[pos++];
    if (!tok) return { kind: "const", value: "n" };
    if (tok.t === "macro") return { kind: "macro", text: tok.v };
    if (tok.t === "str") return { kind: "const", value: tok.v };
    if (tok.t === "id")
      return /^(y|m|n|-?\d+|0x[0-9a-fA-F]+)$/.test(tok.v)
        ? { kind: "const", value: tok.v }
        : { kind: "sym", name: tok.v };
    return { kind: "const", value: "n" };
  };
  const primary = (): Expr => {
    if (isOp("(")) {
      pos++;
      const e = or();
      if (isOp(")")) pos++;
      return e;
    }
    const l = term();
    const op = peek();
    if (op?.t === "op" && ["=", "!=", "<", "<=", ">", ">="].includes(op.v)) {
      pos++;
      return { kind: "cmp", op: op.v, l, r: term() };
    }
    return l;
  };
  const not = (): Expr => {
    if (isOp("!")) {
      pos++;
      return { kind: "not", e: not() };
    }
    return primary();
  };
  const and = (): Expr => {
    let l = not();
    while (isOp("&&")) {
      pos++;
      l = { kind: "and", l, r: not() };
    }
    return l;
  };
  const or = (): Expr => {
    let l = and();
    while (isOp("||")) {
      pos++;
      l = { kind: "or", l, r: and() };
    }
    return l;
  };
  return or();
}

export function exprToString(e: Expr, parent = 0): string {
  const wrap = (s: string, prec: number) => (prec < parent ? `(${s})` : s);
  switch (e.kind) {
    case "sym":
      return e.name;
    case "const":
      return /^[A-Za-z0-9_-]+$/.test(e.value) ? e.value : `"${e.value}"`;
    case "macro":
      return e.text;
    case "not":
      return `!${exprToString(e.e, 3)}`;
    case "cmp":
      return `${exprToString(e.l, 4)}${e.op}${exprToString(e.r, 4)}`;
    case "and":
      return wrap(`${exprToString(e.l, 2)} && ${exprToString(e.r, 2)}`, 2);
    case "or":
      return wrap(`${exprToString(e.l, 1)} || ${exprToString(e.r, 1)}`, 1);
  }
}

export function exprSymbols(e: Expr, out = new Set<string>()): Set<string> {
  if (e.kind === "sym") out.add(e.name);
  else if (e.kind === "not") exprSymbols(e.e, out);
  else if (e.kind === "and" || e.kind === "or" || e.kind === "cmp") {
    exprSymbols(e.l, out);
    exprSymbols(e.r, out);
  }
  return out;
}

/** The top-level && terms of an expression. */
export function conjuncts(e: Expr): Expr[] {
  return e.kind === "and" ? [...conjuncts(e.l), ...conjuncts(e.r)] : [e];
}

const TRI: Record<string, number> = { n: 0, m: 1, y: 2 };

/** The value of a symbol in a .config: missing bool/tristate symbols are n. */
export function symbolValue(name: string, config: Map<string, string>): string {
  return config.get(`CONFIG_${name}`) ?? "n";
}

/**
 * Tristate evaluation (n=0, m=1, y=2); null where a $(macro) makes it unknowable here.
 * `m` only counts as m when MODULES=y, as in Kconfig.
 */
export function evalExpr(e: Expr, config: Map<string, string>): number | null {
  const scalar = (x: Expr): string | null =>
    x.kind === "sym" ? symbolValue(x.name, config) : x.kind === "const" ? x.value : null;
  switch (e.kind) {
    case "macro":
      return null;
    case "const":
    case "sym": {
      const v = scalar(e)!;
      const t = TRI[v] ?? 0;
      return t === 1 && symbolValue("MODULES", config) !== "y" ? 0 : t;
    }
    case "not": {
      const v = evalExpr(e.e, config);
      return v === null ? null : 2 - v;
    }
    case "and": {
      const l = evalExpr(e.l, config);
      const r = evalExpr(e.r, config);
      if (l === 0 || r === 0) return 0;
      return l === null || r === null ? null : Math.min(l, r);
    }
    case "or": {
      const l = evalExpr(e.l, config);
      const r = evalExpr(e.r, config);
      if (l === 2 || r === 2) return 2;
      return l === null || r === null ? null : Math.max(l, r);
    }
    case "cmp": {
      const l = scalar(e.l);
      const r = scalar(e.r);
      if (l === null || r === null) return null;
      const num = (s: string) => (/^0x/i.test(s) ? parseInt(s, 16) : Number(s));
      const numeric = !isNaN(num(l)) && !isNaN(num(r)) && l !== "" && r !== "";
      const cmp = numeric ? num(l) - num(r) : l < r ? -1 : l > r ? 1 : 0;
      const ok = {
        "=": cmp === 0,
        "!=": cmp !== 0,
        "<": cmp < 0,
        "<=": cmp <= 0,
        ">": cmp > 0,
        ">=": cmp >= 0,
      }[e.op];
      return ok ? 2 : 0;
    }
  }
}

export function triName(v: number | null): string {
  return v === null ? "?" : ["n", "m", "y"][v];
}

// ---------------------------------------------------------------- parsing

const ENTRY =
  /^(config|menuconfig|choice|endchoice|comment|menu|endmenu|if|endif|source|rsource|osource|orsource|mainmenu)(?:\s+(.*))?$/;
/** Preprocessor variable assignments (`cc-option = ...`), not Kconfig entries. */
const ASSIGNMENT = /^[A-Za-z0-9_-]+\s*(?::=|\+=|=)/;

function indentWidth(line: string): number {
  let w = 0;
  for (const c of line) {
    if (c === " ") w++;
    else if (c === "\t") w = (Math.floor(w / 8) + 1) * 8;
    else break;
  }
  return w;
}

function unquote(s: string): string {
  const m = /^"((?:[^"\\]|\\.)*)"|^'([^']*)'/.exec(s.trim());
  return m ? (m[1] ?? m[2]) : s.trim();
}

/** Splits `"prompt" if expr` / `expr if cond` at the last top-level ` if `. */
function splitIf(rest: string): { head: string; cond?: Expr } {
  const tokens = rest.split(/\s+if\s+/);
  if (tokens.length < 2) return { head: rest.trim() };
  const cond = tokens.pop()!;
  return { head: tokens.join(" if ").trim(), cond: parseExpr(cond) };
}

export interface ParseOptions {
  srctree: string;
  /** Values for $(VAR) in source paths, e.g. SRCARCH=x86. */
  vars: Record<string, string>;
  /** Reads a file; tests pass an in-memory map. */
  readFile?: (path: string) => string | undefined;
}

type Block = { kind: "if" | "menu" | "choice"; deps: Expr[]; choice?: number };

/** The entry (config, choice, menu, comment) the attribute lines that follow belong to. */
type Entry = { def: SymbolDef; sym?: KSymbol; block?: Block };

type Line = { text: string; no: number };

/** A file's logical lines: backslash continuations joined, each with its first line's number. */
function logicalLines(text: string): Line[] {
  const rawLines = text.split("\n");
  const lines: Line[] = [];
  for (let i = 0; i < rawLines.length; i++) {
    const no = i + 1;
    let line = rawLines[i];
    while (line.endsWith("\\") && i + 1 < rawLines.length)
      line = line.slice(0, -1) + " " + rawLines[++i].trim();
    lines.push({ text: line, no });
  }
  return lines;
}

/**
 * The index of a help text's last line, the help keyword at `i`. Help text is every line
 * indented at least as deep as its first line, as Kconfig's lexer reads it. The help keyword's
 * own indent does not count: help text may sit at the same depth (6.1's
 * drivers/scsi/aic7xxx/Kconfig.aic7xxx does). A first line at column 0 means no help text.
 */
function endOfHelp(lines: Line[], i: number): number {
  let helpIndent = -1;
  while (i + 1 < lines.length) {
    const next = lines[i + 1].text;
    if (!next.trim()) {
      i++;
      continue;
    }
    const w = indentWidth(next);
    if (helpIndent < 0) helpIndent = w;
    if (w === 0 || w < helpIndent) break;
    i++;
  }
  return i;
}

/** One Kconfig tree being read: the symbols so far and the blocks open at this point. */
class KconfigParser {
  readonly symbols = new Map<string, KSymbol>();
  files = 0;
  private choiceCounter = 0;
  // Block stack shared across sourced files: if/menu/choice conditions apply to all inside.
  private readonly blocks: Block[] = [];
  private readonly read: (path: string) => string | undefined;

  constructor(private readonly opts: ParseOptions) {
    this.read = opts.readFile ?? ((p: string) => (existsSync(p) ? readFileSync(p, "utf8") : undefined));
  }

  private symbol(name: string): KSymbol {
    let s = this.symbols.get(name);
    if (!s) this.symbols.set(name, (s = { name, defs: [], selectedBy: [], impliedBy: [] }));
    return s;
  }

  private expandVars(p: string): string {
    return p.replace(/\$\((\w+)\)/g, (_, v) => this.opts.vars[v] ?? "");
  }

  parseFile(relPath: string, optional: boolean, from?: { file: string; line: number }): void {
    const path = join(this.opts.srctree, relPath);
    const text = this.read(path);
    if (text === undefined) {
      if (optional) return;
      throw new UserError(
        from
          ? `${join(this.opts.srctree, from.file)}:${from.line}: sources ${relPath}, which does not exist`
          : `Kconfig file not found: ${path}`,
        "is this a complete kernel source tree? (a help text read as a directive is a cr-guest bug: report it with this line)",
      );
    }
    this.files++;
    const lines = logicalLines(text);
    let current: Entry | undefined;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].text.replace(/(^|\s)#.*$/, "").trim();
      if (!line) continue;
      if (/^(help|---help---)$/.test(line)) {
        i = endOfHelp(lines, i);
        continue;
      }
      if (ASSIGNMENT.test(line)) continue;
      const entry = ENTRY.exec(line);
      if (entry) current = this.entry(entry[1], entry[2] ?? "", { file: relPath, line: lines[i].no });
      else if (current) this.attribute(current, line); // else: macro assignments (X := ...) and the like
    }
  }

  /** An entry keyword: opens a symbol, choice or menu, closes a block, or reads a sourced file. */
  private entry(kw: string, rest: string, at: { file: string; line: number }): Entry | undefined {
    const blocks = this.blocks;
    const enclosing = () => blocks.flatMap((b) => b.deps);
    const choice = [...blocks].reverse().find((b) => b.kind === "choice")?.choice;
    const bare = (): SymbolDef => ({ file: at.file, line: at.line, depends: [], defaults: [] });
    switch (kw) {
      case "config":
      case "menuconfig": {
        const sym = this.symbol(rest.trim());
        const def: SymbolDef = { file: at.file, line: at.line, depends: enclosing(), defaults: [], choice };
        sym.defs.push(def);
        return { def, sym };
      }
      case "choice": {
        const block: Block = { kind: "choice", deps: [], choice: ++this.choiceCounter };
        blocks.push(block);
        return { def: bare(), block };
      }
      case "menu":
      case "comment": {
        const block: Block = { kind: "menu", deps: [] };
        if (kw === "menu") blocks.push(block);
        return { def: bare(), block };
      }
      case "if":
        blocks.push({ kind: "if", deps: [parseExpr(rest)] });
        return undefined;
      case "endif":
      case "endmenu":
      case "endchoice":
        blocks.pop();
        return undefined;
      case "source":
      case "osource":
        this.parseFile(this.expandVars(unquote(rest)), kw === "osource", at);
        return undefined;
      case "rsource":
      case "orsource":
        this.parseFile(join(dirname(at.file), this.expandVars(unquote(rest))), kw === "orsource", at);
        return undefined;
    }
    return undefined;
  }

  /** An attribute line of the current entry: type, prompt, depends, default, select, imply. */
  private attribute({ def, sym, block }: Entry, line: string): void {
    const [, key, rest] = /^(\S+)\s*(.*)$/.exec(line)!;
    switch (key) {
      case "bool":
      case "tristate":
      case "string":
      case "hex":
      case "int":
      case "def_bool":
      case "def_tristate": {
        const type = key.replace("def_", "");
        def.type = type;
        if (sym) sym.type = type;
        if (key.startsWith("def_")) {
          const { head, cond } = splitIf(rest);
          def.defaults.push({ value: parseExpr(head), cond });
        } else if (rest) {
          const { head, cond } = splitIf(rest);
          def.prompt = { text: unquote(head), cond };
        }
        break;
      }
      case "prompt": {
        const { head, cond } = splitIf(rest);
        def.prompt = { text: unquote(head), cond };
        break;
      }
      case "depends":
        if (rest.startsWith("on")) {
          const e = parseExpr(rest.slice(2));
          if (block) block.deps.push(e);
          else def.depends.push(e);
        }
        break;
      case "visible":
        if (block && rest.startsWith("if")) block.deps.push(parseExpr(rest.slice(2)));
        break;
      case "default": {
        const { head, cond } = splitIf(rest);
        def.defaults.push({ value: parseExpr(head), cond });
        break;
      }
      case "select":
      case "imply":
        if (sym) this.reverseDependency(key, sym, def, rest);
        break;
    }
  }

  /** `select X if c` / `imply X if c`: X is selected (implied) by this symbol under its deps and c. */
  private reverseDependency(key: "select" | "imply", sym: KSymbol, def: SymbolDef, rest: string): void {
    const { head, cond } = splitIf(rest);
    const target = this.symbol(head.trim());
    const depsCond = [...def.depends, ...(cond ? [cond] : [])].reduce<Expr | undefined>(
      (acc, e) => (acc ? { kind: "and", l: acc, r: e } : e),
      undefined,
    );
    (key === "select" ? target.selectedBy : target.impliedBy).push({ by: sym.name, cond: depsCond });
  }
}

export function parseKconfigTree(opts: ParseOptions, top = "Kconfig"): KconfigTree {
  const parser = new KconfigParser(opts);
  parser.parseFile(top, false);
  const symbols = parser.symbols;
  // Symbols only ever named by select/imply have no definition: drop them so "exists" is honest.
  for (const [name, s] of symbols) if (s.defs.length === 0) symbols.delete(name);
  return { symbols, files: parser.files };
}

export function parseKernelKconfig(srctree: string, srcarch = "x86"): KconfigTree {
  return parseKconfigTree({
    srctree,
    vars: { SRCARCH: srcarch, ARCH: srcarch === "x86" ? "x86_64" : srcarch, HEADER_ARCH: srcarch },
  });
}
