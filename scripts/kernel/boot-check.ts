/**
 * Proof from inside the guest: boot the kernel to a tiny initramfs (busybox) whose init
 * prints /proc/config.gz values for the requested symbols, then compare with the request.
 */
import { copyFile, mkdir, rm, symlink, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { UserError } from "../lib/errors.js";
import { run } from "../lib/exec.js";
import { bootVm, detectAccel, type Accel, type BootResult } from "../lib/qemu.js";
import { existsSync } from "node:fs";

const BUSYBOX = "/bin/busybox";
const APPLETS = ["sh", "mount", "zcat", "grep", "echo", "uname", "reboot", "sync", "cat", "test", "sed"];
export const END_MARKER = "CRG-BOOT-DONE";

export function initScript(symbols: string[]): string {
  return `#!/bin/sh
# cr-guest config check: report the running kernel's own config, then power off.
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "CRG-BOOT uname=$(uname -r)"
if [ -e /proc/config.gz ]; then
  for sym in ${symbols.join(" ")}; do
    line=$(zcat /proc/config.gz | grep -E "^($sym=|# $sym is not set)")
    case "$line" in
      "# "*) echo "CRG-CONFIG $sym=n" ;;
      "") echo "CRG-CONFIG $sym=n" ;;
      *) echo "CRG-CONFIG $line" ;;
    esac
  done
else
  echo "CRG-NO-CONFIG-GZ"
fi
echo ${END_MARKER}
sync
reboot -f
`;
}

export async function buildConfigCheckInitramfs(opts: { dir: string; symbols: string[] }): Promise<string> {
  if (!existsSync(BUSYBOX))
    throw new UserError(`${BUSYBOX} is missing`, "apt-get install busybox-static   (or run 'make setup')");
  const root = join(opts.dir, "root");
  await rm(root, { recursive: true, force: true });
  for (const d of ["bin", "proc", "dev"]) await mkdir(join(root, d), { recursive: true });
  await copyFile(BUSYBOX, join(root, "bin/busybox"));
  await chmod(join(root, "bin/busybox"), 0o755);
  for (const a of APPLETS) await symlink("busybox", join(root, "bin", a));
  await writeFile(join(root, "init"), initScript(opts.symbols), { mode: 0o755 });
  const files = ["init", "bin", "proc", "dev", "bin/busybox", ...APPLETS.map((a) => `bin/${a}`)];
  const out = join(opts.dir, "initramfs.cpio");
  // Uncompressed newc: the kernel needs no decompressor for it.
  await run(["cpio", "--quiet", "-o", "-H", "newc", "-F", out], {
    cwd: root,
    input: `${files.join("\n")}\n`,
    timeoutMs: 60_000,
  });
  return out;
}

export function parseConfigCheckConsole(console: string): {
  kernelRelease?: string;
  configGz: boolean;
  values: Record<string, string>;
  done: boolean;
} {
  const values: Record<string, string> = {};
  let kernelRelease: string | undefined;
  for (const raw of console.replace(/\r/g, "").split("\n")) {
    const line = raw.trim();
    const rel = /CRG-BOOT uname=(\S+)/.exec(line);
    if (rel) kernelRelease = rel[1];
    const m = /CRG-CONFIG (CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (m) values[m[1]] = m[2];
  }
  return {
    kernelRelease,
    configGz: !console.includes("CRG-NO-CONFIG-GZ"),
    values,
    done: console.includes(END_MARKER),
  };
}

export interface BootCheckResult {
  status: BootResult["status"];
  seconds: number;
  consoleLog: string;
  reason: string;
  attempts: number;
  accel: Accel;
  mismatches: { symbol: string; requested: string; guest: string }[];
  kernelRelease?: string;
}

export async function bootCheckKernel(opts: {
  kernel: string;
  requested: Record<string, string>;
  workDir: string;
  timeoutMs?: number;
  accel?: Accel;
}): Promise<BootCheckResult> {
  await mkdir(opts.workDir, { recursive: true });
  const symbols = Object.keys(opts.requested);
  const initrd = await buildConfigCheckInitramfs({ dir: opts.workDir, symbols });
  const accel =
    opts.accel ??
    (
      await detectAccel({
        kernel: opts.kernel,
        initrd,
        marker: END_MARKER,
        cacheFile: join(opts.workDir, "..", "kvm-probe.json"),
      })
    ).accel;
  let boot: BootResult | undefined;
  let attempts = 0;
  // An infrastructure failure is retried once before it counts.
  while (attempts < 2) {
    attempts++;
    boot = await bootVm({
      kernel: opts.kernel,
      initrd,
      append: [],
      accel,
      memoryMiB: 512,
      timeoutMs: opts.timeoutMs ?? 120_000,
      consoleLog: join(opts.workDir, `console-${attempts}.log`),
      endMarker: END_MARKER,
    });
    if (boot.status === "ok") break;
  }
  const parsed = parseConfigCheckConsole(boot!.console);
  const mismatches =
    boot!.status !== "ok"
      ? []
      : !parsed.configGz
        ? [{ symbol: "CONFIG_IKCONFIG_PROC", requested: "y", guest: "no /proc/config.gz" }]
        : Object.entries(opts.requested)
            .filter(([sym, want]) => (parsed.values[sym] ?? "n") !== want)
            .map(([symbol, requested]) => ({
              symbol,
              requested,
              guest: parsed.values[symbol] ?? "(not reported)",
            }));
  return {
    status: boot!.status,
    seconds: boot!.seconds,
    consoleLog: boot!.consoleLog,
    reason: boot!.reason,
    attempts,
    accel,
    mismatches,
    kernelRelease: parsed.kernelRelease,
  };
}
