/** The Debian index parsers, on small fixtures shaped like the real archive's files. */
import { afterAll, describe, expect, it } from "vitest";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  clearsignedBody,
  compareDebianVersions,
  loadSuiteIndex,
  parseInReleaseSha256,
  parsePackages,
  parseSources,
  parseStanzas,
} from "../../scripts/lib/debian-mirror.js";
import { UserError } from "../../scripts/lib/errors.js";
import { missingTools } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";

const H = (c: string) => c.repeat(64);
const MIRROR = "http://deb.debian.org/debian/";

const SOURCES = `Package: criu
Binary: criu, libcriu2,
 libcompel1
Version: 4.1.1-1
Files:
 b76fc936ca0591d50d299348b03875e9 2806 criu_4.1.1-1.dsc
Checksums-Sha256:
 ${H("a")} 2806 criu_4.1.1-1.dsc
 ${H("B")} 1021136 criu_4.1.1.orig.tar.xz
 ${H("c")} 12368 criu_4.1.1-1.debian.tar.xz
Directory: pool/main/c/criu
Priority: optional

Package: linux
Version: 6.12.8-1
Checksums-Sha256:
 ${H("d")} 150933284 linux_6.12.8.orig.tar.xz
Directory: pool/main/l/linux

Package: linux
Version: 6.12.38-1
Checksums-Sha256:
 ${H("e")} 151129260 linux_6.12.38.orig.tar.xz
Directory: pool/main/l/linux
`;

const PACKAGES = `Package: criu
Version: 3.17.1-2+deb12u2
Installed-Size: 2558
Architecture: amd64
Depends: python3-protobuf, libc6 (>= 2.34)
Description: checkpoint and restore in userspace
 CRIU is a tool.
 .
 More text.
Filename: pool/main/c/criu/criu_3.17.1-2+deb12u2_amd64.deb
Size: 665668
SHA256: ${H("F")}

Package: libcriu2
Source: criu (3.17.1-2+deb12u2)
Version: 3.17.1-2+deb12u2
Architecture: amd64
Filename: pool/main/c/criu/libcriu2_3.17.1-2+deb12u2_amd64.deb
Size: 100
SHA256: ${H("1")}
`;

const INRELEASE = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Origin: Debian
Suite: stable
Codename: trixie
Date: Sat, 12 Sep 2026 07:55:41 UTC
Acquire-By-Hash: yes
MD5Sum:
 0ec31b144b694650cf847e16912a73dc 10540436 main/source/Sources.xz
SHA256:
 ${H("2")} 57389881 main/source/Sources
 ${H("3")} 10540436 main/source/Sources.xz
 ${H("4")}  8790396 main/binary-amd64/Packages.xz
- -dash-escaped: line
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCAAdFiEE
=abcd
-----END PGP SIGNATURE-----
`;

describe("parseStanzas", () => {
  it("splits paragraphs and joins continuation lines", () => {
    const s = parseStanzas("A: 1\nB: x,\n y\n .\n z\n\n\nA: 2\r\nC:\r\n line\r\n");
    expect(s).toHaveLength(2);
    expect(s[0]).toEqual({ A: "1", B: "x,\ny\n\nz" });
    expect(s[1]).toEqual({ A: "2", C: "\nline" });
  });

  it("treats whitespace-only lines as separators and skips comments", () => {
    const s = parseStanzas("# comment\nA: 1\n  \nA: 2\n");
    expect(s.map((x) => x.A)).toEqual(["1", "2"]);
  });

  it("keeps values with colons and a __proto__ field as plain data", () => {
    const [s] = parseStanzas("Homepage: https://www.criu.org/\n__proto__: evil\n");
    expect(s.Homepage).toBe("https://www.criu.org/");
    expect(Object.hasOwn(s, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).evil).toBeUndefined();
  });

  it("rejects a line that is no field", () => {
    expect(() => parseStanzas("A: 1\nnot a field\n")).toThrow(/malformed deb822 line/);
  });
});

describe("InRelease", () => {
  it("takes the signed body, undoing dash-escaping", () => {
    const body = clearsignedBody(INRELEASE);
    expect(body.startsWith("Origin: Debian\n")).toBe(true);
    expect(body).toContain("\n-dash-escaped: line\n");
    expect(body).not.toContain("PGP");
    expect(clearsignedBody("Origin: Debian\n")).toBe("Origin: Debian\n");
  });

  it("finds the SHA256 entry of an index path, armored or not", () => {
    expect(parseInReleaseSha256(INRELEASE, "main/source/Sources.xz")).toEqual({
      sha256: H("3"),
      size: 10540436,
    });
    expect(parseInReleaseSha256(INRELEASE, "main/binary-amd64/Packages.xz")).toEqual({
      sha256: H("4"),
      size: 8790396,
    });
    expect(parseInReleaseSha256(clearsignedBody(INRELEASE), "main/source/Sources")?.size).toBe(57389881);
    expect(parseInReleaseSha256(INRELEASE, "main/binary-mips/Packages.xz")).toBeUndefined();
    expect(parseInReleaseSha256("Origin: Debian\n", "main/source/Sources.xz")).toBeUndefined();
  });
});

describe("parseSources", () => {
  it("reads every version with files from Checksums-Sha256 and pool URLs", () => {
    const all = parseSources(SOURCES, MIRROR);
    expect(all.map((p) => `${p.package} ${p.version}`)).toEqual([
      "criu 4.1.1-1",
      "linux 6.12.8-1",
      "linux 6.12.38-1",
    ]);
    expect(all[0]).toEqual({
      package: "criu",
      version: "4.1.1-1",
      directory: "pool/main/c/criu",
      files: [
        {
          name: "criu_4.1.1-1.dsc",
          size: 2806,
          sha256: H("a"),
          url: "http://deb.debian.org/debian/pool/main/c/criu/criu_4.1.1-1.dsc",
        },
        {
          name: "criu_4.1.1.orig.tar.xz",
          size: 1021136,
          sha256: H("b"),
          url: "http://deb.debian.org/debian/pool/main/c/criu/criu_4.1.1.orig.tar.xz",
        },
        {
          name: "criu_4.1.1-1.debian.tar.xz",
          size: 12368,
          sha256: H("c"),
          url: "http://deb.debian.org/debian/pool/main/c/criu/criu_4.1.1-1.debian.tar.xz",
        },
      ],
    });
  });

  it("rejects a malformed checksum line", () => {
    expect(() =>
      parseSources("Package: x\nVersion: 1\nDirectory: pool/x\nChecksums-Sha256:\n zz 1 x.dsc\n", MIRROR),
    ).toThrow(/malformed Checksums-Sha256/);
  });
});

describe("parsePackages", () => {
  it("reads binary stanzas with URL, size, sha256, depends and source", () => {
    const [criu, lib] = parsePackages(PACKAGES, MIRROR);
    expect(criu).toEqual({
      package: "criu",
      version: "3.17.1-2+deb12u2",
      architecture: "amd64",
      filename: "pool/main/c/criu/criu_3.17.1-2+deb12u2_amd64.deb",
      url: "http://deb.debian.org/debian/pool/main/c/criu/criu_3.17.1-2+deb12u2_amd64.deb",
      size: 665668,
      sha256: H("f"),
      depends: "python3-protobuf, libc6 (>= 2.34)",
    });
    expect(lib.source).toBe("criu (3.17.1-2+deb12u2)");
    expect(lib.depends).toBe("");
  });

  it("rejects a stanza without SHA256", () => {
    expect(() =>
      parsePackages("Package: x\nVersion: 1\nArchitecture: all\nFilename: pool/x.deb\nSize: 1\n", MIRROR),
    ).toThrow(/lacks SHA256/);
  });
});

describe("compareDebianVersions", () => {
  const sorted = [
    "1.0~rc1",
    "1.0",
    "1.0-1",
    "1.0-1+deb12u1",
    "1.0a",
    "1.0.1",
    "1.2",
    "1.10",
    "6.12.8-1",
    "6.12.38-1",
    "6.12.107-1",
    "1:0.1",
  ];
  it("orders like dpkg", () => {
    for (let i = 0; i < sorted.length - 1; i++) {
      expect(compareDebianVersions(sorted[i], sorted[i + 1]), `${sorted[i]} < ${sorted[i + 1]}`).toBeLessThan(
        0,
      );
      expect(compareDebianVersions(sorted[i + 1], sorted[i])).toBeGreaterThan(0);
    }
    expect(compareDebianVersions("0:1.0-1", "1.0-1")).toBe(0);
    expect(compareDebianVersions("1.01", "1.1")).toBe(0);
    expect([...sorted].reverse().sort(compareDebianVersions)).toEqual(sorted);
  });
});

const dirs: string[] = [];
const tmp = (prefix: string) => {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("loadSuiteIndex error paths (local mirror, no network)", () => {
  it("names an unknown suite", async () => {
    const mirror = tmp("crg-mirror-");
    const err = await loadSuiteIndex({
      mirror,
      suite: "nosuch",
      cacheDir: join(mirror, "cache"),
      kind: "source",
      timeoutMs: 10_000,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain("unknown Debian suite nosuch");
  });

  it("rejects an invalid suite or architecture name before any I/O", async () => {
    const cacheDir = tmp("crg-dmcache-");
    await expect(
      loadSuiteIndex({ mirror: "/nonexistent", suite: "../etc", cacheDir, kind: "source" }),
    ).rejects.toThrow(/invalid Debian suite/);
    await expect(
      loadSuiteIndex({ mirror: "/nonexistent", suite: "trixie", cacheDir, kind: { binaryArch: "a/b" } }),
    ).rejects.toThrow(/invalid Debian architecture/);
  });

  it.skipIf(missingTools(["gpgv"]))("refuses an InRelease whose signature does not verify", async () => {
    const mirror = tmp("crg-mirror-");
    mkdirSync(join(mirror, "dists", "trixie"), { recursive: true });
    writeFileSync(join(mirror, "dists", "trixie", "InRelease"), INRELEASE);
    const err = await loadSuiteIndex({
      mirror,
      suite: "trixie",
      cacheDir: join(mirror, "cache"),
      kind: "source",
      timeoutMs: 10_000,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/OpenPGP signature of the Debian trixie InRelease .* did not verify/);
    expect(err.hint).toContain("gpgv");
    expect(err.hint).toContain("debian-archive-keyring");
  });
});
