/**
 * The Kata 4.1.0 boot profile (boot-profiles/kata-4.1.0.yaml): its loader's rules and errors,
 * and every citation held against the real Kata 4.1.0 files in ../shared/kata-4.1.0 (each cited
 * line holds its text), plus the facts that matter most read from those files on their own:
 * the amd64 kernel parameters, the nvdimm root parameters, systemd.unit, the machine type, the
 * agent's units and the DAX info block's layout.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  KATA_PROFILE_FILE,
  citationProblems,
  kernelCommandLine,
  kernelParams,
  loadBootProfile,
  parseBootProfile,
  renderParam,
  treeLine,
  type BootProfile,
} from "../../scripts/data/boot-profiles.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { parseYaml } from "../../scripts/lib/yaml-file.js";
import { unavailable } from "../helpers/cli.js";

// An empty value (a `$(cd ...)` that failed) is no tree: the default, then the reason below.
const KATA_TREE = process.env.CR_GUEST_KATA_TREE || join(REPO_ROOT, "..", "shared", "kata-4.1.0");

/** Why the tests on the real Kata files cannot run; with CI=true their absence is a failure. */
function missingKataTree(): string | undefined {
  if (existsSync(join(KATA_TREE, "src/runtime/virtcontainers/qemu_amd64.go"))) return undefined;
  return unavailable(`no Kata 4.1.0 tree in ${KATA_TREE} (set CR_GUEST_KATA_TREE)`);
}

const profile = loadBootProfile();
const committed = readFileSync(KATA_PROFILE_FILE, "utf8");

/** The committed profile with `from` (which must occur once) replaced by `to`, parsed. */
function parseEdited(from: string, to: string): BootProfile {
  expect(committed.split(from).length, `'${from}' occurs once in the profile`).toBe(2);
  return parseBootProfile(parseYaml(committed.replace(from, to), "kata.yaml"));
}

/** The line of the first occurrence of `text` in the committed profile. */
const lineOf = (text: string) => committed.slice(0, committed.indexOf(text)).split("\n").length;

const NVDIMM_ROOT = "root=/dev/pmem0p1 rootflags=dax,data=ordered,errors=remount-ro ro rootfstype=ext4";
const BLOCK_ROOT = "root=/dev/vda1 rootflags=data=ordered,errors=remount-ro ro rootfstype=ext4";

describe("the boot profile loader", () => {
  it("loads the committed profile: every fact cited, most of them on the inputs", () => {
    const kinds = profile.citations.map((c) => c.kind);
    expect(kinds.filter((k) => k === "source").length).toBeGreaterThan(200);
    expect(kinds.filter((k) => k === "upstream").length).toBeGreaterThan(0);
    expect(profile.doc.profile).toMatchObject({ version: "4.1.0", arch: "amd64" });
    expect(profile.citations.find((c) => c.path === "qemu.machine_type.source")?.at).toBe(
      `${KATA_PROFILE_FILE}:${lineOf("  machine_type:\n") + 2}`,
    );
  });

  it("renders the Go runtime's default command line for an nvdimm image and a block image", () => {
    const nvdimm = kernelCommandLine(profile, "nvdimm", { max_vcpus: 4 });
    expect(nvdimm).toBe(
      "tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 i8042.dumbkbd=1 " +
        "i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests net.ifnames=0 " +
        `pci=lastbus=0 ${NVDIMM_ROOT} console=hvc0 console=hvc1 quiet ` +
        "systemd.show_status=false panic=1 nr_cpus=4 selinux=0 systemd.unit=kata-containers.target " +
        "systemd.mask=systemd-networkd.service systemd.mask=systemd-networkd.socket scsi_mod.scan=none " +
        "agent.cdh_api_timeout=50 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1",
    );
    expect(kernelCommandLine(profile, "block", { max_vcpus: 4 })).toBe(
      nvdimm.replace(NVDIMM_ROOT, BLOCK_ROOT),
    );
    // A placeholder without a value stays visible rather than becoming "undefined".
    expect(kernelCommandLine(profile, "nvdimm")).toContain("nr_cpus={max_vcpus}");
    expect(kernelParams(profile, "nvdimm").filter((p) => p.key === "console")).toHaveLength(2);
  });

  it("writes key=value, or a key alone as Kata's Param does", () => {
    expect(renderParam({ key: "noreplace-smp" })).toBe("noreplace-smp");
    expect(renderParam({ key: "pci", value: "lastbus=0" })).toBe("pci=lastbus=0");
    expect(renderParam({ key: "nr_cpus", value: "{max_vcpus}" }, { max_vcpus: 2 })).toBe("nr_cpus=2");
  });

  it("refuses a citation of another tag, naming the line", () => {
    const from = "DEFMEMSZ:\n      value: 2048\n      source:\n        file: src/runtime/Makefile\n";
    const tag = '        line: 220\n        tag: "4.1.0"';
    expect(() => parseEdited(from + tag, from + tag.replace("4.1.0", "4.0.0"))).toThrow(
      new RegExp(`kata\\.yaml:${lineOf(from)}: makefile\\.vars\\.DEFMEMSZ cites tag 4\\.0\\.0`),
    );
  });

  it("refuses a value that cites nothing, and a fact without a source that says not why", () => {
    const machine = "  machine_arg:\n    value: -machine q35,accel=kvm,nvdimm=on\n    note: >-";
    expect(() => parseEdited(machine, "  machine_arg:\n    value: q35\n    junk: >-")).toThrow(
      /unknown key 'qemu\.machine_arg\.junk'/,
    );
    const panicNote =
      "      note: qemu.go defaultKernelParameters, outside the inputs (the Rust runtime has panic=1 too, runtime_rs.defaults).\n";
    expect(() => parseEdited(panicNote, "")).toThrow(
      /kata\.yaml:\d+: kernel_cmdline\.after_root\.4 cites no line of the inputs and says not why/,
    );
    const knobsUpstream =
      "    upstream:\n      - file: src/runtime/virtcontainers/qemu.go\n        line: 1179\n";
    expect(() =>
      parseEdited(
        knobsUpstream,
        "    also:\n      - file: src/runtime/virtcontainers/qemu.go\n        line: 1179\n",
      ),
    ).toThrow(/qemu\.knobs cites nothing/);
  });

  it("refuses a conditional parameter without when, and an unknown placeholder", () => {
    const when = "      when: debug\n";
    expect(() => parseEdited(when, "")).toThrow(/conditional parameter agent\.log_vport says not when/);
    expect(() => parseEdited('value: "{max_vcpus}"', 'value: "{vcpus}"')).toThrow(
      /kata\.yaml:\d+: unknown placeholder \{vcpus\}/,
    );
  });

  it("a wrong line, a wrong text or an upstream file that is an input is a problem", () => {
    const c = profile.citations.find((x) => x.path === "qemu.machine_type.source")!;
    const lines: Record<string, string> = { [`${c.source.file}:18`]: 'machine_type = "@MACHINETYPE@"' };
    const lineOf = (f: string, l: number) => lines[`${f}:${l}`];
    expect(citationProblems([c], lineOf, () => true)).toEqual([]);
    const moved = { ...c, source: { ...c.source, line: 19 } };
    expect(citationProblems([moved], lineOf, () => true)).toEqual([
      `${c.at}: qemu.machine_type.source: ${c.source.file}:19 does not exist`,
    ]);
    const reworded = { ...c, source: { ...c.source, text: "machine_type = q35" } };
    expect(citationProblems([reworded], lineOf, () => true)[0]).toMatch(
      /is "machine_type = "@MACHINETYPE@"", not/,
    );
    const up = profile.citations.find((x) => x.kind === "upstream")!;
    expect(citationProblems([up], lineOf, () => false)).toEqual([]);
    expect(citationProblems([up], lineOf, () => true)[0]).toMatch(/is among the inputs: make it a source/);
  });
});

describe.skipIf(missingKataTree())("the profile against the Kata 4.1.0 files", () => {
  const read = (file: string) => readFileSync(join(KATA_TREE, file), "utf8");

  it("every source line holds its text, and no upstream file is among the inputs", () => {
    const problems = citationProblems(
      profile.citations,
      (f, l) => treeLine(KATA_TREE, f, l),
      (f) => existsSync(join(KATA_TREE, f)),
    );
    expect(problems).toEqual([]);
  });

  it("the amd64 kernel parameters are qemu_amd64.go's kernelParams list, in order", () => {
    const go = read("src/runtime/virtcontainers/qemu_amd64.go");
    const list = /var kernelParams = \[\]Param\{\n([\s\S]*?)\n\}/.exec(go)![1];
    const fromGo = [...list.matchAll(/\{"([^"]+)", "([^"]*)"\}/g)].map((m) =>
      renderParam({ key: m[1], value: m[2] }),
    );
    expect(fromGo).toHaveLength(12);
    expect(profile.doc.kernel_cmdline.arch.map((p) => renderParam(p))).toEqual(fromGo);
  });

  it("the nvdimm root parameters: the pmem device with dax, as the Rust runtime writes them and tests them", () => {
    const rs = read("src/runtime-rs/crates/hypervisor/src/kernel_param.rs");
    expect(rs).toContain('VM_ROOTFS_DRIVER_PMEM => ("/dev/pmem0p1", "/dev/pmem0p2")');
    expect(rs).toMatch(/Param::new\("rootflags", "dax,data=ordered,errors=remount-ro ro"\)/);
    const render = (ps: { key: string; value?: string }[]) => ps.map((p) => renderParam(p)).join(" ");
    expect(render(profile.doc.kernel_cmdline.root.nvdimm)).toBe(NVDIMM_ROOT);
    expect(render(profile.doc.runtime_rs.root.nvdimm)).toBe(NVDIMM_ROOT);
    expect(render(profile.doc.kernel_cmdline.root.block)).toBe(BLOCK_ROOT);
    // The Go runtime asks for dax on an nvdimm image only.
    const base = read("src/runtime/virtcontainers/qemu_arch_base.go");
    expect(base).toMatch(/if !q\.disableNvdimm \{\n\t\t\tq\.qemuMachine\.Options = strings\.Join/);
    expect(read("src/runtime/virtcontainers/qemu_amd64.go")).toMatch(/dax:\s+true,/);
  });

  it("systemd.unit=kata-containers.target: on the command line, and the target pulls in the agent", () => {
    const rs = read("src/runtime-rs/crates/hypervisor/src/kernel_param.rs");
    expect(rs).toContain('Param::new("systemd.unit", "kata-containers.target")');
    expect(profile.doc.runtime_rs.defaults.map((p) => renderParam(p))).toContain(
      "systemd.unit=kata-containers.target",
    );
    expect(kernelCommandLine(profile, "nvdimm").split(" ")).toContain("systemd.unit=kata-containers.target");
    expect(read("src/agent/kata-containers.target")).toMatch(/^Requires=kata-agent\.service$/m);
  });

  it("the machine: q35 (the runtime's default and the toml's placeholder), with accel=kvm and nvdimm=on", () => {
    const amd64 = read("src/runtime/virtcontainers/qemu_amd64.go");
    expect(amd64).toContain("defaultQemuMachineType = QemuQ35");
    expect(amd64).toContain('defaultQemuMachineOptions = "accel=kvm"');
    expect(read("src/runtime/virtcontainers/qemu_arch_base.go")).toMatch(/QemuQ35 = "q35"/);
    expect(read("src/runtime/config/configuration-qemu.toml.in")).toMatch(
      /^machine_type = "@MACHINETYPE@"$/m,
    );
    expect(profile.doc.qemu.machine_type.value).toBe("q35");
    expect(profile.doc.qemu.machine_arg.value).toBe("-machine q35,accel=kvm,nvdimm=on");
  });

  it("each Makefile variable's value is what its `VAR := value` line says", () => {
    // Those set to a literal (not to another variable, nor outside the inputs).
    const vars = Object.entries(profile.doc.makefile.vars).filter(
      ([name, f]) => new RegExp(`^${name} [:?]?=`).test(f.source!.text) && !f.source!.text.includes("$("),
    );
    expect(vars.map(([n]) => n)).toEqual(
      expect.arrayContaining(["DEFMEMSZ", "DEFDISABLEIMAGENVDIMM", "DEFBLOCKSTORAGEDRIVER_QEMU"]),
    );
    for (const [name, f] of vars) {
      const line = treeLine(KATA_TREE, f.source!.file, f.source!.line)!;
      expect(String(f.value), name).toBe(line.replace(/^\s*\S+ [:?]?= ?/, "").replaceAll("\\", ""));
    }
  });

  it("the agent's units are the files' keys and values, section by section", () => {
    for (const unit of Object.values(profile.doc.agent_units)) {
      const sections: Record<string, { key: string; value: string }[]> = {};
      let current = "";
      for (const line of read(unit.file).split("\n")) {
        const head = /^\[(\w+)\]$/.exec(line);
        if (head) sections[(current = head[1])] = [];
        else if (/^\w+=/.test(line))
          sections[current].push({ key: line.split("=")[0], value: line.slice(line.indexOf("=") + 1) });
      }
      const profiled = Object.fromEntries(
        Object.entries(unit.sections).map(([s, es]) => [s, es.map((e) => ({ key: e.key, value: e.value }))]),
      );
      expect(profiled, unit.file).toEqual(sections);
      expect(Object.keys(sections)).not.toContain("Install");
    }
  });

  it("the DAX info block's fields are struct nd_pfn_sb, at natural alignment, 4096 bytes in all", () => {
    const c = read("tools/osbuilder/image-builder/nsdax.gpl.c");
    const struct = /struct nd_pfn_sb \{\n([\s\S]*?)\n\};/.exec(c)![1];
    const SIZES: Record<string, number> = { u8: 1, __le16: 2, __le32: 4, __le64: 8 };
    let offset = 0;
    const fields = [...struct.matchAll(/^\s*(u8|__le16|__le32|__le64) (\w+)(?:\[(\w+)\])?;/gm)].map((m) => {
      const count = m[3] === undefined ? 1 : m[3] === "PFN_SIG_LEN" ? 16 : Number(m[3]);
      const size = SIZES[m[1]] * count;
      offset = Math.ceil(offset / SIZES[m[1]]) * SIZES[m[1]];
      const field = { name: m[2], offset, size };
      offset += size;
      return field;
    });
    expect(offset).toBe(4096);
    expect(profile.doc.dax_header.fields.map(({ name, offset, size }) => ({ name, offset, size }))).toEqual(
      fields,
    );
    expect(c).toContain("#define PFN_SIG_LEN 16");
    const facts = profile.doc.dax_header.facts;
    expect([facts.header_size.value, facts.alignment.value, facts.info_block_offset.value]).toEqual([
      2 * 1024 * 1024,
      2 * 1024 * 1024,
      4096,
    ]);
  });
});
