/**
 * CRIU sources on real inputs: the tag archives of ../shared/criu-tarballs as a local mirror,
 * the same archive unpacked as a release tree and as a git checkout (with CRIU's dangling and
 * self-referencing symlinks), a bare repository over file://, and the upstream provider
 * downloading the real 3.19 archive from a loopback HTTP server under its real pin.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { loadCriuCatalog, resolveCriuVersion } from "../../scripts/data/criu-catalog.js";
import {
  inspectLocalSource,
  mirrorNames,
  obtainCriuSource,
  resolveCriuSource,
  treeIdentity,
} from "../../scripts/criu/sources.js";
import { planCriu, resolveAndPlanCriu } from "../../scripts/criu/stage.js";
import { loadPatchCatalog } from "../../scripts/data/criu-patches.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { UserError } from "../../scripts/lib/errors.js";
import { NotAvailableError } from "../../scripts/lib/download.js";
import {
  CRIU_TARBALLS,
  git,
  gitCheckoutOf,
  missingTarballs,
  unpackRelease,
} from "../helpers/criu-sources.js";
import { tempDir } from "../helpers/temp.js";

const catalog = loadCriuCatalog();
const patchCatalog = loadPatchCatalog();
const cacheRoot = tempDir("crg-src-cache-");
const cfg = (...set: string[]) => loadConfig({ set: [`cache_dir=${JSON.stringify(cacheRoot)}`, ...set] });
const plan = (strict: boolean, ...set: string[]) =>
  resolveAndPlanCriu(cfg(...set), { strict }, { criu: catalog, criuPatches: patchCatalog });
const serving = (p: ReturnType<typeof plan>) => p.candidates.find((c) => c.key)!;
const thrown = (f: () => unknown): UserError => {
  try {
    f();
  } catch (err) {
    if (err instanceof UserError) return err;
    throw err;
  }
  throw new Error("no error thrown");
};

describe("the catalog pins every tag archive in the shared mirror", () => {
  it.skipIf(missingTarballs())("each SHA256SUMS line is the catalog's pin for that version", () => {
    const sums = readFileSync(join(CRIU_TARBALLS, "SHA256SUMS"), "utf8").trim().split("\n");
    expect(sums.length).toBeGreaterThanOrEqual(7);
    for (const line of sums) {
      const [sum, name] = line.split(/\s+/);
      const version = /^criu-(.+)\.tar\.gz$/.exec(name)![1];
      expect(catalog.versions.get(version)?.upstream?.sha256, name).toBe(sum);
    }
  });
  it("3.17.1 keeps Debian's binary before the source providers; others take the default order", () => {
    expect(plan(true, "criu.version=3.17.1").candidates.map((c) => c.provider)).toEqual([
      "local-source",
      "git",
      "debian-binary",
      "local-mirror",
      "debian-source",
      "upstream",
    ]);
    expect(plan(true, "criu.version=3.19").candidates.map((c) => c.provider)).toEqual([
      "local-source",
      "git",
      "local-mirror",
      "debian-source",
      "upstream",
      "debian-binary",
    ]);
    // Named providers are only those, in that order.
    expect(
      plan(true, "criu.version=3.17.1", "criu.providers=[upstream]").candidates.map((c) => c.provider),
    ).toEqual(["upstream"]);
  });
  it("upstream URLs follow criu.upstream_url_base; 4.1.1 is still Debian's orig tarball first", () => {
    const p = plan(true, "criu.version=3.19", "criu.upstream_url_base=http://proxy.example/criu/");
    expect(serving(p)).toMatchObject({
      provider: "upstream",
      from: "http://proxy.example/criu/v3.19.tar.gz",
    });
    expect(serving(plan(true, "criu.version=4.1"))).toMatchObject({ provider: "debian-source" });
  });
});

describe.skipIf(missingTarballs())("local mirror", () => {
  it("serves 3.19 from the real tag archive, keyed by content: the same build as upstream", () => {
    const p = plan(true, "criu.version=3.19", `criu.local_mirror=${CRIU_TARBALLS}`);
    const mirror = p.candidates.find((c) => c.provider === "local-mirror")!;
    const upstream = p.candidates.find((c) => c.provider === "upstream")!;
    expect(mirror).toMatchObject({
      identity: "sha256:990cdd147cb670a5d5d14216c2b5c2fc2b9a53ef19396569a6413807ba2a6aa2",
      file: join(CRIU_TARBALLS, "criu-3.19.tar.gz"),
    });
    expect(serving(p).provider).toBe("local-mirror");
    expect(mirror.key).toBe(upstream.key);
    // A patch is part of the key; the provider never is.
    const patched = plan(
      true,
      "criu.version=3.19",
      `criu.local_mirror=${CRIU_TARBALLS}`,
      "criu.patches=[membarrier-probe-nonfatal]",
    );
    expect(serving(patched).key).not.toBe(mirror.key);
  });

  it("accepts vX.tar.gz names, ignores other files, and says what it lacks", () => {
    const dir = tempDir("crg-mirror-");
    copyFileSync(join(CRIU_TARBALLS, "criu-4.0.tar.gz"), join(dir, "v4.0.tar.gz"));
    writeFileSync(join(dir, "README"), "not a tarball\n");
    expect(serving(plan(true, 'criu.version="4.0"', `criu.local_mirror=${dir}`))).toMatchObject({
      provider: "local-mirror",
      identity: "sha256:c61bfb4cc8f8ddb56da8be816ad8c951aa53b0f9ac4cd56bc74d3f451be5d3a7",
    });
    const none = plan(true, "criu.version=3.18", `criu.local_mirror=${dir}`).candidates.find(
      (c) => c.provider === "local-mirror",
    )!;
    expect(none.skip).toContain("criu-3.18.tar.gz, v3.18.tar.gz");
    expect(mirrorNames(resolveCriuVersion("4.1.1", catalog)).map((n) => n.name)).toContain(
      "criu_4.1.1.orig.tar.xz",
    );
  });

  it("refuses a truncated tarball, naming it and both checksums", () => {
    const dir = tempDir("crg-mirror-bad-");
    const file = join(dir, "criu-3.19.tar.gz");
    // Written, not copied: a copy keeps the mirror's read-only mode, which only root can truncate.
    writeFileSync(file, readFileSync(join(CRIU_TARBALLS, "criu-3.19.tar.gz")).subarray(0, 500_000));
    const err = thrown(() => plan(true, "criu.version=3.19", `criu.local_mirror=${dir}`));
    expect(err.message).toContain(file);
    expect(err.message).toContain("990cdd147cb670a5d5d14216c2b5c2fc2b9a53ef19396569a6413807ba2a6aa2");
    expect(err.message).toMatch(/it has sha256 [0-9a-f]{64}/);
    expect(err.exitCode).toBe(2);
  });
});

describe.skipIf(missingTarballs())("local source: a real release tree, a git checkout, a tarball", () => {
  let tree: string;
  beforeAll(() => {
    tree = unpackRelease("3.19");
  });

  it("hashes the v3.19 tree without following its dangling and self-referencing symlinks", () => {
    expect(readlinkSync(join(tree, "compel/include/uapi/compel"))).toBe(".");
    expect(lstatSync(join(tree, "compel/include/uapi/asm")).isSymbolicLink()).toBe(true);
    expect(existsSync(join(tree, "compel/include/uapi/asm"))).toBe(false); // dangling until a build
    const src = inspectLocalSource(tree);
    expect(src).toMatchObject({ kind: "directory", version: "3.19" });
    expect(src.identity).toMatch(/^tree:[0-9a-f]{64}$/);
    expect(treeIdentity(tree)).toBe(src.identity);
    // A symlink's target text is content: retargeting it changes the identity.
    const other = unpackRelease("3.19");
    rmSync(join(other, "compel/include/uapi/asm"));
    execFileSync("ln", ["-s", "../asm/uapi/other", join(other, "compel/include/uapi/asm")]);
    expect(treeIdentity(other)).not.toBe(src.identity);
  });

  it("serves the version asked for, and refuses another in a single command", () => {
    const p = plan(true, "criu.version=3.19", `criu.local_source=${tree}`);
    expect(serving(p)).toMatchObject({ provider: "local-source", from: tree });
    const err = thrown(() => plan(true, "criu.version=4.1", `criu.local_source=${tree}`));
    expect(err.message).toBe(`the local directory ${tree} is CRIU 3.19, not 4.1.1`);
    expect(err.hint).toContain("--criu 3.19");
    // In a matrix the tree only serves the cells of its version.
    const cell = plan(false, "criu.version=4.1", `criu.local_source=${tree}`);
    expect(cell.candidates[0].skip).toContain("is CRIU 3.19, not 4.1.1");
    expect(serving(cell).provider).toBe("debian-source");
    // Without a version, the tree's own.
    const own = plan(true, 'criu.version=""', `criu.local_source=${tree}`);
    expect(own.entry.version).toBe("3.19");
    expect(own.resolved.versionFrom).toBe("local-source");
  });

  it("refuses a directory that is not a CRIU tree and a tarball with two top directories", () => {
    const notCriu = tempDir("crg-notcriu-");
    writeFileSync(join(notCriu, "Makefile"), "all:\n");
    expect(thrown(() => plan(true, "criu.version=3.19", `criu.local_source=${notCriu}`)).message).toBe(
      `criu.local_source ${notCriu} is not a CRIU source tree (no Makefile.versions and criu/ at its top)`,
    );
    const two = join(tempDir("crg-two-"), "two.tar.gz");
    mkdirSync(join(notCriu, "b"));
    execFileSync("tar", ["-czf", two, "-C", join(tree, ".."), "criu-3.19", "-C", notCriu, "b"]);
    expect(thrown(() => plan(true, "criu.version=3.19", `criu.local_source=${two}`)).message).toMatch(
      /two\.tar\.gz has 2 top directories \(criu-3\.19, b\), not one/,
    );
  });

  it("a tarball path is the same content as the mirror's: the same key", () => {
    const p = plan(true, "criu.version=3.19", `criu.local_source=${join(CRIU_TARBALLS, "criu-3.19.tar.gz")}`);
    expect(serving(p)).toMatchObject({
      provider: "local-source",
      identity: "sha256:990cdd147cb670a5d5d14216c2b5c2fc2b9a53ef19396569a6413807ba2a6aa2",
    });
    expect(serving(p).key).toBe(
      serving(plan(true, "criu.version=3.19", `criu.local_mirror=${CRIU_TARBALLS}`)).key,
    );
  });

  it("a git checkout: commit plus tracked changes; untracked files do not count", () => {
    const { dir, head } = gitCheckoutOf("3.19");
    const clean = inspectLocalSource(dir);
    expect(clean).toMatchObject({
      kind: "git",
      version: "3.19",
      commit: head,
      dirty: false,
      identity: `git:${head}`,
    });
    writeFileSync(join(dir, "notes.txt"), "untracked\n");
    mkdirSync(join(dir, "build-output"));
    writeFileSync(join(dir, "build-output/x.o"), "junk");
    expect(inspectLocalSource(dir).identity).toBe(clean.identity);
    execFileSync("sh", ["-c", 'echo "/* more */" >> criu/cr-dump.c'], { cwd: dir });
    const dirty = inspectLocalSource(dir);
    expect(dirty.dirty).toBe(true);
    expect(dirty.identity).toMatch(new RegExp(`^git:${head}\\+[0-9a-f]{16}$`));
    // Staging the same change is the same content.
    git(dir, "add", "criu/cr-dump.c");
    expect(inspectLocalSource(dir).identity).toBe(dirty.identity);
    git(dir, "checkout", "HEAD", "--", "criu/cr-dump.c");
    expect(inspectLocalSource(dir).identity).toBe(clean.identity);
  });

  it("builds from a copy holding only the tracked files, with their changes; the user's tree is untouched", async () => {
    const { dir } = gitCheckoutOf("3.19");
    writeFileSync(join(dir, "untracked.c"), "int x;\n");
    execFileSync("sh", ["-c", 'echo "/* uncommitted */" >> criu/cr-restore.c'], { cwd: dir });
    const p = plan(true, "criu.version=3.19", `criu.local_source=${dir}`);
    const dest = tempDir("crg-obtain-");
    const before = execFileSync("git", ["status", "--porcelain"], { cwd: dir }).toString();
    const { tree: copy, origin } = await obtainCriuSource(
      serving(p) as never,
      p.resolved,
      { cacheRoot, mirror: "", log: () => undefined },
      dest,
      "",
    );
    expect(existsSync(join(copy, "untracked.c"))).toBe(false);
    expect(existsSync(join(copy, ".git"))).toBe(false);
    expect(readFileSync(join(copy, "criu/cr-restore.c"), "utf8")).toContain("/* uncommitted */");
    expect(lstatSync(join(copy, "compel/include/uapi/compel")).isSymbolicLink()).toBe(true);
    expect(origin).toMatchObject({ provider: "local-source", commit: p.resolved.local!.commit });
    expect(execFileSync("git", ["status", "--porcelain"], { cwd: dir }).toString()).toBe(before);
  });
});

describe.skipIf(missingTarballs())("git provider over file://", () => {
  let url: string;
  let checkout: ReturnType<typeof gitCheckoutOf>;
  beforeAll(() => {
    checkout = gitCheckoutOf("3.19");
    const bare = join(tempDir("crg-bare-"), "criu.git");
    git(checkout.dir, "clone", "--quiet", "--bare", checkout.dir, bare);
    url = `file://${bare}`;
  });

  it("resolves a moving ref to a commit before planning; the version comes from the tree", () => {
    const p = plan(true, 'criu.version=""', `criu.git={url: "${url}", ref: criu-dev}`);
    expect(p.resolved.git).toMatchObject({ commit: checkout.head, version: "3.19" });
    expect(serving(p)).toMatchObject({ provider: "git", identity: `git:${checkout.head}` });
    const tag = plan(true, "criu.version=3.19", `criu.git={url: "${url}", ref: v3.19}`);
    expect(serving(tag).identity).toBe(`git:${checkout.tagged}`);
    expect(serving(tag).key).not.toBe(serving(p).key);
    // A commit already fetched resolves without the network (the URL is not asked again).
    const byCommit = plan(
      true,
      "criu.version=3.19",
      `criu.git={url: "file:///nonexistent", ref: ${checkout.head}}`,
    );
    expect(serving(byCommit)).toMatchObject({ provider: "git", identity: `git:${checkout.head}` });
  });

  it("obtains the commit's tree", async () => {
    const p = plan(true, 'criu.version=""', `criu.git={url: "${url}", ref: criu-dev}`);
    const dest = tempDir("crg-git-obtain-");
    const { tree, origin } = await obtainCriuSource(
      serving(p) as never,
      p.resolved,
      { cacheRoot, mirror: "", log: () => undefined },
      dest,
      "",
    );
    expect(readFileSync(join(tree, "criu/cr-check.c"), "utf8")).toContain("/* local work */");
    expect(origin).toMatchObject({ provider: "git", commit: checkout.head });
  });

  it("names a ref that does not exist and a URL that cannot be reached", () => {
    const bad = thrown(() => plan(true, 'criu.version=""', `criu.git={url: "${url}", ref: no-such-branch}`));
    expect(bad.message).toBe(`git ref 'no-such-branch' does not exist in ${url}`);
    const gone = thrown(() =>
      plan(true, 'criu.version=""', 'criu.git={url: "file:///nonexistent/criu.git", ref: criu-dev}'),
    );
    expect(gone.message).toMatch(/^cannot fetch from git URL file:\/\/\/nonexistent\/criu\.git: /);
  });
});

describe.skipIf(missingTarballs())("upstream provider against a loopback server", () => {
  let server: Server;
  let base: string;
  const served: string[] = [];
  const archive = () => readFileSync(join(CRIU_TARBALLS, "criu-3.19.tar.gz"));
  beforeAll(async () => {
    server = createServer((req, res) => {
      served.push(req.url ?? "");
      if (req.url === "/tags/v3.19.tar.gz")
        return void res.writeHead(200, { "content-length": archive().length }).end(archive());
      if (req.url === "/bad/v3.19.tar.gz") {
        const body = Buffer.from(archive());
        body[1000] ^= 0xff; // same size, other bytes
        return void res.writeHead(200, { "content-length": body.length }).end(body);
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server.close());

  it("downloads the real 3.19 archive under its real pin and unpacks it", async () => {
    const p = plan(true, "criu.version=3.19", `criu.upstream_url_base=${base}/tags`);
    const up = serving(p);
    expect(up.provider).toBe("upstream");
    const dest = tempDir("crg-up-");
    const { tree, origin } = await obtainCriuSource(
      up as never,
      p.resolved,
      { cacheRoot, mirror: "", log: () => undefined },
      dest,
      `${base}/tags`,
    );
    expect(served).toContain("/tags/v3.19.tar.gz");
    expect(readFileSync(join(tree, "Makefile.versions"), "utf8")).toMatch(/CRIU_VERSION_MINOR\s*:?=\s*19/);
    expect(origin.identity).toBe("sha256:990cdd147cb670a5d5d14216c2b5c2fc2b9a53ef19396569a6413807ba2a6aa2");
    expect(readdirSync(join(cacheRoot, "downloads"))).toContain("criu-3.19.tar.gz");
  });

  it("refuses a body that does not match the pin, and passes on a 404", async () => {
    rmSync(join(cacheRoot, "downloads"), { recursive: true, force: true });
    const p = plan(true, "criu.version=3.19", `criu.upstream_url_base=${base}/bad`);
    const dest = tempDir("crg-up-bad-");
    await expect(
      obtainCriuSource(
        serving(p) as never,
        p.resolved,
        { cacheRoot, mirror: "", log: () => undefined },
        dest,
        `${base}/bad`,
      ),
    ).rejects.toThrow(/990cdd147cb670a5/);
    const missing = plan(true, "criu.version=3.18", `criu.upstream_url_base=${base}/nothing`);
    await expect(
      obtainCriuSource(
        serving(missing) as never,
        missing.resolved,
        { cacheRoot, mirror: "", log: () => undefined },
        dest,
        `${base}/nothing`,
      ),
    ).rejects.toBeInstanceOf(NotAvailableError);
  });
});

describe("planning is pure over a resolved source", () => {
  it("planCriu gives the same keys for the same resolved input", () => {
    const config = cfg("criu.version=4.1");
    const resolved = resolveCriuSource(config, catalog, { cacheRoot, strict: true });
    const a = planCriu(config, resolved, catalog, patchCatalog);
    const b = planCriu(config, resolved, catalog, patchCatalog);
    expect(a.candidates.map((c) => c.key)).toEqual(b.candidates.map((c) => c.key));
    expect(a.candidates.find((c) => c.provider === "debian-source")!.identity).toBe(
      "sha256:f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe",
    );
  });
});
