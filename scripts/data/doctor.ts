/**
 * The compatibility check: a CRIU version, how it is obtained, a guest suite and a kernel
 * config -> what will fail, why, and the fix. Pure; the CLI feeds it a .config.
 */
import semver from "semver";
import { hasFact, semverOf, suitesFrom, type CriuCatalog, type CriuVersionEntry } from "./criu-catalog.js";

export type Severity = "fail" | "warn";

export interface Finding {
  severity: Severity;
  id: string;
  what: string;
  why: string;
  fix: string;
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

const on = (config: Map<string, string>, sym: string) => ["y", "m"].includes(config.get(`CONFIG_${sym}`) ?? "n");

export function diagnose(input: DoctorInput): Finding[] {
  const findings: Finding[] = [];
  const { criu, catalog, kernelConfig } = input;
  const v = criu.version;

  if (kernelConfig && hasFact(catalog, "membarrier_get_registrations_probe", v) && !on(kernelConfig, "MEMBARRIER")) {
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
      });
  }

  if (kernelConfig && hasFact(catalog, "memfd_hugetlb_enosys_fatal", v) && !on(kernelConfig, "HUGETLBFS"))
    findings.push({
      severity: "fail",
      id: "memfd-hugetlb",
      what: `CRIU ${v} on a kernel with CONFIG_HUGETLBFS=n will fail every command with "kerndat_has_memfd_hugetlb failed when initializing kerndat"`,
      why: `CRIU ${v} ${catalog.facts.memfd_hugetlb_enosys_fatal.says}`,
      fix: "enable CONFIG_HUGETLBFS (kernel-fragments/checkpoint-restore.conf sets it), or use CRIU >= 3.18",
    });

  if (kernelConfig && input.withNftables && hasFact(catalog, "nftables_probe_fatal", v) && !on(kernelConfig, "NF_TABLES_INET"))
    findings.push({
      severity: "fail",
      id: "nftables-probe",
      what: `CRIU ${v} linked with libnftables on a kernel without nf_tables will fail every command with "kerndat_has_nftables_concat failed when initializing kerndat"`,
      why: `CRIU ${v} ${catalog.facts.nftables_probe_fatal.says}`,
      fix: "enable CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET (kernel-fragments/checkpoint-restore.conf sets them), or use the static build (no libnftables), or CRIU >= 4.0",
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
      });
    }
  }

  if (kernelConfig) {
    const missing = (opts: Record<string, string>) => Object.entries(opts).filter(([sym]) => !on(kernelConfig, sym));
    for (const [sym, why] of missing(input.kernelOptions.required))
      findings.push({
        severity: "fail",
        id: `kernel-${sym}`,
        what: `kernel lacks CONFIG_${sym}`,
        why,
        fix: `set CONFIG_${sym}=y in a kernel fragment`,
      });
    for (const [sym, why] of missing(input.kernelOptions.optional))
      findings.push({ severity: "warn", id: `kernel-${sym}`, what: `kernel lacks CONFIG_${sym}`, why, fix: `set CONFIG_${sym}=y for ${why}` });
  }

  if (input.kernelVersion && semver.lte(semverOf(v), "3.17.1") && semver.gte(semverOf(input.kernelVersion), "6.18.0"))
    findings.push({
      severity: "warn",
      id: "vdso-bounds",
      what: `CRIU ${v} cannot dump on linux ${input.kernelVersion} ("vdso: Unexpected rt vDSO area bounds")`,
      why: "the vDSO layout changed in 6.18; seen on a 6.18 host, 6.1 and 6.12 guests work",
      fix: "use a 6.12 guest kernel or a newer CRIU",
    });
  return findings;
}

export function formatFindings(findings: Finding[], label: string): string {
  if (findings.length === 0) return `${label}: no problems found`;
  const lines = [`${label}:`];
  for (const f of findings) lines.push(`  ${f.severity.toUpperCase()} ${f.what}`, `       why: ${f.why}`, `       fix: ${f.fix}`);
  const fails = findings.filter((f) => f.severity === "fail").length;
  lines.push(fails ? `${fails} problem(s) that will fail` : "warnings only");
  return lines.join("\n");
}
