/**
 * The guest kernel command line Kata 4.1.0 builds (the boot profile's kernel_cmdline: the amd64
 * list, the root parameters of the image's attachment, then the rest), with nr_cpus filled,
 * and notes on the parameters a cr-guest boot cannot take as they are. The line is Kata's, as
 * is; what to change is the caller's choice, which the notes only inform. Pure.
 */
import { kernelParams, renderParam, type BootProfile, type ImageAttachment } from "../data/boot-profiles.js";
import { UserError } from "../lib/errors.js";

export interface KataCmdlineOptions {
  /** The image on an NVDIMM (Kata's default) or on virtio-blk (disable_image_nvdimm). */
  image: ImageAttachment;
  /** What Kata's nr_cpus says: default_maxvcpus resolved; for cr-guest, the guest's vCPUs. */
  vcpus: number;
  /** Parameters after Kata's, as more of the toml's kernel_params (last, so they win). */
  extra?: string[];
}

/** What a cr-guest boot should do with one of Kata's parameters, and why. */
export interface CmdlineNote {
  /** The parameter as on the line (key=value, or key alone). */
  param: string;
  advice: "keep" | "change" | "drop";
  why: string;
}

export interface KataCmdline {
  /** One entry per Kata Param, in Kata's order (rootflags' value holds a space: "... ro"). */
  params: string[];
  /** The line as Kata passes it with -append: the params joined with spaces. */
  line: string;
  /** Only for the parameters on this line that a cr-guest boot must weigh. */
  notes: CmdlineNote[];
}

type Advice = Omit<CmdlineNote, "param">;

/**
 * What cr-guest's own boot (scripts/lib/qemu.ts, scripts/boot/stage.ts, guest/init) makes of
 * Kata's parameters, by key. Keys missing here need nothing (tsc=, i8042.*, pci=lastbus=0...).
 */
const ADVICE: Record<string, Advice | ((value: string | undefined) => Advice)> = {
  console: {
    advice: "change",
    why:
      "hvc0/hvc1 are virtio consoles, which need QEMU's virtio-serial device and a virtconsole; " +
      "cr-guest's QEMU has only the serial port (-serial file:, qemu.ts puts console=ttyS0 first), " +
      "and the last console= becomes /dev/console, where guest/init writes. Kata's own " +
      "use_legacy_serial puts console=ttyS0 here instead (kernel_cmdline.conditional).",
  },
  panic: {
    advice: "keep",
    why:
      "panic=1 comes after qemu.ts's panic=-1 and wins (the kernel takes the last value): a panic " +
      "reboots after 1 s instead of at once; with -no-reboot QEMU exits either way, and the " +
      "console still shows the panic that classifyBoot reads.",
  },
  nr_cpus: {
    advice: "keep",
    why:
      "Kata sets it to default_maxvcpus for CPU hotplug; cr-guest hotplugs none, so the guest's " +
      "vCPU count (-smp) is the same bound.",
  },
  root: (value) => ({
    advice: "keep",
    why:
      value === "/dev/pmem0p1"
        ? "needs QEMU's nvdimm device (Kata's memory-backend-file + nvdimm, machine nvdimm=on), a " +
          "kernel with NVDIMM/pmem support, and the image behind Kata's DAX header " +
          "(scripts/image/nsdax.ts); cr-guest boots root=PARTUUID= from virtio-blk today."
        : "the first partition of the first virtio-blk disk: cr-guest's image must stay its first " +
          "drive, and its root partition the first partition (it is: sgdisk --new=1).",
  }),
  rootflags: (value) => ({
    advice: "keep",
    why:
      "its value ends in a space and ro, so the kernel mounts / read-only (Kata attaches the image " +
      "read-only too); guest/init remounts a read-only / read-write, which needs a writable disk " +
      "(cr-guest's snapshot=on drive)." +
      (value?.startsWith("dax,") ? " dax needs ext4 with 4 KiB blocks on a pmem device." : ""),
  }),
  "systemd.unit": {
    advice: "keep",
    why:
      "read by systemd as PID 1: it starts kata-containers.target (and so kata-agent.service). " +
      "Kata's line has no init=, so the kernel runs /sbin/init; cr-guest's boot adds " +
      "init=/usr/libexec/cr-guest/init, under which no systemd.* parameter has any effect.",
  },
  "systemd.mask": {
    advice: "keep",
    why: "read by systemd only; without systemd as PID 1 (cr-guest's init=) it does nothing.",
  },
  "systemd.show_status": {
    advice: "keep",
    why: "read by systemd only; without systemd as PID 1 (cr-guest's init=) it does nothing.",
  },
  "scsi_mod.scan": {
    advice: "keep",
    why:
      "no SCSI bus is scanned at boot: Kata's virtio-scsi is for containers' disks, hotplugged " +
      "later. cr-guest's disks are virtio-blk or NVMe; a SCSI root disk would not appear.",
  },
  "agent.cdh_api_timeout": {
    advice: "keep",
    why: "read by kata-agent from /proc/cmdline only; harmless without it.",
  },
  cgroup_no_v1: {
    advice: "keep",
    why: "cgroup v2 only; guest/init mounts cgroup2 at /sys/fs/cgroup already.",
  },
};

function adviceFor(key: string, value: string | undefined): Advice | undefined {
  const a = ADVICE[key];
  return typeof a === "function" ? a(value) : a;
}

/** Kata's guest kernel command line for `image`, nr_cpus = `vcpus`, `extra` last. */
export function kataKernelCmdline(profile: BootProfile, opts: KataCmdlineOptions): KataCmdline {
  if (!Number.isInteger(opts.vcpus) || opts.vcpus < 1)
    throw new UserError(`nr_cpus needs a vCPU count of 1 or more, not ${opts.vcpus}`);
  const kata = kernelParams(profile, opts.image);
  const params = kata.map((p) => renderParam(p, { max_vcpus: opts.vcpus }));
  const unfilled = params.filter((p) => /\{[a-z_]+\}/.test(p));
  if (unfilled.length)
    throw new UserError(
      `${profile.file}: ${unfilled.join(", ")}: a placeholder kataKernelCmdline does not fill`,
      "fill it here, as nr_cpus is",
    );
  const extra = opts.extra ?? [];
  const notes = kata.flatMap((p, i) => {
    const a = adviceFor(p.key, p.value);
    return a ? [{ param: params[i], ...a }] : [];
  });
  return { params: [...params, ...extra], line: [...params, ...extra].join(" "), notes };
}
