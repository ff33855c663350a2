/**
 * The image stage end to end: a fresh bookworm image with CRIU 3.17.1 injected by one
 * guestfish session, then listed and checksummed from the image by a separate read-only
 * guestfish call; an existing (msdos, ext4) image gets CRIU without being changed itself.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crGuest, missingTools } from "../helpers/cli.js";
import { run } from "../../scripts/lib/exec.js";
import {
  GuestfishSession,
  guestfishEnv,
  injectionScript,
  parseChecksums,
} from "../../scripts/image/guestfish.js";
import { makeRawImage } from "../../scripts/image/layout.js";
import { sha256File } from "../../scripts/lib/hash.js";
import { tempDir } from "../helpers/temp.js";

const skip = missingTools(["guestfish", "debootstrap", "sgdisk", "mkfs.ext4", "sfdisk", "blkid"]);

/** A separate, read-only guestfish session: what is really in the image. */
async function readBack(
  image: string,
  device: string,
  paths: string[],
  cat: string[],
): Promise<{ sums: Map<string, string>; files: Map<string, string>; listing: string }> {
  const lines = [`add-ro ${image}`, "run", `mount-ro ${device} /`];
  for (const p of paths) lines.push(`echo SUM ${p}`, `checksum sha256 ${p}`);
  for (const p of cat) lines.push(`echo CAT ${p}`, `cat ${p}`, "echo END-CAT");
  lines.push("echo LS", "ls /usr/libexec/cr-guest");
  const r = await run(["guestfish", "--no-progress-bars"], {
    input: `${lines.join("\n")}\n`,
    timeoutMs: 10 * 60_000,
    env: guestfishEnv(false),
  });
  const sums = new Map<string, string>();
  const files = new Map<string, string>();
  const out = r.stdout.split("\n");
  for (let i = 0; i < out.length; i++) {
    const s = /^SUM (.+)$/.exec(out[i]);
    if (s) sums.set(s[1], out[i + 1].trim());
    const c = /^CAT (.+)$/.exec(out[i]);
    if (c) {
      const end = out.indexOf("END-CAT", i);
      files.set(c[1], out.slice(i + 1, end).join("\n"));
    }
  }
  return { sums, files, listing: r.stdout.slice(r.stdout.indexOf("LS\n") + 3) };
}

describe.skipIf(skip)("image stage (integration)", () => {
  it(
    "makes a fresh image with CRIU 3.17.1 in one guestfish launch; every file reads back",
    { timeout: 40 * 60_000 },
    async () => {
      const r = await crGuest(["image", "--criu", "3.17.1", "--name", "it-3171"], 40 * 60_000);
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(0);
      expect(out).toMatch(/injected and read back: \d+ files, 1 guestfish launch/);
      expect(out).toContain("agent: no agent");
      const image = /image: (\S+) -> (\S+)/.exec(out)![2];
      const meta = JSON.parse(readFileSync(join(image, "..", "metadata.json"), "utf8"));
      expect(meta.guestfish_launches).toBe(1);
      expect(meta.criu.version_in_rootfs).toBe("Version: 3.17.1");
      expect(meta.base).toMatchObject({ kind: "fresh", suite: "bookworm" });
      const paths = meta.injected.map((f: { path: string }) => f.path);
      expect(paths).toEqual(
        expect.arrayContaining([
          "/usr/local/sbin/criu",
          "/usr/libexec/cr-guest/init",
          "/usr/libexec/cr-guest/bin/crg-membarrier",
          "/etc/cr-guest/manifest.json",
        ]),
      );

      const back = await readBack(image, "/dev/sda1", paths, ["/etc/cr-guest/manifest.json"]);
      for (const f of meta.injected) expect(back.sums.get(f.path), f.path).toBe(f.sha256);
      const manifest = JSON.parse(back.files.get("/etc/cr-guest/manifest.json")!);
      expect(manifest.agent).toBe("no agent");
      expect(manifest.criu).toMatchObject({ version: "3.17.1", provider: "debian-binary" });
      expect(manifest.components.find((c: { name: string }) => c.name === "criu").sha256).toBe(
        back.sums.get("/usr/local/sbin/criu"),
      );
      expect(back.listing).toMatch(/run-tests/);

      const again = await crGuest(["image", "--criu", "3.17.1", "--name", "it-3171"], 5 * 60_000);
      expect(again.stdout).toMatch(/\(cached\)/);
    },
  );

  it(
    "an early guestfish session boots while its script is made, then injects it: one launch, files read back",
    { timeout: 20 * 60_000 },
    async () => {
      const dir = tempDir("crg-gf-session-");
      const rootfs = join(dir, "rootfs");
      mkdirSync(join(rootfs, "etc"), { recursive: true });
      mkdirSync(join(rootfs, "usr", "libexec", "cr-guest"), { recursive: true }); // readBack lists it
      writeFileSync(join(rootfs, "etc", "hostname"), "before\n");
      const disk = join(dir, "disk.img");
      await makeRawImage({ rootfs, image: disk, extraMiB: 16 });
      const payload = join(dir, "payload");
      writeFileSync(payload, "made while the appliance booted\n");
      const logFile = join(dir, "guestfish.log");
      const session = new GuestfishSession({ image: disk, timeoutMs: 10 * 60_000, kvm: false, logFile });
      // The script is not known yet: the appliance boots meanwhile.
      await new Promise((r) => setTimeout(r, 2000));
      expect(session.failed).toBeUndefined();
      const script = injectionScript(
        [
          { op: "mkdir", path: "/opt/x" },
          { op: "upload", from: payload, to: "/opt/x/payload", mode: 0o755 },
        ],
        () => "",
        "/dev/sda1",
      );
      expect(script.text).toBe(`run\nmount "/dev/sda1" /\n${script.body}`);
      const result = await session.finish(script.body);
      expect(parseChecksums(result.stdout).get("/opt/x/payload")).toBe(await sha256File(payload));
      // One launch: the log holds guestfish's command once.
      expect(readFileSync(logFile, "utf8").match(/\$ .*guestfish /g)).toHaveLength(1);
      const back = await readBack(disk, "/dev/sda1", ["/opt/x/payload", "/etc/hostname"], []);
      expect(back.sums.get("/opt/x/payload")).toBe(await sha256File(payload));
      expect(back.sums.get("/etc/hostname")).toBe(await sha256File(join(rootfs, "etc", "hostname")));
      // An aborted session (its image is thrown away) ends on its own, cleanly, once its input ends.
      const aborted = new GuestfishSession({ image: disk, timeoutMs: 10 * 60_000, kvm: false });
      await aborted.abort();
      expect(aborted.failed).toBeUndefined();
      expect(() => aborted.finish("")).toThrow(/already closed/);
    },
  );

  it(
    "installs an agent with Kata's units (an ELF placeholder: no real agent can be built offline here)",
    { timeout: 20 * 60_000 },
    async () => {
      const dir = tempDir("crg-agent-");
      const agent = join(dir, "kata-agent");
      copyFileSync("/usr/bin/true", agent);
      const r = await crGuest(
        ["image", "--criu", "3.17.1", "--name", "it-agent", "--agent", agent],
        20 * 60_000,
      );
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(0);
      expect(out).toMatch(/agent: prebuilt/);
      const image = /image: (\S+) -> (\S+)/.exec(out)![2];
      const back = await readBack(
        image,
        "/dev/sda1",
        ["/usr/bin/kata-agent"],
        ["/usr/lib/systemd/system/kata-agent.service", "/etc/cr-guest/manifest.json"],
      );
      expect(back.sums.get("/usr/bin/kata-agent")).toBe(await sha256File(agent));
      expect(back.files.get("/usr/lib/systemd/system/kata-agent.service")).toContain(
        "ExecStart=/usr/bin/kata-agent",
      );
      const manifest = JSON.parse(back.files.get("/etc/cr-guest/manifest.json")!);
      expect(manifest.agent).toMatchObject({ source: "prebuilt", setsid: "unknown (prebuilt)" });
    },
  );

  it(
    "adds CRIU to an existing msdos/ext4 image without changing the original",
    { timeout: 40 * 60_000 },
    async () => {
      const dir = tempDir("crg-base-");
      const rootfs = join(dir, "rootfs");
      for (const d of ["etc", "usr/bin", "usr/local/sbin", "sbin"])
        mkdirSync(join(rootfs, d), { recursive: true });
      writeFileSync(join(rootfs, "etc/os-release"), "ID=kata-like\n");
      const base = join(dir, "kata.img");
      await run(["truncate", "-s", "64M", base], { timeoutMs: 10_000 });
      await run(["sfdisk", "--quiet", base], {
        input: "label: dos\nstart=2048, type=83\n",
        timeoutMs: 10_000,
      });
      await run(
        ["mkfs.ext4", "-q", "-F", "-E", `offset=${2048 * 512}`, "-d", rootfs, base, `${64 * 1024 - 1024}k`],
        { timeoutMs: 60_000 },
      );
      const before = await sha256File(base);

      const r = await crGuest(["image", "--image-base", base, "--name", "it-existing"], 40 * 60_000);
      const out = r.stdout + r.stderr;
      expect(r.exitCode, out).toBe(0);
      expect(await sha256File(base)).toBe(before);
      const image = /image: (\S+) -> (\S+)/.exec(out)![2];
      const meta = JSON.parse(readFileSync(join(image, "..", "metadata.json"), "utf8"));
      expect(meta.base).toMatchObject({ kind: "existing", label: "dos", root_fs: "ext4", dax: false });
      const back = await readBack(
        image,
        "/dev/sda1",
        ["/usr/local/sbin/criu", "/usr/local/lib/cr-guest/strace/strace.bin"],
        ["/etc/os-release"],
      );
      expect(back.sums.get("/usr/local/sbin/criu")).toBe(meta.criu.sha256);
      expect(back.sums.get("/usr/local/lib/cr-guest/strace/strace.bin")).toMatch(/^[0-9a-f]{64}$/);
      expect(back.files.get("/etc/os-release")).toContain("kata-like");

      const missing = await crGuest(
        ["image", "--image-base", join(dir, "nope.img"), "--name", "it-missing"],
        5 * 60_000,
      );
      expect(missing.exitCode).not.toBe(0);
      expect(missing.stderr).toMatch(/base image .*nope\.img does not exist/);
    },
  );
});
