/** Host tools each stage needs, and the Debian package that provides each (for the error). */
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { UserError } from "./errors.js";

export const DEBIAN_PACKAGE: Record<string, string> = {
  make: "make",
  gcc: "gcc",
  ld: "binutils",
  flex: "flex",
  bison: "bison",
  bc: "bc",
  perl: "perl",
  xz: "xz-utils",
  tar: "tar",
  patch: "patch",
  cpio: "cpio",
  gpgv: "gpgv",
  ccache: "ccache",
  "dpkg-deb": "dpkg",
  busybox: "busybox-static",
  "qemu-system-x86_64": "qemu-system-x86",
  "pkg-config": "pkg-config",
  openssl: "openssl",
  debootstrap: "debootstrap",
  mmdebstrap: "mmdebstrap",
  unshare: "util-linux",
  chroot: "coreutils",
  sgdisk: "gdisk",
  sfdisk: "fdisk",
  blkid: "util-linux",
  "mkfs.ext4": "e2fsprogs",
  guestfish: "libguestfs-tools",
  rsync: "rsync",
  strace: "strace",
};

/** Headers are checked by path: a missing one means a -dev package. */
export const HEADER_PACKAGE: Record<string, string> = {
  "/usr/include/gelf.h": "libelf-dev",
  "/usr/include/openssl/ssl.h": "libssl-dev",
};

export function findInPath(tool: string, path = process.env.PATH ?? ""): string | undefined {
  for (const dir of path.split(delimiter)) {
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Throws one error listing every missing tool with its Debian package. */
export function requireHostTools(
  tools: string[],
  headers: string[] = [],
  purpose = "this stage",
  path = process.env.PATH ?? "",
): void {
  const missing: string[] = [];
  for (const tool of tools)
    if (!findInPath(tool, path)) missing.push(`${tool} (Debian package ${DEBIAN_PACKAGE[tool] ?? tool})`);
  for (const header of headers) {
    try {
      accessSync(header, constants.R_OK);
    } catch {
      missing.push(`${header} (Debian package ${HEADER_PACKAGE[header] ?? "?"})`);
    }
  }
  if (missing.length) {
    const packages = [...new Set(missing.map((m) => /Debian package ([^)]+)/.exec(m)![1]))];
    throw new UserError(
      `missing host tools for ${purpose}: ${missing.join(", ")}`,
      `install them: apt-get install ${packages.join(" ")}   (or run 'make setup')`,
    );
  }
}
