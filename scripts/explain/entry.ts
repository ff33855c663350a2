/**
 * `cr-guest explain NAME`: one name of the kernel requirements map, looked up and printed. A
 * name is a feature (`uffd`, `feature/uffd`), a check (`check_fdinfo_ext`, `check/...`), a
 * start-up probe (`kerndat_uffd`, `probe/...`) or a Kconfig symbol (`USERFAULTFD`,
 * `CONFIG_USERFAULTFD`: the entries that need it). Pure: the command hands it the map.
 */
import { relative } from "node:path";
import { readableRange } from "../data/criu-catalog.js";
import {
  BUILD_CONDITIONS,
  KINDS,
  RUNTIME_CONDITIONS,
  requirementsFor,
  symbolsOf,
  type KernelRequirements,
  type Requirement,
  type RequirementKind,
} from "../data/kernel-requirements.js";
import { UserError } from "../lib/errors.js";
import { REPO_ROOT } from "../lib/paths.js";
import { didYouMean } from "../lib/suggest.js";

/** What a name stands for: a feature, check or probe (its entries, one per CRIU range), or a symbol. */
export type Explained =
  | { kind: RequirementKind; name: string; criu?: string; entries: Requirement[] }
  | { kind: "symbol"; name: string; criu?: string; neededBy: NeededBy[] };

/** One entry that needs a symbol, and how: all of its list, or one of a group. */
export interface NeededBy {
  entry: Requirement;
  /** The any_of group the symbol is in (one of them is enough); none: the entry needs it. */
  anyOf?: string[];
}

const KIND_PREFIX = new RegExp(`^(${KINDS.join("|")})/(.+)$`);
const SYMBOL = /^(?:CONFIG_)?([A-Za-z0-9_]+)$/;

/** How bad an entry's failure is, for the order a symbol's users are listed in. */
const SEVERITY = [
  "every CRIU command fails at start",
  "plain criu check fails",
  "the feature check fails",
  "criu check --all reports it missing",
];
const severity = (r: Requirement) => {
  const i = SEVERITY.indexOf(r.effect);
  return i < 0 ? SEVERITY.length : i;
};

/** The entries that need a symbol (a check that runs a feature's function counts too). */
function neededBy(entries: Requirement[], symbol: string): NeededBy[] {
  return entries
    .flatMap((entry): NeededBy[] => {
      if (entry.needs.all_of?.includes(symbol)) return [{ entry }];
      const group = entry.needs.any_of?.find((g) => g.includes(symbol));
      return group ? [{ entry, anyOf: group }] : [];
    })
    .sort((a, b) => severity(a.entry) - severity(b.entry));
}

function unknownName(name: string, map: KernelRequirements): never {
  const names = [
    ...new Set(map.entries.flatMap((r) => [r.name, `${r.kind}/${r.name}`, ...symbolsOf(r.needs)])),
  ];
  throw new UserError(
    `'${name}' is no feature, check, start-up probe, dump entry or Kconfig symbol of the kernel requirements map${didYouMean(name.replace(/^CONFIG_/, ""), names)}`,
    "name a feature (uffd), a check (check_fdinfo_ext), a probe (kerndat_uffd), a dump entry (tcp_socket) or a symbol (USERFAULTFD); criu-builds/kernel-requirements.yaml lists them",
  );
}

/** The entries of one name, or a symbol's users; --criu V keeps those of that version. */
export function explain(map: KernelRequirements, name: string, criu?: string): Explained {
  const inScope = criu ? requirementsFor(map, criu) : map.entries;
  const notInVersion = (what: string, ranges: string[]): never => {
    throw new UserError(
      `${what} is not in CRIU ${criu}: the map has it for CRIU ${ranges.map(readableRange).join(", ")}`,
      "drop --criu, or name a version in that range",
    );
  };
  const prefixed = KIND_PREFIX.exec(name);
  const kinds = prefixed ? [prefixed[1]] : KINDS;
  const bare = prefixed ? prefixed[2] : name;
  const all = map.entries.filter((r) => kinds.includes(r.kind) && r.name === bare);
  if (all.length) {
    // A bare name is one kind's: feature before check before probe (no name is two kinds today).
    const kind = all[0].kind;
    const entries = inScope.filter((r) => r.kind === kind && r.name === bare);
    if (!entries.length)
      notInVersion(
        `${kind}/${bare}`,
        all.map((r) => r.criu),
      );
    return { kind, name: bare, criu, entries };
  }
  const symbol = SYMBOL.exec(name)?.[1].toUpperCase();
  if (!symbol || prefixed) unknownName(name, map);
  const users = neededBy(map.entries, symbol);
  if (!users.length) unknownName(name, map);
  const inVersion = users.filter((u) => inScope.includes(u.entry));
  if (!inVersion.length)
    notInVersion(
      `CONFIG_${symbol}`,
      users.map((u) => u.entry.criu),
    );
  return { kind: "symbol", name: symbol, criu, neededBy: inVersion };
}

/** "USERFAULTFD; runtime: root (CRIU runs as root ...)" */
function needsText(r: Requirement): string {
  const n = r.needs;
  const parts = [
    ...(n.all_of?.length ? [n.all_of.join(", ")] : []),
    ...(n.any_of ?? []).map((g) => `one of ${g.join(", ")}`),
    ...(n.kernel ? [`linux ${readableRange(n.kernel)}`] : []),
    ...(n.runtime ?? []).map((c) => `runtime ${c}: ${RUNTIME_CONDITIONS[c]}`),
    ...(n.build ?? []).map((c) => `build ${c}: ${BUILD_CONDITIONS[c]}`),
  ];
  return parts.length ? parts.join("; ") : "nothing the kernel config decides";
}

function whenText(r: Requirement): string | undefined {
  const w = [...(r.when?.runtime ?? []), ...(r.when?.build ?? [])];
  return w.length ? `only when ${w.join(", ")}` : undefined;
}

const proofText = (r: Requirement) =>
  r.proven.length
    ? r.proven.map(
        (p) => `${p.symbols.join(", ")} off: linux ${p.kernel}, CRIU ${p.criu}, ${p.date}, run ${p.run}`,
      )
    : ["not yet proven"];

/** criu-builds/kernel-requirements.yaml:219, not the checkout's absolute path. */
const relativeAt = (at: string) => (at.startsWith(`${REPO_ROOT}/`) ? relative(REPO_ROOT, at) : at);

/** One entry's fields as label/value lines, in the order a reader asks them. */
function entryLines(r: Requirement): [string, string | string[] | undefined][] {
  return [
    ["CRIU", readableRange(r.criu)],
    ["mode", r.mode && (r.mode === "plain" ? "plain criu check" : "criu check --all")],
    ["runs", r.sameAs && `${r.sameAs} (its needs and sources)`],
    ["probes", r.probes],
    ["needs", needsText(r)],
    ["when", whenText(r)],
    ["effect", r.effect],
    ["feeds", r.feeds.length ? r.feeds.map((f) => `feature/${f}`) : undefined],
    ["shown by", r.shownBy.length ? r.shownBy : undefined],
    ["avoided by", r.avoidedByPatches.length ? r.avoidedByPatches.map((p) => `patch ${p}`) : undefined],
    ["sources", r.sources],
    ["proven", proofText(r)],
    ["notes", r.notes],
    ["at", relativeAt(r.at)],
  ];
}

const LABEL = 11;

function labelled(label: string, value: string | string[]): string[] {
  const values = Array.isArray(value) ? value : [value];
  return values.map((v, i) => `  ${(i ? "" : `${label}:`).padEnd(LABEL)} ${v}`);
}

/** The text `explain` prints. */
export function formatExplained(e: Explained): string {
  const scope = e.criu ? ` (CRIU ${e.criu})` : "";
  if (e.kind === "symbol") {
    const lines = [
      `CONFIG_${e.name}${scope}: needed by ${e.neededBy.length} entr${e.neededBy.length === 1 ? "y" : "ies"}`,
    ];
    for (const { entry: r, anyOf } of e.neededBy) {
      const how = anyOf ? ` (one of ${anyOf.join(", ")})` : "";
      lines.push(`  ${r.kind}/${r.name} [CRIU ${readableRange(r.criu)}]${how}: ${r.effect} (${r.probes[0]})`);
    }
    return lines.join("\n");
  }
  return e.entries
    .map((r) =>
      [
        `${r.kind}/${r.name}${scope}`,
        ...entryLines(r).flatMap(([label, value]) => (value === undefined ? [] : labelled(label, value))),
      ].join("\n"),
    )
    .join("\n\n");
}

/** An entry as --json prints it: the map's own field names. */
function entryDocument(r: Requirement) {
  return {
    criu: r.criu,
    ...(r.mode ? { mode: r.mode } : {}),
    ...(r.sameAs ? { same_as: r.sameAs } : {}),
    probes: r.probes,
    needs: r.needs,
    ...(r.when ? { when: r.when } : {}),
    effect: r.effect,
    feeds: r.feeds,
    ...(r.kind === "dump" ? { shown_by: r.shownBy } : {}),
    avoided_by_patches: r.avoidedByPatches,
    sources: r.sources,
    proven: r.proven,
    ...(r.notes ? { notes: r.notes } : {}),
    at: relativeAt(r.at),
  };
}

/** The one JSON document `explain --json` prints. */
export function explainedDocument(e: Explained) {
  const scope = { criu: e.criu ?? null };
  if (e.kind === "symbol")
    return {
      kind: "symbol",
      name: e.name,
      ...scope,
      needed_by: e.neededBy.map(({ entry: r, anyOf }) => ({
        kind: r.kind,
        name: r.name,
        criu: r.criu,
        effect: r.effect,
        any_of: anyOf ?? null,
      })),
    };
  return { kind: e.kind, name: e.name, ...scope, entries: e.entries.map(entryDocument) };
}
