/**
 * QEMU runs with a host deadline, always. KVM only when a probe boot really works (here
 * /dev/kvm exists but KVM hangs or aborts), else TCG with `-cpu max,cx16=off` (6.12 guests
 * under QEMU 7.2 TCG with plain `-cpu max` crash at random). Results are classified so that
 * infrastructure failures (timeout, panic, oops, QEMU errors) never pass for test results.
 */
import { writeAtomic } from "./fs-atomic.js";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { UserError } from "./errors.js";
import { run } from "./exec.js";
import { findInPath } from "./host-tools.js";

export type Accel = "kvm" | "tcg";

export interface BootResult {
  status: "ok" | "timeout" | "panic" | "oops" | "qemu-error" | "no-marker";
  seconds: number;
  consoleLog: string;
  console: string;
  exitCode: number | null;
  reason: string;
  /** Seconds from QEMU start until the `started` marker was first seen (500 ms resolution). */
  startedAfter?: number;
  /** Seconds from QEMU start to the end marker on the console (polled every 0.5 s). */
  endedAfter?: number;
}

export interface BootOptions {
  kernel: string;
  initrd?: string;
  /** snapshot: writes go to a temporary overlay, the image file stays as it is. */
  drives?: { path: string; format?: "raw"; readonly?: boolean; snapshot?: boolean; serial?: string }[];
  append: string[];
  memoryMiB?: number;
  cpus?: number;
  accel: Accel;
  timeoutMs: number;
  consoleLog: string;
  endMarker: string;
  extraArgs?: string[];
  /** The disks' bus (default virtio). */
  bus?: "virtio" | "nvme";
  /** Boot deadline: this console text must appear within bootTimeoutMs, or the VM is stopped. */
  started?: { marker: string; timeoutMs: number };
}

export const QEMU = "qemu-system-x86_64";
/** How long a guest may take to power off after printing its end marker. */
const END_GRACE_MS = 5000;

export function requireQemu(): void {
  if (!findInPath(QEMU))
    throw new UserError(`${QEMU} is missing`, "apt-get install qemu-system-x86   (or run 'make setup')");
}

function smpTopology(cpus: number): string {
  return `${cpus},sockets=${cpus},cores=1,threads=1`;
}

/** The QEMU command line: pure, so its choices are unit-tested. */
export function qemuArgs(opts: BootOptions): string[] {
  const args = [
    QEMU,
    "-machine",
    opts.accel === "kvm" ? "q35,accel=kvm" : "q35,accel=tcg",
    "-cpu",
    opts.accel === "kvm" ? "host" : "max,cx16=off",
    "-m",
    String(opts.memoryMiB ?? 1024),
    // One socket per vCPU: QEMU's default puts them all as cores of one socket, and SeaBIOS's
    // MP table lists one processor per socket, so a kernel without ACPI saw a single CPU.
    "-smp",
    smpTopology(opts.cpus ?? 2),
    "-nographic",
    "-no-reboot",
    "-nodefaults",
    "-serial",
    `file:${opts.consoleLog}`,
    // An entropy source, as Kata's QEMU gives every guest (virtio-rng from the host's
    // /dev/urandom): without one a kernel that does not credit RDRAND (6.1) starts with an
    // uninitialized CRNG, and getrandom() fails with EAGAIN for a long while.
    "-object",
    "rng-random,id=rng0,filename=/dev/urandom",
    "-device",
    "virtio-rng-pci,rng=rng0",
    "-kernel",
    opts.kernel,
  ];
  if (opts.initrd) args.push("-initrd", opts.initrd);
  (opts.drives ?? []).forEach((d, i) => {
    args.push(
      "-drive",
      `file=${d.path},format=${d.format ?? "raw"},if=none,id=d${i}${d.readonly ? ",readonly=on" : ""}${d.snapshot ? ",snapshot=on" : ""}`,
    );
    // NVMe for kernels that build only that in (a distribution kernel); it needs a serial.
    if (opts.bus === "nvme") args.push("-device", `nvme,drive=d${i},serial=${d.serial ?? `crg${i}`}`);
    else args.push("-device", `virtio-blk-pci,drive=d${i}${d.serial ? `,serial=${d.serial}` : ""}`);
  });
  args.push("-append", ["console=ttyS0", "panic=-1", "oops=panic", ...opts.append].join(" "));
  return [...args, ...(opts.extraArgs ?? [])];
}

/** Classifies a finished (or killed) VM from its console: pure. */
export function classifyBoot(
  console: string,
  endMarker: string,
  timedOut: boolean,
  exitCode: number | null,
  stderr: string,
  stoppedBy?: string,
): Pick<BootResult, "status" | "reason"> {
  if (console.includes(endMarker)) return { status: "ok", reason: "end marker seen" };
  const line = (re: RegExp) =>
    console
      .split("\n")
      .find((l) => re.test(l))
      ?.trim() ?? "";
  if (/Kernel panic/.test(console)) return { status: "panic", reason: line(/Kernel panic/) };
  if (/\bOops\b|BUG:|double fault/.test(console))
    return { status: "oops", reason: line(/\bOops\b|BUG:|double fault/) };
  if (stoppedBy) return { status: "timeout", reason: stoppedBy };
  if (timedOut)
    return {
      status: "timeout",
      reason: `no end marker before the deadline; last console line: ${console.trim().split("\n").at(-1) ?? "(none)"}`,
    };
  if (exitCode !== 0 && !console.trim())
    return {
      status: "qemu-error",
      reason: stderr.trim().split("\n").slice(-3).join(" | ") || `qemu exited ${exitCode}`,
    };
  return {
    status: "no-marker",
    reason: `the guest stopped without the end marker; last console line: ${console.trim().split("\n").at(-1) ?? "(none)"}`,
  };
}

export async function bootVm(opts: BootOptions): Promise<BootResult> {
  requireQemu();
  await mkdir(dirname(opts.consoleLog), { recursive: true });
  await rm(opts.consoleLog, { force: true });
  const t0 = Date.now();
  const readConsole = () =>
    existsSync(opts.consoleLog) ? readFileSync(opts.consoleLog, "utf8").replace(/\r/g, "") : "";
  const started = opts.started;
  let startedAfter: number | undefined;
  let endSeenAt: number | undefined;
  const watch = {
    everyMs: 500,
    check: () => {
      const text = readConsole();
      if (started && startedAfter === undefined && text.includes(started.marker))
        startedAfter = (Date.now() - t0) / 1000;
      if (/Kernel panic - not syncing/.test(text) && !text.includes(opts.endMarker)) return "kernel panic";
      // The guest synced its results before the end marker: a guest that does not power off
      // after it is stopped from here instead of costing its own fallback timer.
      if (text.includes(opts.endMarker)) {
        endSeenAt ??= Date.now();
        if (Date.now() - endSeenAt > END_GRACE_MS)
          return `stopped ${END_GRACE_MS / 1000} s after the end marker (the guest did not power off)`;
        return undefined;
      }
      if (started && Date.now() - t0 > started.timeoutMs && !text.includes(started.marker))
        return `boot timeout: '${started.marker}' not on the console after ${Math.round(started.timeoutMs / 1000)} s; last line: ${text.trim().split("\n").at(-1) ?? "(none)"}`;
      return undefined;
    },
  };
  const r = await run(qemuArgs(opts), { timeoutMs: opts.timeoutMs, allowFailure: true, watch });
  const console = readConsole();
  // A guest that powers off within one poll of its end marker: the marker came at the exit.
  const endedAfter =
    endSeenAt !== undefined
      ? (endSeenAt - t0) / 1000
      : console.includes(opts.endMarker)
        ? r.seconds
        : undefined;
  return {
    ...classifyBoot(console, opts.endMarker, r.timedOut, r.exitCode, r.stderr, r.stoppedBy),
    seconds: r.seconds,
    consoleLog: opts.consoleLog,
    console,
    exitCode: r.exitCode,
    startedAfter,
    endedAfter,
  };
}

/**
 * The accelerator without a probe boot: forced by CR_GUEST_ACCEL, TCG without /dev/kvm, or
 * the verdict a probe cached for this QEMU version; else `due`: a probe boot is needed.
 */
export async function accelWithoutProbe(
  cacheFile?: string,
): Promise<{ accel: Accel; reason: string } | { due: true; qemu: string }> {
  const forced = process.env.CR_GUEST_ACCEL;
  if (forced === "kvm" || forced === "tcg") return { accel: forced, reason: "CR_GUEST_ACCEL" };
  if (!existsSync("/dev/kvm")) return { accel: "tcg", reason: "/dev/kvm is absent" };
  requireQemu();
  const qemu = (await run([QEMU, "--version"], { timeoutMs: 10_000 })).stdout.split("\n")[0];
  if (cacheFile && existsSync(cacheFile)) {
    const cached = JSON.parse(readFileSync(cacheFile, "utf8")) as {
      version: string;
      accel: Accel;
      reason: string;
    };
    if (cached.version === qemu) return { accel: cached.accel, reason: `${cached.reason} (cached probe)` };
  }
  return { due: true, qemu };
}

/**
 * KVM only if a real guest boots with it. Whether KVM works is the host's and QEMU's matter,
 * so the verdict is cached per QEMU version, whatever kernel probed: a probe costs up to its
 * deadline on machines where KVM hangs.
 * initrd: a path, or how to make one (called only when a probe boot is needed).
 */
export async function detectAccel(opts: {
  kernel: string;
  initrd: string | (() => Promise<string>);
  marker: string;
  timeoutMs?: number;
  cacheFile?: string;
}): Promise<{ accel: Accel; reason: string }> {
  const known = await accelWithoutProbe(opts.cacheFile);
  if (!("due" in known)) return known;
  const version = known.qemu;
  const probe = await bootVm({
    kernel: opts.kernel,
    initrd: typeof opts.initrd === "string" ? opts.initrd : await opts.initrd(),
    append: [],
    accel: "kvm",
    memoryMiB: 256,
    cpus: 1,
    timeoutMs: opts.timeoutMs ?? 20_000,
    consoleLog: `${opts.cacheFile ?? "/tmp/cr-guest-kvm-probe"}.console`,
    endMarker: opts.marker,
  });
  const verdict =
    probe.status === "ok"
      ? { accel: "kvm" as const, reason: "KVM probe boot succeeded" }
      : { accel: "tcg" as const, reason: `KVM probe failed (${probe.status}: ${probe.reason})` };
  if (opts.cacheFile) {
    await mkdir(dirname(opts.cacheFile), { recursive: true });
    await writeAtomic(opts.cacheFile, JSON.stringify({ version, ...verdict, kernel: opts.kernel }));
  }
  return verdict;
}
