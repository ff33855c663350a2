import { describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  criuGuestPath,
  GUEST_PATHS,
  guestManifest,
  imageKey,
  imageSeconds,
  injectionOps,
  runnerFiles,
  withParentDirs,
  type RunnerFile,
} from "../../scripts/image/stage.js";
import { injectionScript, parseChecksums } from "../../scripts/image/guestfish.js";
import { guestPackages, GUEST_BASE_PACKAGES, parseLdd } from "../../scripts/lib/rootfs.js";
import { chooseRoot } from "../../scripts/image/inspect.js";
import { planLayout } from "../../scripts/image/layout.js";
import { loadConfig } from "../../scripts/lib/config.js";
import type { CriuMetadata } from "../../scripts/criu/stage.js";
import { tempDir } from "../helpers/temp.js";

const runner: RunnerFile[] = [
  { path: "init", sha256: "a".repeat(64), mode: 0o755 },
  { path: "scenarios/simple-process.sh", sha256: "b".repeat(64), mode: 0o644 },
];
const base = {
  criu: "/c/criu",
  runner: { dir: "/r", files: runner },
  helpers: { dir: "/h", names: ["crg-tcp"] },
  manifest: "/m/manifest.json",
};

describe("image plan", () => {
  it("puts every component where the guest expects it, parents first", () => {
    const ops = injectionOps({ ...base, agent: "/a/kata-agent" });
    const uploads = ops.filter((o) => o.op === "upload").map((o) => (o as { to: string }).to);
    expect(uploads).toContain(GUEST_PATHS.criu);
    expect(uploads).toContain("/usr/libexec/cr-guest/scenarios/simple-process.sh");
    expect(uploads).toContain("/usr/libexec/cr-guest/bin/crg-tcp");
    expect(uploads).toContain("/usr/bin/kata-agent");
    expect(uploads).toContain(GUEST_PATHS.manifest);
    const writes = ops.filter((o) => o.op === "write").map((o) => o as { to: string; content: string });
    expect(writes.find((w) => w.to.endsWith("kata-agent.service"))?.content).toContain(
      "ExecStart=/usr/bin/kata-agent",
    );
    const links = ops.filter((o) => o.op === "symlink") as { target: string; link: string }[];
    expect(links).toContainEqual({
      op: "symlink",
      target: "/usr/lib/systemd/system/kata-containers.target",
      link: "/etc/systemd/system/basic.target.wants/kata-containers.target",
    });
    // The init's legacy iptables: the plain names, made in the image rather than at each boot.
    expect(links).toContainEqual({
      op: "symlink",
      target: "/usr/sbin/iptables-legacy-restore",
      link: "/usr/libexec/cr-guest/iptables-legacy/iptables-restore",
    });
    expect(
      links
        .filter((l) => l.link.startsWith("/usr/libexec/cr-guest/iptables-legacy/"))
        .map((l) => l.link.split("/").at(-1))
        .sort(),
    ).toEqual([
      "ip6tables",
      "ip6tables-restore",
      "ip6tables-save",
      "iptables",
      "iptables-restore",
      "iptables-save",
    ]);
    // Every directory is made before anything is put into it.
    const firstUpload = ops.findIndex((o) => o.op !== "mkdir");
    const mkdirs = ops.slice(0, firstUpload).map((o) => (o as { path: string }).path);
    expect(mkdirs).toEqual(
      expect.arrayContaining([
        "/usr/local/sbin",
        "/usr/libexec/cr-guest/scenarios",
        "/etc/cr-guest",
        "/etc/systemd/system/basic.target.wants",
      ]),
    );
    expect(ops.slice(firstUpload).some((o) => o.op === "mkdir")).toBe(false);
  });

  it("without an agent: no agent files, and the manifest says so", () => {
    const ops = injectionOps(base);
    expect(ops.some((o) => (o as { to?: string }).to === "/usr/bin/kata-agent")).toBe(false);
    // The guest contract travels with the runner, generated from the host's module.
    const contract = ops.find((o) => (o as { to?: string }).to === "/usr/libexec/cr-guest/contract.env") as {
      content: string;
    };
    expect(contract.content).toMatch(/^RESULTS_MARKER='CRGUEST-RESULTS-V1'$/m);
    expect(contract.content).toMatch(/^OUTPUT_OFFSET_MIB='8'$/m);
    const config = loadConfig();
    const criu = {
      version: "3.17.1",
      provider: "debian-binary",
      link: "debian-binary",
      patches: [],
      criu: { sha256: "c".repeat(64), bytes: 1 },
    } as unknown as CriuMetadata;
    const m = guestManifest(
      "k",
      config,
      { kind: "fresh", suite: "bookworm", packages: [], rootfs_key: "r" },
      criu,
      undefined,
      runner,
    );
    expect(m.agent).toBe("no agent");
    expect(m.components.map((c) => c.name)).toEqual([
      "criu",
      "runner/init",
      "runner/scenarios/simple-process.sh",
    ]);
    expect(m.criu.version).toBe("3.17.1");
  });

  it("a migration image holds both CRIUs by version, in its key and its manifest", () => {
    const a = {
      version: "4.1.1",
      provider: "upstream",
      link: "static",
      patches: [],
      criu: { sha256: "a".repeat(64), bytes: 1 },
    } as unknown as CriuMetadata;
    const b = {
      version: "4.2.1",
      provider: "upstream",
      link: "static",
      patches: [{ name: "membarrier-probe-nonfatal", sha256: "p" }],
      criu: { sha256: "b".repeat(64), bytes: 1 },
    } as unknown as CriuMetadata;
    expect(criuGuestPath(b)).toBe("/usr/local/lib/cr-guest/criu/4.2.1+membarrier-probe-nonfatal/criu");
    const ops = injectionOps({
      ...base,
      criuByVersion: [
        { from: "/a/criu", to: criuGuestPath(a) },
        { from: "/b/criu", to: criuGuestPath(b) },
      ],
    });
    const uploads = ops.filter((o) => o.op === "upload").map((o) => (o as { to: string }).to);
    expect(uploads).toEqual(
      expect.arrayContaining([
        GUEST_PATHS.criu,
        "/usr/local/lib/cr-guest/criu/4.1.1/criu",
        "/usr/local/lib/cr-guest/criu/4.2.1+membarrier-probe-nonfatal/criu",
      ]),
    );
    const m = guestManifest(
      "k",
      loadConfig(),
      { kind: "fresh", suite: "trixie", packages: [], rootfs_key: "r" },
      a,
      undefined,
      runner,
      [a, b],
    );
    expect(
      m.components.filter((c) => c.name.startsWith("criu ")).map((c) => [c.name, c.path, c.sha256[0]]),
    ).toEqual([
      ["criu 4.1.1", "/usr/local/lib/cr-guest/criu/4.1.1/criu", "a"],
      [
        "criu 4.2.1+membarrier-probe-nonfatal",
        "/usr/local/lib/cr-guest/criu/4.2.1+membarrier-probe-nonfatal/criu",
        "b",
      ],
    ]);
    const parts = { base: "x", criuSha: "a", agentSha: null, runner, helpers: [], freeMiB: 1 };
    expect(imageKey({ ...parts, moreCriu: ["4.1.1:a", "4.2.1:b"] })).not.toBe(imageKey(parts));
  });

  it("one guestfish script does every operation and reads each file back", () => {
    const ops = withParentDirs(injectionOps(base));
    const script = injectionScript(ops, () => "/tmp/x");
    expect(script.text.match(/^run$/gm)).toHaveLength(1);
    expect(script.checksummed).toContain(GUEST_PATHS.criu);
    for (const p of script.checksummed) expect(script.text).toContain(`checksum sha256 "${p}"`);
    const sums = parseChecksums(`CRG-SUM ${GUEST_PATHS.criu}\n${"d".repeat(64)}\nnoise\n`);
    expect(sums.get(GUEST_PATHS.criu)).toBe("d".repeat(64));
  });

  it("the cache key follows every input", () => {
    const k = {
      base: { fresh: "bookworm" },
      criuSha: "1",
      agentSha: null,
      runner,
      helpers: ["crg-tcp:1"],
      freeMiB: 1024,
    };
    const key = imageKey(k);
    expect(imageKey({ ...k })).toBe(key);
    expect(imageKey({ ...k, criuSha: "2" })).not.toBe(key);
    expect(imageKey({ ...k, agentSha: "x" })).not.toBe(key);
    expect(imageKey({ ...k, runner: [{ ...runner[0], sha256: "e".repeat(64) }, runner[1]] })).not.toBe(key);
    expect(imageKey({ ...k, helpers: ["crg-tcp:2"] })).not.toBe(key);
    expect(imageKey({ ...k, base: { fresh: "trixie" } })).not.toBe(key);
  });

  it("metadata's seconds come from the build's phases: the disk of an existing base is its copy and strace, a prepared base's its own", () => {
    const t = (name: string, seconds: number) => ({ name, seconds, status: "done" as const });
    const fresh = [
      t("rootfs", 40),
      t("criu-runs", 0.5),
      t("disk", 3),
      t("script", 1),
      t("inject", 9),
      t("read-back", 0.1),
    ];
    expect(imageSeconds(fresh)).toEqual({ rootfs: 40, image: 3, inject: 9 });
    expect(imageSeconds(fresh, { seconds: { rootfs: 55, image: 4 } })).toEqual({
      rootfs: 55,
      image: 4,
      inject: 9,
    });
    const existing = [t("copy", 2), t("strace", 5), t("script", 1), t("inject", 8), t("read-back", 0.1)];
    expect(imageSeconds(existing)).toEqual({ rootfs: 0, image: 7, inject: 8 });
  });

  it("the runner is every file under guest/ except the helper sources", async () => {
    const files = await runnerFiles();
    const paths = files.map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(["init", "run-tests", "lib.sh", "scenarios/pidns-init.sh"]));
    expect(paths.some((p) => p.startsWith("helpers/"))).toBe(false);
    expect(files.find((f) => f.path === "init")?.mode).toBe(0o755);
  });

  it("guest packages: the base set plus CRIU's runtime packages, once each, sorted", () => {
    const p = guestPackages(["libnet1", "strace"], ["less"]);
    expect(p).toEqual([...p].sort());
    for (const b of GUEST_BASE_PACKAGES) expect(p).toContain(b);
    expect(p.filter((x) => x === "strace")).toHaveLength(1);
    expect(p).toContain("libnet1");
    expect(p).toContain("less");
  });

  it("reads ldd output, loader included", () => {
    const libs = parseLdd(
      `\tlinux-vdso.so.1 (0x00007ffd)\n\tlibdw.so.1 => /lib/x86_64-linux-gnu/libdw.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n`,
    );
    expect(libs.map((l) => l.path)).toEqual([
      "/lib/x86_64-linux-gnu/libdw.so.1",
      "/lib/x86_64-linux-gnu/libc.so.6",
      "/lib64/ld-linux-x86-64.so.2",
    ]);
  });

  it("refuses images guestfish cannot safely change, and finds xfs or ext4 roots", () => {
    expect(() =>
      chooseRoot("k.img", "dos", [{ index: 1, startBytes: 0, sizeBytes: 1, fsType: "erofs" }]),
    ).toThrow(/erofs is read-only/);
    expect(() =>
      chooseRoot("k.img", "gpt", [
        { index: 1, startBytes: 0, sizeBytes: 1, fsType: "ext4" },
        { index: 2, startBytes: 0, sizeBytes: 1, fsType: "DM_verity_hash" },
      ]),
    ).toThrow(/dm-verity/);
    expect(() =>
      chooseRoot("k.img", "dos", [{ index: 1, startBytes: 0, sizeBytes: 1, fsType: "vfat" }]),
    ).toThrow(/no ext4 or xfs root/);
    expect(
      chooseRoot("k.img", "dos", [{ index: 1, startBytes: 3 << 20, sizeBytes: 1, fsType: "xfs" }]).rootDevice,
    ).toBe("/dev/sda1");
  });

  it("sizes a fresh image for the rootfs plus free space, on MiB boundaries", () => {
    const l = planLayout(300 * 1024 * 1024, 1024);
    expect(l.fsBytes % (1024 * 1024)).toBe(0);
    expect(l.fsBytes).toBeGreaterThan(300 * 1024 * 1024 + 1024 * 1024 * 1024);
    expect(l.imageBytes).toBe(l.fsBytes + 2 * 1024 * 1024);
  });

  it("rejects a bad image name and two agents at once", () => {
    expect(() => loadConfig({ set: ["image.name=../x"] })).toThrow(/not a plain file name/);
    const dir = tempDir("crg-img-");
    writeFileSync(join(dir, "a"), "x");
    expect(() => loadConfig({ set: [`agent.binary=${join(dir, "a")}`, `agent.kata_src=${dir}`] })).toThrow(
      /both set/,
    );
  });
});

describe("errors about a user's base image", () => {
  it("name the user's file, never the working copy", async () => {
    const { namingUserFile } = await import("../../scripts/image/stage.js");
    const { UserError } = await import("../../scripts/lib/errors.js");
    const copy = "/work/images/image/.tmp-abc-1-2/disk.img";
    const err = await namingUserFile(
      () => Promise.reject(new UserError(`${copy}: erofs is read-only`, `convert ${copy} first`)),
      copy,
      "/home/u/kata.img",
    ).catch((e) => e);
    expect(err.message).toBe("/home/u/kata.img: erofs is read-only");
    expect(err.hint).toBe("convert /home/u/kata.img first");
    expect(await namingUserFile(async () => 5, copy, "x")).toBe(5);
  });
});
