import { describe, expect, it } from "vitest";
import { buildFlags, criuBuildDeps, parseLdd } from "../../scripts/criu/build-recipe.js";
import { chrootArgv, chrootKey, debootstrapArgs } from "../../scripts/lib/chroot.js";
import { dependsNames, providerIdentity } from "../../scripts/criu/sources.js";
import { loadCriuCatalog, resolveCriuVersion } from "../../scripts/criu/catalog.js";
import { planCriu } from "../../scripts/criu/stage.js";
import { loadConfig } from "../../scripts/lib/config.js";

describe("CRIU build recipe", () => {
  it("static builds leave gnutls and nftables out, pass LDFLAGS through the environment", () => {
    expect(criuBuildDeps("static")).not.toContain("libnftables-dev");
    expect(criuBuildDeps("dynamic")).toEqual(expect.arrayContaining(["libnftables-dev", "libgnutls28-dev"]));
    const s = buildFlags("static", "4.1.1", 12);
    expect(s.makeArgs).toEqual(["NO_GNUTLS=1"]);
    expect(s.env.LDFLAGS).toBe("-L/cr-guest-static");
    expect(buildFlags("static", "3.17.1", 12).env.LDFLAGS).toBe("-L/cr-guest-static -Wl,-z,muldefs");
    expect(buildFlags("dynamic", "3.17.1", 14).makeArgs).toEqual(["WERROR=0"]);
    expect(buildFlags("dynamic", "4.1.1", 14)).toEqual({ env: {}, makeArgs: [] });
  });

  it("reads ldd output", () => {
    const libs = parseLdd("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n");
    expect(libs).toEqual([
      { name: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6" },
      { name: "ld-linux-x86-64.so.2", path: "/lib64/ld-linux-x86-64.so.2" },
    ]);
  });
});

describe("chroots", () => {
  it("are keyed by suite and package set, not package order", () => {
    const m = "http://deb.debian.org/debian";
    expect(chrootKey("bookworm", ["b", "a"], m)).toBe(chrootKey("bookworm", ["a", "b", "a"], m));
    expect(chrootKey("trixie", ["a"], m)).not.toBe(chrootKey("bookworm", ["a"], m));
  });
  it("debootstrap includes packages; commands enter through a private mount namespace with argv intact", () => {
    expect(debootstrapArgs("sid", "/r", ["b", "a"], "M")).toEqual(["debootstrap", "--variant=minbase", "--include=a,b", "sid", "/r", "M"]);
    const argv = chrootArgv("/root dir", ["criu", "--version"], "/build");
    expect(argv.slice(0, 5)).toEqual(["unshare", "--mount", "--propagation", "private", "--fork"]);
    expect(argv.slice(-5)).toEqual(["cr-guest-chroot", "/root dir", "/build", "criu", "--version"]);
  });
});

describe("CRIU providers and plan", () => {
  const catalog = loadCriuCatalog();
  const ctx = { cacheRoot: "/tmp/x", mirror: "M", localSource: "", log: () => undefined };
  it("know their identity without network, or why they cannot serve", () => {
    const v411 = resolveCriuVersion("4.1.1", catalog);
    expect(providerIdentity("debian-source", v411, ctx)).toMatch(/^4\.1\.1-1:f80a66/);
    expect(providerIdentity("upstream", v411, ctx)).toBeUndefined(); // no pinned sha256
    expect(providerIdentity("debian-binary", resolveCriuVersion("3.17.1", catalog), ctx)).toBe("bookworm:3.17.1-2+deb12u2");
    expect(providerIdentity("debian-source", resolveCriuVersion("3.19", catalog), ctx)).toBeUndefined();
  });
  it("reads Depends into package names", () => {
    expect(dependsNames("libc6 (>= 2.34), libnet1 (>= 1.1.2.1), python3:any, iproute2 | busybox")).toEqual(["libc6", "libnet1", "python3", "iproute2"]);
  });
  it("plans keys that change with patches and link mode, and skips a binary when patching", () => {
    const base = loadConfig({ set: ["criu.version=4.1", "criu.providers=[debian-source, debian-binary]"] });
    const plain = planCriu(base, ctx, catalog);
    expect(plain.entry.version).toBe("4.1.1");
    expect(plain.guestSuite).toBe("trixie");
    const patched = planCriu(loadConfig({ set: ["criu.version=4.1", "criu.providers=[debian-source, debian-binary]", "criu.patches=[membarrier-probe-nonfatal]"] }), ctx, catalog);
    expect(patched.candidates[0].key).not.toBe(plain.candidates[0].key);
    expect(patched.candidates[1].skip).toBe("a binary package cannot be patched");
    const dynamic = planCriu(loadConfig({ set: ["criu.version=4.1", "criu.link=dynamic"] }), ctx, catalog);
    expect(dynamic.buildSuite("debian-source")).toBe("trixie");
    expect(plain.buildSuite("debian-source")).toBe("bookworm");
  });
});
