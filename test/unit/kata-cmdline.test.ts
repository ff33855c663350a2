/**
 * Kata's guest kernel command line (scripts/boot/kata-cmdline.ts) against the table of
 * docs/kata-profile.md, row by row, for an nvdimm and a block image; nr_cpus filled from the
 * vCPUs; the notes about what a cr-guest boot must weigh.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadBootProfile, parseBootProfile } from "../../scripts/data/boot-profiles.js";
import { kataKernelCmdline } from "../../scripts/boot/kata-cmdline.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { parseYaml } from "../../scripts/lib/yaml-file.js";

const profile = loadBootProfile();

/** The doc's table: row number, the nvdimm cell, the block cell ("same" resolved), `N` as is. */
function docTable(): { row: number; nvdimm: string; block: string }[] {
  const doc = readFileSync(join(REPO_ROOT, "docs/kata-profile.md"), "utf8");
  const section = doc.slice(doc.indexOf("## The kernel command line"));
  return [...section.matchAll(/^\| (\d+) \| `([^`]+)` \| (?:`([^`]+)`|same) \|/gm)].map((m) => ({
    row: Number(m[1]),
    nvdimm: m[2],
    block: m[3] ?? m[2],
  }));
}

const fill = (param: string, n: number) => param.replace(/^nr_cpus=N$/, `nr_cpus=${n}`);

describe("Kata's kernel command line", () => {
  const table = docTable();

  it("reads the doc's table whole: 29 rows in order", () => {
    expect(table.map((r) => r.row)).toEqual(Array.from({ length: 29 }, (_, i) => i + 1));
    expect(table[12]).toEqual({ row: 13, nvdimm: "root=/dev/pmem0p1", block: "root=/dev/vda1" });
  });

  for (const image of ["nvdimm", "block"] as const)
    it(`the ${image} line is the table's ${image} column, row by row, nr_cpus filled`, () => {
      const got = kataKernelCmdline(profile, { image, vcpus: 3 });
      expect(got.params).toEqual(table.map((r) => fill(r[image], 3)));
      expect(got.line).toBe(got.params.join(" "));
    });

  it("the nvdimm line, literally", () => {
    expect(kataKernelCmdline(profile, { image: "nvdimm", vcpus: 2 }).line).toBe(
      "tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 i8042.dumbkbd=1 i8042.nopnp=1 " +
        "i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests net.ifnames=0 pci=lastbus=0 " +
        "root=/dev/pmem0p1 rootflags=dax,data=ordered,errors=remount-ro ro rootfstype=ext4 " +
        "console=hvc0 console=hvc1 quiet systemd.show_status=false panic=1 nr_cpus=2 selinux=0 " +
        "systemd.unit=kata-containers.target systemd.mask=systemd-networkd.service " +
        "systemd.mask=systemd-networkd.socket scsi_mod.scan=none agent.cdh_api_timeout=50 " +
        "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1",
    );
  });

  it("the block line differs only in the root parameters", () => {
    const nv = kataKernelCmdline(profile, { image: "nvdimm", vcpus: 1 }).params;
    const blk = kataKernelCmdline(profile, { image: "block", vcpus: 1 }).params;
    const differ = nv.flatMap((p, i) => (p === blk[i] ? [] : [[p, blk[i]]]));
    expect(differ).toEqual([
      ["root=/dev/pmem0p1", "root=/dev/vda1"],
      ["rootflags=dax,data=ordered,errors=remount-ro ro", "rootflags=data=ordered,errors=remount-ro ro"],
    ]);
  });

  it("puts extra parameters last, after the toml's kernel_params", () => {
    const got = kataKernelCmdline(profile, { image: "block", vcpus: 4, extra: ["init=/sbin/x", "rw"] });
    expect(got.params.slice(-4)).toEqual([
      "cgroup_no_v1=all",
      "systemd.unified_cgroup_hierarchy=1",
      "init=/sbin/x",
      "rw",
    ]);
    expect(got.line.endsWith("systemd.unified_cgroup_hierarchy=1 init=/sbin/x rw")).toBe(true);
  });

  it("refuses a vCPU count that is not a positive integer", () => {
    for (const vcpus of [0, -1, 1.5, NaN])
      expect(() => kataKernelCmdline(profile, { image: "nvdimm", vcpus })).toThrow(/vCPU count of 1 or more/);
  });

  it("refuses a placeholder it does not fill", () => {
    const text = readFileSync(profile.file, "utf8");
    const from = '    - key: panic\n      value: "1"\n      upstream:';
    expect(text.split(from)).toHaveLength(2);
    const p = parseBootProfile(
      parseYaml(
        text
          .replace(from, '    - key: panic\n      value: "{new_thing}"\n      upstream:')
          .replace("  placeholders:\n", "  placeholders:\n    new_thing:\n      note: a test's.\n"),
        "kata.yaml",
      ),
    );
    expect(() => kataKernelCmdline(p, { image: "nvdimm", vcpus: 1 })).toThrow(
      /panic=\{new_thing\}: a placeholder/,
    );
  });
});

describe("the notes for a cr-guest boot", () => {
  const nv = kataKernelCmdline(profile, { image: "nvdimm", vcpus: 2 });
  const blk = kataKernelCmdline(profile, { image: "block", vcpus: 2 });
  const note = (c: typeof nv, param: string) => c.notes.filter((n) => n.param === param);

  it("name only parameters on the line, in its order", () => {
    expect(nv.notes.length).toBeGreaterThan(5);
    const at = nv.notes.map((n) => nv.params.indexOf(n.param));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect(at).toEqual([...at].sort((a, b) => a - b));
  });

  it("the virtio consoles must change: cr-guest's QEMU has only a serial port", () => {
    for (const param of ["console=hvc0", "console=hvc1"]) {
      expect(note(nv, param)).toHaveLength(1);
      expect(note(nv, param)[0]).toMatchObject({
        advice: "change",
        why: expect.stringMatching(/virtconsole/),
      });
    }
    expect(nv.notes.filter((n) => n.advice !== "keep").map((n) => n.param)).toEqual([
      "console=hvc0",
      "console=hvc1",
    ]);
  });

  it("the root device's note follows the image's attachment", () => {
    expect(note(nv, "root=/dev/pmem0p1")[0].why).toMatch(/nvdimm device .* DAX header/);
    expect(note(blk, "root=/dev/vda1")[0].why).toMatch(/first virtio-blk disk/);
    expect(note(nv, "rootflags=dax,data=ordered,errors=remount-ro ro")[0].why).toMatch(/dax needs ext4/);
    expect(note(blk, "rootflags=data=ordered,errors=remount-ro ro")[0].why).not.toMatch(/dax/);
  });

  it("systemd.unit=kata-containers.target stays, saying it needs systemd as PID 1", () => {
    expect(note(nv, "systemd.unit=kata-containers.target")[0]).toMatchObject({
      advice: "keep",
      why: expect.stringMatching(/PID 1/),
    });
  });
});
