import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { classifyBoot, qemuArgs, QEMU } from "../../scripts/lib/qemu.js";
import { accelProbeDue, chooseAccel, hostProbeKernel } from "../../scripts/boot/accel.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { bootPlan } from "../../scripts/kernel/bootable.js";
import {
  buildConfigCheckInitramfs,
  parseConfigCheckConsole,
  END_MARKER,
} from "../../scripts/kernel/boot-check.js";
import { run } from "../../scripts/lib/exec.js";
import { missingTools } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";

describe("QEMU command line", () => {
  it("uses TCG with cx16 off, no reboot, a serial console file and the panic options", () => {
    const args = qemuArgs({
      kernel: "/k",
      append: ["root=PARTUUID=x"],
      accel: "tcg",
      timeoutMs: 1,
      consoleLog: "/c.log",
      endMarker: "M",
      drives: [{ path: "/d.img", readonly: true, serial: "crg-results" }],
    });
    expect(args).toContain("max,cx16=off");
    expect(args).toContain("-no-reboot");
    expect(args).toContain("file:/c.log");
    expect(args[args.indexOf("-append") + 1]).toBe("console=ttyS0 panic=-1 oops=panic root=PARTUUID=x");
    expect(args).toContain("file=/d.img,format=raw,if=none,id=d0,readonly=on");
    expect(args).toContain("virtio-blk-pci,drive=d0,serial=crg-results");
    expect(
      qemuArgs({ kernel: "/k", append: [], accel: "kvm", timeoutMs: 1, consoleLog: "/c", endMarker: "M" }),
    ).toContain("host");
    // One socket per vCPU: SeaBIOS's MP table lists one processor per socket, and a guest
    // kernel without ACPI booted with "-smp 2" alone saw one CPU.
    const smp = qemuArgs({
      kernel: "/k",
      append: [],
      accel: "tcg",
      timeoutMs: 1,
      consoleLog: "/c",
      endMarker: "M",
      cpus: 3,
    });
    expect(smp[smp.indexOf("-smp") + 1]).toBe("3,sockets=3,cores=1,threads=1");
    // An entropy source as Kata gives its guests: a virtio-rng device fed by the host's urandom.
    expect(args[args.indexOf("-object") + 1]).toBe("rng-random,id=rng0,filename=/dev/urandom");
    expect(args).toContain("virtio-rng-pci,rng=rng0");
  });

  it("boots from NVMe when the kernel builds only that in (Debian's cloud kernel), with a serial per disk", () => {
    const args = qemuArgs({
      kernel: "/k",
      append: [],
      accel: "tcg",
      timeoutMs: 1,
      consoleLog: "/c",
      endMarker: "M",
      bus: "nvme",
      drives: [{ path: "/root.img", snapshot: true }, { path: "/results.img" }],
    });
    expect(args).toContain("nvme,drive=d0,serial=crg0");
    expect(args).toContain("nvme,drive=d1,serial=crg1");
    expect(args.join(" ")).not.toContain("virtio-blk");
  });
});

describe("which kernels can boot the image (no initrd)", () => {
  const base = { CONFIG_VIRTIO_PCI: "y", CONFIG_PCI: "y", CONFIG_EXT4_FS: "y", CONFIG_DEVTMPFS: "y" };
  const plan = (o: Record<string, string>) => bootPlan(new Map(Object.entries({ ...base, ...o })));
  it("virtio block first, NVMe when virtio block is a module, else the cell is not booted", () => {
    expect(plan({ CONFIG_VIRTIO_BLK: "y", CONFIG_BLK_DEV_NVME: "y" })).toEqual({
      bus: "virtio",
      blockers: [],
    });
    // Debian's trixie cloud kernel (6.12.117+deb13-cloud-amd64): VIRTIO_BLK=m, BLK_DEV_NVME=y.
    expect(plan({ CONFIG_VIRTIO_BLK: "m", CONFIG_BLK_DEV_NVME: "y" })).toEqual({ bus: "nvme", blockers: [] });
    const none = plan({ CONFIG_VIRTIO_BLK: "m", CONFIG_BLK_DEV_NVME: "m", CONFIG_EXT4_FS: "m" });
    expect(none.bus).toBeUndefined();
    expect(none.blockers.join("; ")).toMatch(
      /CONFIG_VIRTIO_BLK=m \/ CONFIG_BLK_DEV_NVME=m .*; CONFIG_EXT4_FS=m/,
    );
  });
});

describe("boot classification", () => {
  it("tells test results from infrastructure failures", () => {
    expect(classifyBoot(`x\n${END_MARKER}\n`, END_MARKER, false, 0, "").status).toBe("ok");
    expect(
      classifyBoot(
        "[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root\n",
        END_MARKER,
        false,
        0,
        "",
      ),
    ).toEqual({ status: "panic", reason: "[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root" });
    expect(classifyBoot("traps: double fault\n", END_MARKER, false, 0, "").status).toBe("oops");
    expect(classifyBoot("booting...\n", END_MARKER, true, null, "").status).toBe("timeout");
    expect(classifyBoot("", END_MARKER, false, 1, "qemu: could not open kernel").status).toBe("qemu-error");
    expect(classifyBoot("init exited\n", END_MARKER, false, 0, "").status).toBe("no-marker");
  });
});

describe("config-check initramfs", () => {
  it("parses the guest's report among kernel noise", () => {
    const console = `[    0.7] Run /init as init process\r\nCRG-BOOT uname=6.12.107\r\nCRG-CONFIG CONFIG_MEMBARRIER=y\n[ 0.8] random: crng init done\nCRG-CONFIG CONFIG_TUN=n\nCRG-CONFIG CONFIG_LOCALVERSION=""\n${END_MARKER}\n`;
    const p = parseConfigCheckConsole(console);
    expect(p).toEqual({
      kernelRelease: "6.12.107",
      configGz: true,
      done: true,
      values: { CONFIG_MEMBARRIER: "y", CONFIG_TUN: "n", CONFIG_LOCALVERSION: '""' },
    });
    expect(parseConfigCheckConsole("CRG-NO-CONFIG-GZ\n").configGz).toBe(false);
  });

  it.skipIf(missingTools(["cpio", "busybox"]))("holds /init, busybox and the requested symbols", async () => {
    const dir = tempDir("crg-initramfs-");
    const cpio = await buildConfigCheckInitramfs({ dir, symbols: ["CONFIG_MEMBARRIER", "CONFIG_TUN"] });
    const list = (await run(["cpio", "-t", "--quiet", "-F", cpio], { timeoutMs: 10_000 })).stdout.split("\n");
    expect(list).toEqual(expect.arrayContaining(["init", "bin/busybox", "bin/sh", "bin/zcat"]));
    const init = (
      await run(["cpio", "-i", "--quiet", "--to-stdout", "-F", cpio, "init"], { timeoutMs: 10_000 })
    ).stdout;
    expect(init).toContain("for sym in CONFIG_MEMBARRIER CONFIG_TUN; do");
    expect(init).toContain(END_MARKER);
  });
});

describe("the accelerator probe", () => {
  it.skipIf(missingTools(["qemu-system-x86_64"]))(
    "boots started together ask once, and a cached verdict builds no probe initramfs",
    async () => {
      const cache = tempDir("crg-accel-");
      const version = (await run([QEMU, "--version"], { timeoutMs: 10_000 })).stdout.split("\n")[0];
      mkdirSync(join(cache, "boot-check"));
      writeFileSync(
        join(cache, "boot-check", "kvm-probe.json"),
        JSON.stringify({ version, accel: "tcg", reason: "KVM probe failed (a test)" }),
      );
      const config = loadConfig({ set: [`cache_dir=${cache}`, "boot.accel=auto"] });
      // A matrix starts its boots together; a kernel that does not exist is never booted here.
      const got = await Promise.all([1, 2, 3].map(() => chooseAccel(config, join(cache, "no-such-vmlinuz"))));
      expect(new Set(got.map((g) => g.accel))).toEqual(new Set(["tcg"]));
      expect(readdirSync(join(cache, "boot-check"))).toEqual(["kvm-probe.json"]);
    },
  );
});

describe("a probe before our kernel exists", () => {
  it("probes with the newest readable /boot/vmlinuz-*, and with none when /boot has none", () => {
    const boot = tempDir("crg-boot-");
    expect(hostProbeKernel(boot)).toBeUndefined();
    expect(hostProbeKernel(join(boot, "missing"))).toBeUndefined();
    for (const n of [
      "vmlinuz-6.1.0-9-amd64",
      "vmlinuz-6.1.0-57-amd64",
      "vmlinuz-6.10.0-1-amd64",
      "config-6.12.0-1-amd64",
      "vmlinuz",
      "vmlinuz.old",
    ])
      writeFileSync(join(boot, n), "");
    // Numeric order: 57 after 9, 6.10 after 6.1; the unversioned links and other files are not kernels.
    expect(hostProbeKernel(boot)).toBe(join(boot, "vmlinuz-6.10.0-1-amd64"));
  });

  it.skipIf(missingTools(["qemu-system-x86_64"]))(
    "is due only with boot.accel auto, /dev/kvm there and no verdict cached for this QEMU",
    async () => {
      const cache = tempDir("crg-accel-due-");
      const auto = loadConfig({ set: [`cache_dir=${cache}`, "boot.accel=auto"] });
      expect(await accelProbeDue(loadConfig({ set: [`cache_dir=${cache}`, "boot.accel=tcg"] }))).toBe(false);
      expect(await accelProbeDue(auto)).toBe(existsSync("/dev/kvm") && !process.env.CR_GUEST_ACCEL);
      const version = (await run([QEMU, "--version"], { timeoutMs: 10_000 })).stdout.split("\n")[0];
      mkdirSync(join(cache, "boot-check"));
      writeFileSync(
        join(cache, "boot-check", "kvm-probe.json"),
        JSON.stringify({ version: "QEMU emulator version 1.0", accel: "tcg", reason: "another QEMU" }),
      );
      expect(await accelProbeDue(auto)).toBe(existsSync("/dev/kvm") && !process.env.CR_GUEST_ACCEL);
      writeFileSync(
        join(cache, "boot-check", "kvm-probe.json"),
        JSON.stringify({ version, accel: "tcg", reason: "this QEMU" }),
      );
      expect(await accelProbeDue(auto)).toBe(false);
    },
  );
});
