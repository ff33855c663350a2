/**
 * The matrix report, pure: cells in, matrix.json / matrix.md / matrix.html / junit.xml out;
 * findings in plain words (rules kept as data in criu-builds/findings.yaml, plus what each
 * test's status depends on, read off the cells); merging cells from several machines;
 * comparing two reports. One module per concern under report/; this one gathers them.
 */
export * from "./report/bisect.js";
export * from "./report/columns.js";
export * from "./report/compare.js";
export * from "./report/escape.js";
export * from "./report/findings.js";
export * from "./report/html.js";
export * from "./report/junit.js";
export * from "./report/markdown.js";
export * from "./report/merge.js";
export * from "./report/model.js";
export * from "./report/summary.js";
