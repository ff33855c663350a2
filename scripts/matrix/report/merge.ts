/** Merging cells from several machines or runs into one list. */
import type { CellResult } from "../cell.js";

/** Several sources of cells into one list: one cell per id, the most recently finished. */
export function mergeCells(lists: CellResult[][]): { cells: CellResult[]; duplicates: string[] } {
  const byId = new Map<string, CellResult>();
  const duplicates: string[] = [];
  for (const cell of lists.flat()) {
    const have = byId.get(cell.id);
    if (have) {
      duplicates.push(cell.id);
      if (have.finished >= cell.finished) continue;
    }
    byId.set(cell.id, cell);
  }
  return {
    cells: [...byId.values()].sort((a, b) => a.id.localeCompare(b.id, "en", { numeric: true })),
    duplicates: [...new Set(duplicates)],
  };
}
