/**
 * The Debian archive's signed indexes: InRelease (OpenPGP-verified with gpgv against the
 * Debian archive keyring) pins the sha256 of Sources.xz / Packages.xz, which pin every
 * file in the pool. Checksums come from here because a package's .dsc may be missing on
 * the mirror. Parsed indexes are cached as JSON so repeat lookups need no network.
 */
import { writeAtomic } from "./fs-atomic.js";
import { KeyedQueue } from "./keyed-queue.js";
import { existsSync } from "node:fs";
import { readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { download, NotAvailableError } from "./download.js";
import { UserError } from "./errors.js";
import { run, tail } from "./exec.js";
import { findInPath } from "./host-tools.js";

export interface DebianFile {
  name: string;
  size: number;
  sha256: string;
  url: string;
}

export interface SourcePackage {
  package: string;
  version: string;
  directory: string;
  files: DebianFile[];
}

export interface BinaryPackage {
  package: string;
  version: string;
  architecture: string;
  filename: string;
  url: string;
  size: number;
  sha256: string;
  depends: string;
  /** The Source field as written: "name" or "name (version)"; absent when it equals the package. */
  source?: string;
}

export type IndexKind = "source" | { binaryArch: string };

export interface LoadSuiteIndexOptions {
  /** e.g. http://deb.debian.org/debian (also file:// or an absolute path to a local mirror). */
  mirror: string;
  suite: string;
  cacheDir: string;
  kind: IndexKind;
  /** A parsed index younger than this is used without any network (default 12). */
  maxAgeHours?: number;
  /** Deadline for the whole load (default 10 minutes). */
  timeoutMs?: number;
}

export interface SuiteIndex {
  mirror: string;
  suite: string;
  /** The index file within the suite, e.g. main/source/Sources.xz. */
  indexPath: string;
  indexSha256: string;
  /** When InRelease was last fetched and verified. */
  fetchedAt: Date;
  /** InRelease Date and Valid-Until, as written (Valid-Until may be past: not enforced). */
  date?: string;
  validUntil?: string;
  /** Served from the parsed cache without network. */
  fromCache: boolean;
  /** Every version of a source package in the suite, newest first. */
  sources(pkg: string): SourcePackage[];
  /** Every version of a binary package in the suite, newest first. */
  binaries(pkg: string): BinaryPackage[];
}

export const DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";
const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const CACHE_FORMAT = 1;
const KNOWN_SUITES = "bookworm, bookworm-backports, trixie, sid (or stable, testing, unstable)";

export type Stanza = Record<string, string>;

/**
 * RFC822-style (deb822) paragraphs. Continuation lines (leading space or tab) are appended
 * with "\n" and the one leading space removed (" ." stands for an empty line). Keys keep
 * their case; objects have no prototype, so a field named "__proto__" is just a field.
 */
export function parseStanzas(text: string): Stanza[] {
  return [...iterStanzas(text)];
}

/**
 * parseStanzas one paragraph at a time, keeping only the fields in `keep` when given: a
 * Sources file is ~57 MB and its linux stanza alone lists thousands of binaries.
 */
function* iterStanzas(text: string, keep?: ReadonlySet<string>): Generator<Stanza> {
  let cur: Stanza | undefined;
  let key: string | undefined; // the field continuation lines extend (undefined: dropped)
  let pos = 0;
  while (pos <= text.length) {
    let nl = text.indexOf("\n", pos);
    if (nl < 0) nl = text.length;
    let line = text.slice(pos, nl);
    pos = nl + 1;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    const first = line[0];
    if (first === " " || first === "\t") {
      if (line.trim() !== "") {
        if (cur && key !== undefined) {
          const rest = line.slice(1);
          cur[key] += `\n${rest === "." ? "" : rest}`;
        }
        continue;
      }
    }
    if (line.trim() === "") {
      if (cur) yield cur;
      cur = undefined;
      key = undefined;
      continue;
    }
    if (first === "#") continue;
    const colon = line.indexOf(":");
    if (colon <= 0)
      throw new Error(`malformed deb822 line (no "Field:"): ${JSON.stringify(line.slice(0, 80))}`);
    cur ??= Object.create(null) as Stanza;
    const name = line.slice(0, colon);
    key = keep && !keep.has(name) ? undefined : name;
    if (key !== undefined) cur[key] = line.slice(colon + 1).trim();
  }
  if (cur) yield cur;
}

/** The signed text of a clearsigned message (or the text itself when it is not armored). */
export function clearsignedBody(text: string): string {
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  if (lines[0]?.trim() !== "-----BEGIN PGP SIGNED MESSAGE-----") return text;
  let i = 1;
  while (i < lines.length && lines[i].trim() !== "") i++; // armor headers ("Hash: SHA256")
  const body: string[] = [];
  for (i++; i < lines.length && lines[i] !== "-----BEGIN PGP SIGNATURE-----"; i++) {
    body.push(lines[i].startsWith("- ") ? lines[i].slice(2) : lines[i]); // dash-escaping
  }
  return `${body.join("\n")}\n`;
}

/** The SHA256 entry for `path` (e.g. "main/source/Sources.xz") in a Release/InRelease text. */
export function parseInReleaseSha256(
  text: string,
  path: string,
): { sha256: string; size: number } | undefined {
  const release = parseStanzas(clearsignedBody(text))[0];
  if (!release?.SHA256) return undefined;
  for (const entry of parseChecksumLines(release.SHA256, "InRelease SHA256")) {
    if (entry.name === path) return { sha256: entry.sha256, size: entry.size };
  }
  return undefined;
}

/** Lines of "sha256 size name" (Checksums-Sha256 in Sources, SHA256 in Release). */
function parseChecksumLines(value: string, what: string): { sha256: string; size: number; name: string }[] {
  const out: { sha256: string; size: number; name: string }[] = [];
  for (const line of value.split("\n")) {
    const t = line.trim();
    if (!t) continue;
    const m = /^([0-9a-fA-F]{64})\s+(\d+)\s+(\S+)$/.exec(t);
    if (!m) throw new Error(`malformed ${what} line: ${JSON.stringify(t.slice(0, 120))}`);
    out.push({ sha256: m[1].toLowerCase(), size: Number(m[2]), name: m[3] });
  }
  return out;
}

function trimMirror(mirror: string): string {
  return mirror.replace(/\/+$/, "");
}

const SOURCE_FIELDS = new Set(["Package", "Version", "Directory", "Checksums-Sha256"]);
const BINARY_FIELDS = new Set([
  "Package",
  "Version",
  "Architecture",
  "Filename",
  "Size",
  "SHA256",
  "Depends",
  "Source",
]);

/** Source stanzas of a Sources file; file URLs are `<mirror>/<Directory>/<name>`. */
export function parseSources(text: string, mirror: string): SourcePackage[] {
  const base = trimMirror(mirror);
  const out: SourcePackage[] = [];
  for (const s of iterStanzas(text, SOURCE_FIELDS)) {
    if (!s.Package) continue;
    if (!s.Version || !s.Directory)
      throw new Error(`source package ${s.Package} has no Version or Directory`);
    const files = parseChecksumLines(
      s["Checksums-Sha256"] ?? "",
      `Checksums-Sha256 (source ${s.Package})`,
    ).map((f) => ({
      name: f.name,
      size: f.size,
      sha256: f.sha256,
      url: `${base}/${s.Directory}/${f.name}`,
    }));
    out.push({ package: s.Package, version: s.Version, directory: s.Directory, files });
  }
  return out;
}

/** Binary stanzas of a Packages file; URLs are `<mirror>/<Filename>`. */
export function parsePackages(text: string, mirror: string): BinaryPackage[] {
  const base = trimMirror(mirror);
  const out: BinaryPackage[] = [];
  for (const s of iterStanzas(text, BINARY_FIELDS)) {
    if (!s.Package) continue;
    const missing = ["Version", "Architecture", "Filename", "Size", "SHA256"].filter((f) => !s[f]);
    if (missing.length) throw new Error(`binary package ${s.Package} lacks ${missing.join(", ")}`);
    if (!/^[0-9a-fA-F]{64}$/.test(s.SHA256))
      throw new Error(`binary package ${s.Package} has a malformed SHA256`);
    const pkg: BinaryPackage = {
      package: s.Package,
      version: s.Version,
      architecture: s.Architecture,
      filename: s.Filename,
      url: `${base}/${s.Filename}`,
      size: Number(s.Size),
      sha256: s.SHA256.toLowerCase(),
      depends: s.Depends ?? "",
    };
    if (s.Source) pkg.source = s.Source;
    out.push(pkg);
  }
  return out;
}

/** dpkg's version ordering (epoch, upstream, revision; "~" sorts before everything). */
export function compareDebianVersions(a: string, b: string): number {
  const pa = splitVersion(a);
  const pb = splitVersion(b);
  if (pa.epoch !== pb.epoch) return pa.epoch - pb.epoch;
  return verrevcmp(pa.upstream, pb.upstream) || verrevcmp(pa.revision, pb.revision);
}

function splitVersion(v: string): { epoch: number; upstream: string; revision: string } {
  const colon = v.indexOf(":");
  const epoch = colon >= 0 ? Number(v.slice(0, colon)) || 0 : 0;
  const rest = colon >= 0 ? v.slice(colon + 1) : v;
  const dash = rest.lastIndexOf("-");
  return dash >= 0
    ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) }
    : { epoch, upstream: rest, revision: "" };
}

const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9";

function order(c: string | undefined): number {
  if (c === undefined || isDigit(c)) return 0;
  if (c === "~") return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

/** A port of dpkg's verrevcmp (lib/dpkg/version.c). */
function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const d = order(a[i]) - order(b[j]);
      if (d) return d;
      i++;
      j++;
    }
    while (a[i] === "0") i++;
    while (b[j] === "0") j++;
    let firstDiff = 0;
    while (isDigit(a[i]) && isDigit(b[j])) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a[i])) return 1;
    if (isDigit(b[j])) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

interface CacheMeta {
  format: number;
  mirror: string;
  suite: string;
  indexPath: string;
  indexSha256: string;
  fetchedAt: number;
  date?: string;
  validUntil?: string;
}

type Grouped = Record<string, (SourcePackage | BinaryPackage)[]>;

const bySuite = new KeyedQueue();

/**
 * Loads (from cache when fresh) the signed source or binary index of one suite. Loads of one
 * suite take turns (they share its InRelease): the later one finds the index cached.
 */
export function loadSuiteIndex(opts: LoadSuiteIndexOptions): Promise<SuiteIndex> {
  return bySuite.run(JSON.stringify([opts.cacheDir, trimMirror(opts.mirror), opts.suite]), () =>
    loadSuiteIndexOnce(opts),
  );
}

async function loadSuiteIndexOnce(opts: LoadSuiteIndexOptions): Promise<SuiteIndex> {
  const mirror = trimMirror(opts.mirror);
  const { suite, kind } = opts;
  if (!/^[a-z0-9][a-z0-9.+-]*$/.test(suite))
    throw new UserError(`invalid Debian suite name ${JSON.stringify(suite)}`, `use one of ${KNOWN_SUITES}`);
  const arch = kind === "source" ? undefined : kind.binaryArch;
  if (arch !== undefined && !/^[a-z0-9-]+$/.test(arch))
    throw new UserError(`invalid Debian architecture ${JSON.stringify(arch)}`, "e.g. amd64 or arm64");
  const indexPath = arch === undefined ? "main/source/Sources.xz" : `main/binary-${arch}/Packages.xz`;
  const maxAgeMs = (opts.maxAgeHours ?? 12) * 3_600_000;
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const remaining = () => Math.max(1, deadline - Date.now());

  // <cacheDir>/<mirror as a name>/<suite>/{InRelease, source/, binary-ARCH/}
  const suiteDir = join(
    opts.cacheDir,
    mirror.replace(/^[a-z]+:\/\//i, "").replace(/[^A-Za-z0-9._-]+/g, "_"),
    suite,
  );
  const dir = join(suiteDir, arch === undefined ? "source" : `binary-${arch}`);
  const metaFile = join(dir, "meta.json");
  const indexFile = join(dir, "index.json");

  const cached = await readMeta(metaFile, mirror, suite, indexPath);
  if (cached && Date.now() - cached.fetchedAt < maxAgeMs && existsSync(indexFile)) {
    return makeIndex(cached, JSON.parse(await readFile(indexFile, "utf8")) as Grouped, arch, true);
  }

  const release = await fetchVerifiedInRelease(mirror, suite, suiteDir, remaining());
  const fields = parseStanzas(release)[0] ?? {};
  if (fields.Suite !== suite && fields.Codename !== suite) {
    throw new UserError(
      `${mirror}/dists/${suite}/InRelease is signed but describes suite ${fields.Suite ?? "?"} (codename ${fields.Codename ?? "?"}), not ${suite}`,
      "the mirror is misconfigured or serving stale aliases; try another mirror",
    );
  }
  const entry = parseInReleaseSha256(release, indexPath);
  if (!entry) {
    const archs = fields.Architectures ? ` (architectures: ${fields.Architectures})` : "";
    throw new UserError(
      `Debian suite ${suite} has no ${indexPath} in its InRelease${archs}`,
      arch ? "pick an architecture the suite has" : undefined,
    );
  }
  const meta: CacheMeta = {
    format: CACHE_FORMAT,
    mirror,
    suite,
    indexPath,
    indexSha256: entry.sha256,
    fetchedAt: Date.now(),
    date: fields.Date,
    validUntil: fields["Valid-Until"],
  };

  // Unchanged index: keep the parsed copy, just record the fresh verification.
  if (cached?.indexSha256 === entry.sha256 && existsSync(indexFile)) {
    await writeAtomic(metaFile, JSON.stringify(meta));
    return makeIndex(meta, JSON.parse(await readFile(indexFile, "utf8")) as Grouped, arch, false);
  }

  const xzFile = join(dir, indexPath.split("/").pop()!);
  const grouped = await fetchIndex({ mirror, suite, indexPath, entry, fields, xzFile, arch }, remaining);
  await writeAtomic(indexFile, JSON.stringify(grouped));
  await writeAtomic(metaFile, JSON.stringify(meta)); // written last: meta.json vouches for index.json
  return makeIndex(meta, grouped, arch, false);
}

/** Downloads the index the signed InRelease pins (by hash when the suite offers it) and groups it by package. */
async function fetchIndex(
  at: {
    mirror: string;
    suite: string;
    indexPath: string;
    entry: { sha256: string; size: number };
    fields: Record<string, string>;
    xzFile: string;
    arch: string | undefined;
  },
  remaining: () => number,
): Promise<Grouped> {
  const { mirror, suite, indexPath, entry, fields, xzFile, arch } = at;
  const plainUrl = `${mirror}/dists/${suite}/${indexPath}`;
  const pinnedIn = `${mirror}/dists/${suite}/InRelease (signed)`;
  const get = (url: string) =>
    download({ url, dest: xzFile, sha256: entry.sha256, size: entry.size, timeoutMs: remaining(), pinnedIn });
  if (fields["Acquire-By-Hash"] === "yes") {
    // by-hash names the exact content, so a mirror mid-sync cannot hand over a newer file.
    const byHash = `${mirror}/dists/${suite}/${indexPath.replace(/[^/]+$/, "")}by-hash/SHA256/${entry.sha256}`;
    await get(byHash).catch((err) => {
      if (err instanceof NotAvailableError) return get(plainUrl); // e.g. a local mirror without by-hash/
      throw err;
    });
  } else {
    await get(plainUrl);
  }

  const text = (
    await run(["xz", "-dc", xzFile], { timeoutMs: remaining(), hint: `delete ${xzFile} and retry` })
  ).stdout;
  const list: (SourcePackage | BinaryPackage)[] =
    arch === undefined ? parseSources(text, mirror) : parsePackages(text, mirror);
  const grouped: Grouped = Object.create(null);
  for (const p of list) (grouped[p.package] ??= []).push(p);
  for (const versions of Object.values(grouped))
    if (versions.length > 1) versions.sort((a, b) => compareDebianVersions(b.version, a.version));
  return grouped;
}

async function readMeta(
  file: string,
  mirror: string,
  suite: string,
  indexPath: string,
): Promise<CacheMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(file, "utf8")) as CacheMeta;
    if (
      meta.format !== CACHE_FORMAT ||
      meta.mirror !== mirror ||
      meta.suite !== suite ||
      meta.indexPath !== indexPath
    )
      return undefined;
    return meta;
  } catch {
    return undefined;
  }
}

function makeIndex(
  meta: CacheMeta,
  grouped: Grouped,
  arch: string | undefined,
  fromCache: boolean,
): SuiteIndex {
  const lookup = <T>(pkg: string): T[] => (Object.hasOwn(grouped, pkg) ? ([...grouped[pkg]] as T[]) : []);
  return {
    mirror: meta.mirror,
    suite: meta.suite,
    indexPath: meta.indexPath,
    indexSha256: meta.indexSha256,
    fetchedAt: new Date(meta.fetchedAt),
    date: meta.date,
    validUntil: meta.validUntil,
    fromCache,
    sources(pkg: string): SourcePackage[] {
      if (arch !== undefined)
        throw new Error(
          `the ${meta.suite} ${meta.indexPath} index has binary packages; load kind "source" for sources()`,
        );
      return lookup<SourcePackage>(pkg);
    },
    binaries(pkg: string): BinaryPackage[] {
      if (arch === undefined)
        throw new Error(
          `the ${meta.suite} source index has no binary packages; load kind { binaryArch } for binaries()`,
        );
      return lookup<BinaryPackage>(pkg);
    },
  };
}

/** Downloads dists/SUITE/InRelease and returns its gpgv-verified text (only signed bytes are trusted). */
async function fetchVerifiedInRelease(
  mirror: string,
  suite: string,
  suiteDir: string,
  timeoutMs: number,
): Promise<string> {
  const missing = [
    !findInPath("gpgv") && "gpgv (Debian package gpgv)",
    !existsSync(DEBIAN_KEYRING) && `${DEBIAN_KEYRING} (Debian package debian-archive-keyring)`,
  ].filter(Boolean);
  if (missing.length) {
    throw new UserError(
      `cannot verify the Debian ${suite} index: missing ${missing.join(" and ")}`,
      "install them: sudo apt-get install gpgv debian-archive-keyring",
    );
  }
  const url = `${mirror}/dists/${suite}/InRelease`;
  const unverified = join(suiteDir, "InRelease.unverified");
  try {
    await download({ url, dest: unverified, timeoutMs });
  } catch (err) {
    if (
      err instanceof NotAvailableError &&
      (err.status === 404 || err.status === 410 || err.reason === "no such file")
    ) {
      await rm(suiteDir, { recursive: true, force: true }); // nothing worth keeping for a suite that is not there
      throw new UserError(
        `unknown Debian suite ${suite}: ${url} does not exist`,
        `use one of ${KNOWN_SUITES}`,
      );
    }
    throw err;
  }
  // --status-fd: gpgv exits non-zero when one of several signatures has an unknown key,
  // so judge by its status lines (as apt does): a good, valid signature and no bad one.
  const r = await run(
    ["gpgv", "--status-fd", "2", "--keyring", DEBIAN_KEYRING, "--output", "-", unverified],
    {
      timeoutMs: 60_000,
      allowFailure: true,
    },
  );
  const status = r.stderr;
  const good =
    /^\[GNUPG:\] GOODSIG /m.test(status) &&
    /^\[GNUPG:\] VALIDSIG /m.test(status) &&
    !/^\[GNUPG:\] (BADSIG|REVKEYSIG) /m.test(status);
  if (!good || !r.stdout.trim()) {
    await rm(unverified, { force: true });
    throw new UserError(
      `the OpenPGP signature of the Debian ${suite} InRelease from ${mirror} did not verify against ${DEBIAN_KEYRING}:\n${tail(r.stderr, 12)}`,
      "the mirror copy is corrupt or tampered with, or the keyring is too old: update the Debian packages gpgv and debian-archive-keyring, or use another mirror",
    );
  }
  await rename(unverified, join(suiteDir, "InRelease"));
  return r.stdout;
}
