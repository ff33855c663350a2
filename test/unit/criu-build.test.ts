import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/temp.js";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildFlags, criuBuildDeps } from "../../scripts/criu/build-recipe.js";
import { parseLdd } from "../../scripts/lib/rootfs.js";
import {
  bootstrapArgs,
  chrootArgv,
  chrootKey,
  dropBootstrapAptOptions,
  EXPIRED_RELEASE_FIX,
  isExpiredReleaseError,
  withExpiredReleaseFix,
} from "../../scripts/lib/chroot.js";
import { CommandError } from "../../scripts/lib/errors.js";
import { guestSuiteFor } from "../../scripts/data/criu-catalog.js";
import { CRIU_PROVIDERS, LINK_MODES } from "../../scripts/lib/config.js";
import { dependsNames } from "../../scripts/criu/sources.js";
import { loadCriuCatalog } from "../../scripts/data/criu-catalog.js";
import { loadPatchCatalog } from "../../scripts/data/criu-patches.js";
import { resolveAndPlanCriu } from "../../scripts/criu/stage.js";
import { loadConfig } from "../../scripts/lib/config.js";

describe("CRIU build recipe", () => {
  it("static builds leave gnutls and nftables out, pass LDFLAGS through the environment", () => {
    expect(criuBuildDeps("static")).not.toContain("libnftables-dev");
    expect(criuBuildDeps("dynamic")).toEqual(expect.arrayContaining(["libnftables-dev", "libgnutls28-dev"]));
    const s = buildFlags("static", "4.1.1", 12);
    expect(s.makeArgs).toEqual(["NO_GNUTLS=1"]);
    expect(s.env.LDFLAGS).toBe("-L/cr-guest-static");
    // Not -Wl,-z,muldefs: CRIU's nmk filters -Wl,% out of LDFLAGS.
    expect(buildFlags("static", "3.17.1", 12).env.LDFLAGS).toBe("-L/cr-guest-static -z muldefs");
    expect(buildFlags("dynamic", "3.17.1", 14).makeArgs).toEqual(["WERROR=0"]);
    expect(buildFlags("dynamic", "4.1.1", 14)).toEqual({ env: {}, makeArgs: [] });
  });

  it("reads ldd output", () => {
    const libs = parseLdd(
      "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n",
    );
    expect(libs).toEqual([
      { name: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6" },
      { name: "ld-linux-x86-64.so.2", path: "/lib64/ld-linux-x86-64.so.2" },
    ]);
  });
});

describe("chroots", () => {
  it("are keyed by suite, package set and bootstrapper, not package order", () => {
    const m = { mirror: "http://deb.debian.org/debian", bootstrap: "mmdebstrap" } as const;
    expect(chrootKey("bookworm", ["b", "a"], m)).toBe(chrootKey("bookworm", ["a", "b", "a"], m));
    expect(chrootKey("trixie", ["a"], m)).not.toBe(chrootKey("bookworm", ["a"], m));
    expect(chrootKey("trixie", ["a"], { ...m, bootstrap: "debootstrap" })).not.toBe(
      chrootKey("trixie", ["a"], m),
    );
  });
  it("are the same artifact with or without accepting an expired Release", () => {
    const m = { mirror: "http://deb.debian.org/debian", bootstrap: "mmdebstrap" } as const;
    expect(chrootKey("sid", ["a"], { ...m, accept_expired_release: true })).toBe(chrootKey("sid", ["a"], m));
  });
  it("leave no apt option of the bootstrap in the chroot", async () => {
    const root = tempDir("crg-chroot-");
    const conf = join(root, "etc/apt/apt.conf.d");
    mkdirSync(conf, { recursive: true });
    // What mmdebstrap 1.3.5 left with the option (and no 99mmdebstrap without any --aptopt).
    writeFileSync(join(conf, "99mmdebstrap"), 'Acquire::Check-Valid-Until "false";\n');
    writeFileSync(join(conf, "70debconf"), "keep\n");
    const m = { mirror: "M", bootstrap: "mmdebstrap" } as const;
    await dropBootstrapAptOptions(root, m);
    expect(existsSync(join(conf, "99mmdebstrap"))).toBe(true); // not ours to remove
    await dropBootstrapAptOptions(root, { ...m, accept_expired_release: true });
    expect(readdirSync(conf)).toEqual(["70debconf"]);
    rmSync(root, { recursive: true });
  });
  // mmdebstrap 1.3.5's output for the mirror's sid on 2026-12-06 (InRelease Valid-Until 2026-11-06).
  const expired = [
    "I: running apt-get update...",
    "Get:1 http://deb.debian.org/debian sid InRelease [193 kB]",
    "E: Release file for http://deb.debian.org/debian/dists/sid/InRelease is expired (invalid since 29d 16h 7min 4s). Updates for this repository will not be applied.",
    "E: apt-get update --error-on=any -oAPT::Status-Fd=<$fd> -oDpkg::Use-Pty=false failed",
    "E: mmdebstrap failed to run",
  ].join("\n");
  it("a bootstrap that fails on an expired Release names debian.accept_expired_release", () => {
    expect(isExpiredReleaseError(expired)).toBe(true);
    expect(isExpiredReleaseError("E: Unable to locate package criu")).toBe(false);
    const fail = (output: string) =>
      new CommandError("command exited with code 25: mmdebstrap", ["mmdebstrap"], 25, false, output);
    const m = { mirror: "M", bootstrap: "mmdebstrap" } as const;
    const named = withExpiredReleaseFix(fail(expired), m) as CommandError;
    expect(named).toBeInstanceOf(CommandError);
    expect(named.hint).toBe(EXPIRED_RELEASE_FIX);
    expect(named.hint).toContain("--set debian.accept_expired_release=true");
    expect(named.exitCode).toBe(3);
    expect(named.message).toBe("command exited with code 25: mmdebstrap");
    // Another failure, or one where the setting is already on, is left as it was.
    const other = fail("E: Unable to locate package criu");
    expect(withExpiredReleaseFix(other, m)).toBe(other);
    const on = fail(expired);
    expect(withExpiredReleaseFix(on, { ...m, accept_expired_release: true })).toBe(on);
  });
  it("both bootstrappers include packages in a private mount namespace; commands enter through one with argv intact", () => {
    const ns = ["unshare", "--mount", "--propagation", "private", "--fork"];
    expect(bootstrapArgs("sid", "/r", ["b", "a"], { mirror: "M", bootstrap: "debootstrap" })).toEqual([
      ...ns,
      "debootstrap",
      "--variant=minbase",
      "--include=a,b",
      "sid",
      "/r",
      "M",
    ]);
    expect(bootstrapArgs("sid", "/r", ["b", "a"], { mirror: "M", bootstrap: "mmdebstrap" })).toEqual([
      ...ns,
      "mmdebstrap",
      "--mode=root",
      "--variant=minbase",
      "--dpkgopt=force-unsafe-io",
      "--include=a,b",
      "sid",
      "/r",
      "M",
    ]);
    expect(
      bootstrapArgs("sid", "/r", [], { mirror: "M", bootstrap: "mmdebstrap" }).filter((a) =>
        a.startsWith("--include"),
      ),
    ).toEqual([]);
    // debian.accept_expired_release: mmdebstrap's apt gets the option; debootstrap never checks.
    const accept = { mirror: "M", accept_expired_release: true } as const;
    expect(bootstrapArgs("sid", "/r", ["a"], { ...accept, bootstrap: "mmdebstrap" })).toEqual([
      ...ns,
      "mmdebstrap",
      "--mode=root",
      "--variant=minbase",
      "--dpkgopt=force-unsafe-io",
      '--aptopt=Acquire::Check-Valid-Until "false"',
      "--include=a",
      "sid",
      "/r",
      "M",
    ]);
    expect(bootstrapArgs("sid", "/r", ["a"], { ...accept, bootstrap: "debootstrap" })).toEqual(
      bootstrapArgs("sid", "/r", ["a"], { mirror: "M", bootstrap: "debootstrap" }),
    );
    const argv = chrootArgv("/root dir", ["criu", "--version"], "/build");
    expect(argv.slice(0, 5)).toEqual(["unshare", "--mount", "--propagation", "private", "--fork"]);
    expect(argv.slice(-5)).toEqual(["cr-guest-chroot", "/root dir", "/build", "criu", "--version"]);
  });
});

describe("CRIU providers and plan", () => {
  const catalog = loadCriuCatalog();
  const patches = loadPatchCatalog();
  const planOf = (...set: string[]) =>
    resolveAndPlanCriu(loadConfig({ set }), { strict: true }, { criu: catalog, criuPatches: patches });
  it("know their identity without network, or why they cannot serve", () => {
    const byProvider = (p: ReturnType<typeof planOf>) =>
      Object.fromEntries(p.candidates.map((c) => [c.provider, c.identity ?? c.skip]));
    const v411 = byProvider(planOf("criu.version=4.1.1"));
    expect(v411["debian-source"]).toBe(
      "sha256:f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe",
    );
    expect(v411.upstream).toBe("sha256:a5338fe696395843543e6e09c85ccaf36614bf172c26fe8506191b7b930d2dae");
    expect(byProvider(planOf("criu.version=3.17.1"))["debian-binary"]).toBe("deb:bookworm:3.17.1-2+deb12u2");
    expect(byProvider(planOf("criu.version=3.19"))["debian-source"]).toBe(
      "Debian does not package CRIU 3.19",
    );
    expect(byProvider(planOf("criu.version=4.2.1")).upstream).toMatch(/^sha256:feffdf46/);
  });
  it("reads Depends into package names", () => {
    expect(dependsNames("libc6 (>= 2.34), libnet1 (>= 1.1.2.1), python3:any, iproute2 | busybox")).toEqual([
      "libc6",
      "libnet1",
      "python3",
      "iproute2",
    ]);
  });
  it("plans keys that change with patches and link mode, and skips a binary when patching", () => {
    const base = ["criu.version=4.1", "criu.providers=[debian-source, debian-binary]"];
    const plain = planOf(...base);
    expect(plain.entry.version).toBe("4.1.1");
    expect(plain.guestSuite).toBe("trixie");
    const patched = planOf(...base, "criu.patches=[membarrier-probe-nonfatal]");
    expect(patched.candidates[0].key).not.toBe(plain.candidates[0].key);
    expect(patched.candidates[1].skip).toBe("a binary package cannot be patched");
    const dynamic = planOf("criu.version=4.1", "criu.link=dynamic");
    expect(dynamic.buildSuite("debian-source")).toBe("trixie");
    expect(plain.buildSuite("debian-source")).toBe("bookworm");
  });
  it("give every provider of every version and link mode its guest suite (Debian's binary is dynamic)", () => {
    for (const version of catalog.versions.keys())
      for (const link of LINK_MODES) {
        const set = [`criu.version=${version}`, `criu.link=${link}`];
        const p = planOf(...set);
        for (const provider of CRIU_PROVIDERS) {
          const kind = provider === "debian-binary" ? "debian-binary" : link;
          expect(p.guestSuiteOf(provider), `${version} ${link} ${provider}`).toBe(
            guestSuiteFor(p.entry, catalog, kind, loadConfig({ set }).criu),
          );
        }
        const serving = p.candidates.find((c) => c.key);
        expect(p.guestSuite, `${version} ${link}`).toBe(p.guestSuiteOf(serving?.provider ?? "upstream"));
      }
    // The case: a static 4.2.1 from sid's orig tarball, built in bookworm, runs in trixie.
    const v421 = planOf("criu.version=4.2");
    expect(v421.guestSuite).toBe("trixie");
    expect(v421.candidates.find((c) => c.key)?.provider).toBe("debian-source");
    expect(v421.buildSuite("debian-source")).toBe("bookworm");
    expect(v421.guestSuiteOf("debian-binary")).toBe("sid");
    // 3.17.1's serving provider is Debian's bookworm binary: bookworm, whatever criu.link says.
    expect(planOf("criu.version=3.17.1").guestSuite).toBe("bookworm");
    expect(planOf("criu.version=4.2", "criu.link=dynamic").guestSuite).toBe("sid");
  });
  it("key a static build by where it is built, never by its guest suite", () => {
    const key = (...set: string[]) => planOf("criu.version=4.2", ...set).candidates.find((c) => c.key)!.key;
    expect(key("criu.guest_suite=sid")).toBe(key());
    expect(key("criu.static_guest_suite=sid")).toBe(key());
    expect(key("criu.static_build_suite=trixie")).not.toBe(key());
    // A dynamic build is made in its guest suite: that suite is in its key.
    expect(key("criu.link=dynamic", "criu.guest_suite=trixie")).not.toBe(key("criu.link=dynamic"));
  });
  it("source builds of 3.17.1 carry Debian's patches in their key; the binary does not", () => {
    const p = planOf("criu.version=3.17.1");
    expect(p.resolved.debianPatches).toMatchObject({
      archive: "criu_3.17.1-2+deb12u2.debian.tar.xz",
      sha256: expect.stringMatching(/^bb1a4b2c/),
    });
    expect(p.resolved.debianPatches!.names.slice(0, 2)).toEqual([
      "criu-fix-conflicting-headers",
      "mount-add-definition-for-FSOPEN_CLOEXEC",
    ]);
    expect(planOf("criu.version=4.1.1").resolved.debianPatches).toBeUndefined();
  });
});
