/**
 * The compatibility check: a CRIU version, how it is obtained, a guest suite and a kernel
 * config -> what will fail, why, and the fix. Pure; the CLI feeds it a .config.
 */
import {
  hasFact,
  readableRange,
  suitesFrom,
  type CriuCatalog,
  type CriuVersionEntry,
} from "./criu-catalog.js";

/** fail: something will not work; warn: something is lost; info: a prediction worth checking. */
export type Severity = "fail" | "warn" | "info";

export interface Finding {
  severity: Severity;
  id: string;
  what: string;
  why: string;
  fix: string;
  /** The guest test that will show it, and the status it is predicted to have there. */
  test?: string;
  expect?: "PASS" | "FAIL";
}

export interface DoctorInput {
  criu: CriuVersionEntry;
  catalog: CriuCatalog;
  /** CONFIG_X -> value of the kernel the guest will run; undefined when unknown. */
  kernelConfig?: Map<string, string>;
  kernelVersion?: string;
  guestSuite: string;
  /** The suite whose glibc the binary is linked against (undefined: static, runs anywhere). */
  binarySuite?: string;
  /** Linked with libnftables (Debian's binary, dynamic builds); static builds leave it out. */
  withNftables?: boolean;
  patches: string[];
  kernelOptions: { required: Record<string, string>; optional: Record<string, string> };
}

/** ">=6.13.0" -> "<6.13.0": the kernels a one-sided fact does not cover. */
function negated(range: string): string {
  const m = /^\s*(>=|<|>|<=)\s*(\S+)\s*$/.exec(range);
  if (!m) return `outside ${range}`;
  return `${({ ">=": "<", "<": ">=", ">": "<=", "<=": ">" } as Record<string, string>)[m[1]]}${m[2]}`;
}

/** A finding that says CRIU will not start at all. */
const startsNot = (f: Finding) => f.test === "criu-check" && f.expect === "FAIL";
const STARTS_NOT = { test: "criu-check", expect: "FAIL" } as const;

const on = (config: Map<string, string>, sym: string) =>
  ["y", "m"].includes(config.get(`CONFIG_${sym}`) ?? "n");

export function diagnose(input: DoctorInput): Finding[] {
  const findings: Finding[] = [];
  const { criu, catalog, kernelConfig } = input;
  const v = criu.version;

  if (
    kernelConfig &&
    hasFact(catalog, "membarrier_get_registrations_probe", v) &&
    !on(kernelConfig, "MEMBARRIER")
  ) {
    if (input.patches.includes("membarrier-probe-nonfatal"))
      findings.push({
        severity: "warn",
        id: "membarrier-patched",
        what: `CRIU ${v} on a kernel with CONFIG_MEMBARRIER=n starts only thanks to the membarrier patch`,
        why: "membarrier registrations are neither dumped nor restored on this kernel",
        fix: "enable CONFIG_MEMBARRIER for full fidelity",
      });
    else
      findings.push({
        severity: "fail",
        id: "membarrier-probe",
        what: `CRIU ${v} on a kernel with CONFIG_MEMBARRIER=n will fail every command with "kerndat_has_membarrier_get_registrations failed when initializing kerndat"`,
        why: `CRIU >= 3.19 ${catalog.facts.membarrier_get_registrations_probe.says}; without CONFIG_MEMBARRIER the kernel answers ENOSYS`,
        fix: "enable CONFIG_MEMBARRIER (kernel-fragments/checkpoint-restore.conf sets it), or build CRIU with the membarrier-probe-nonfatal patch",
        ...STARTS_NOT,
      });
  }

  if (kernelConfig && hasFact(catalog, "memfd_hugetlb_enosys_fatal", v) && !on(kernelConfig, "HUGETLBFS"))
    findings.push({
      severity: "fail",
      id: "memfd-hugetlb",
      what: `CRIU ${v} on a kernel with CONFIG_HUGETLBFS=n will fail every command with "kerndat_has_memfd_hugetlb failed when initializing kerndat"`,
      why: `CRIU ${v} ${catalog.facts.memfd_hugetlb_enosys_fatal.says}`,
      fix: "enable CONFIG_HUGETLBFS (kernel-fragments/checkpoint-restore.conf sets it), or use CRIU >= 3.18",
      ...STARTS_NOT,
    });

  if (
    kernelConfig &&
    input.withNftables &&
    hasFact(catalog, "nftables_probe_fatal", v) &&
    !on(kernelConfig, "NF_TABLES_INET")
  )
    findings.push({
      severity: "fail",
      id: "nftables-probe",
      what: `CRIU ${v} linked with libnftables on a kernel without nf_tables will fail every command with "kerndat_has_nftables_concat failed when initializing kerndat"`,
      why: `CRIU ${v} ${catalog.facts.nftables_probe_fatal.says}`,
      fix: "enable CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET (kernel-fragments/checkpoint-restore.conf sets them), or use the static build (no libnftables), or CRIU >= 4.0",
      ...STARTS_NOT,
    });

  if (input.binarySuite) {
    const runsIn = suitesFrom(catalog, input.binarySuite);
    if (!runsIn.includes(input.guestSuite)) {
      const need = catalog.suites.find((s) => s.name === input.binarySuite)!.glibc;
      const have = catalog.suites.find((s) => s.name === input.guestSuite)?.glibc ?? "?";
      findings.push({
        severity: "fail",
        id: "glibc",
        what: `CRIU ${v} built for ${input.binarySuite} will not start in a ${input.guestSuite} userland`,
        why: `it is linked against glibc ${need}; ${input.guestSuite} has glibc ${have}`,
        fix: `use a ${runsIn.join(" or ")} guest, or a static build (criu.link: static, built in the oldest suite)`,
        ...STARTS_NOT,
      });
    }
  }

  if (kernelConfig) {
    const missing = (opts: Record<string, string>) =>
      Object.entries(opts).filter(([sym]) => !on(kernelConfig, sym));
    for (const [sym, why] of missing(input.kernelOptions.required))
      findings.push({
        severity: "fail",
        id: `kernel-${sym}`,
        what: `kernel lacks CONFIG_${sym}`,
        why,
        fix: `set CONFIG_${sym}=y in a kernel fragment`,
      });
    for (const [sym, why] of missing(input.kernelOptions.optional))
      findings.push({
        severity: "warn",
        id: `kernel-${sym}`,
        what: `kernel lacks CONFIG_${sym}`,
        why,
        fix: `set CONFIG_${sym}=y for ${why}`,
      });
  }

  const k = input.kernelVersion;
  if (k && hasFact(catalog, "vdso_vvar_vclock_unknown", v, k))
    findings.push({
      severity: "fail",
      id: "vdso-vvar-vclock",
      what: `CRIU ${v} on linux ${k} will fail every command with "vdso: Unexpected rt vDSO area bounds"`,
      why: `CRIU ${readableRange(catalog.facts.vdso_vvar_vclock_unknown.criu)} ${catalog.facts.vdso_vvar_vclock_unknown.says}`,
      fix: `use CRIU >= 4.1, or a guest kernel ${readableRange(negated(catalog.facts.vdso_vvar_vclock_unknown.kernel!))}`,
      test: "criu-check",
      expect: "FAIL",
    });

  if (k && hasFact(catalog, "sockopt_passcred_refused", v, k))
    findings.push({
      severity: "fail",
      id: "sockopt-passcred",
      what: `CRIU ${v} on linux ${k} will fail to dump a process with a TCP socket ("Can't get 1:16 opt: Operation not supported")`,
      why: `CRIU ${readableRange(catalog.facts.sockopt_passcred_refused.criu)} ${catalog.facts.sockopt_passcred_refused.says}`,
      fix: `use CRIU >= 4.2, or a guest kernel ${readableRange(negated(catalog.facts.sockopt_passcred_refused.kernel!))}`,
      test: "tcp-established",
      expect: "FAIL",
    });

  // Our images carry no kernel modules: a sock_diag handler built as one is never loaded.
  const tcpDiagModule =
    kernelConfig && ["INET_DIAG", "TCP_DIAG"].find((sym) => kernelConfig.get(`CONFIG_${sym}`) === "m");
  if (tcpDiagModule && !findings.some(startsNot))
    findings.push({
      severity: "warn",
      id: "inet-diag-module",
      what: `CONFIG_${tcpDiagModule}=m and the guest image has no kernel modules: dumping a process with a TCP socket will fail ("Sockets (family 2 proto 6) are not collected")`,
      why: input.kernelOptions.required.INET_DIAG ?? "TCP sockets are collected through sock_diag",
      fix: `build CONFIG_${tcpDiagModule} in (=y), or ship and load the kernel's modules in the guest`,
      test: "tcp-established",
      expect: "FAIL",
    });

  // Membarrier registrations across a restore: what the membarrier scenario will show, when
  // CRIU can start at all on this kernel.
  const membarrierOn = kernelConfig ? on(kernelConfig, "MEMBARRIER") : undefined;
  if (membarrierOn && !findings.some(startsNot)) {
    if (!hasFact(catalog, "restores_membarrier_registration", v))
      findings.push({
        severity: "warn",
        id: "membarrier-registration",
        what: `CRIU ${v} will not carry a membarrier registration across a restore (membarrier() then fails with EPERM)`,
        why: `only CRIU ${readableRange(catalog.facts.restores_membarrier_registration.criu)}: ${catalog.facts.restores_membarrier_registration.says}`,
        fix: "use CRIU >= 3.19",
        test: "membarrier/registration",
        expect: "FAIL",
      });
    else if (k && hasFact(catalog, "membarrier_registrations_without_get_registrations", v, k))
      findings.push({
        severity: "info",
        id: "membarrier-before-6.3",
        what: `CRIU ${v} on linux ${k} starts and keeps membarrier registrations, though the kernel has no MEMBARRIER_CMD_GET_REGISTRATIONS`,
        why: `CRIU ${readableRange(catalog.facts.membarrier_registrations_without_get_registrations.criu)} ${catalog.facts.membarrier_registrations_without_get_registrations.says}`,
        fix: "none needed",
        test: "membarrier/registration",
        expect: "PASS",
      });
  }
  return findings;
}

export function formatFindings(findings: Finding[], label: string): string {
  if (findings.length === 0) return `${label}: no problems found`;
  const lines = [`${label}:`];
  for (const f of findings)
    lines.push(`  ${f.severity.toUpperCase()} ${f.what}`, `       why: ${f.why}`, `       fix: ${f.fix}`);
  const fails = findings.filter((f) => f.severity === "fail").length;
  const warns = findings.filter((f) => f.severity === "warn").length;
  lines.push(
    fails
      ? `${fails} problem(s) that will fail`
      : warns
        ? "warnings only"
        : "no problems found; predictions only",
  );
  return lines.join("\n");
}
