/** YAML loading with errors that name the file and line. */
import { LineCounter, parseDocument, isMap, isSeq, isScalar, type Node } from "yaml";
import { readFileSync } from "node:fs";
import { UserError } from "./errors.js";

export interface LocatedYaml {
  file: string;
  value: unknown;
  /** Line (1-based) of the node at a key path, e.g. ["kernel", "version"]. */
  lineOf(path: (string | number)[]): number | undefined;
  /** The source text of the scalar at a key path, as written ("6.10", not the number 6.1). */
  sourceOf(path: (string | number)[]): string | undefined;
}

export function parseYaml(text: string, file: string): LocatedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const err = doc.errors[0];
    const pos = err.linePos?.[0];
    const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
    const detail = err.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    throw new UserError(
      `malformed YAML at ${where}: ${detail}`,
      `fix the syntax of ${file} near line ${pos?.line ?? "?"}`,
    );
  }
  const nodeAt = (path: (string | number)[]): Node | null | undefined => {
    let node: Node | null | undefined = doc.contents as Node | null;
    for (const key of path) {
      if (isMap(node))
        node = node.items.find((p) => isScalar(p.key) && p.key.value === key)?.value as
          Node | null | undefined;
      else if (isSeq(node) && typeof key === "number") node = node.items[key] as Node | null;
      else return undefined;
    }
    return node;
  };
  return {
    file,
    value: doc.toJS(),
    sourceOf(path) {
      const node = nodeAt(path);
      return isScalar(node) && typeof node.source === "string" ? node.source : undefined;
    },
    lineOf(path) {
      let node: Node | null | undefined = doc.contents as Node | null;
      let line: number | undefined;
      for (const key of path) {
        if (isMap(node)) {
          const pair = node.items.find((p) => isScalar(p.key) && p.key.value === key);
          if (!pair) return line;
          const keyNode = pair.key as Node;
          if (keyNode.range) line = lineCounter.linePos(keyNode.range[0]).line;
          node = pair.value as Node | null;
        } else if (isSeq(node) && typeof key === "number") {
          node = node.items[key] as Node | null;
          if (node?.range) line = lineCounter.linePos(node.range[0]).line;
        } else {
          return line;
        }
      }
      return line;
    },
  };
}

export function loadYamlFile(file: string): LocatedYaml {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UserError(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      "check the path",
    );
  }
  return parseYaml(text, file);
}
