/**
 * The compatibility check: a CRIU version, how it is obtained, a guest suite and a kernel
 * config -> what will fail, why, and the fix. Pure; the CLI feeds it a .config. Each rule is a
 * function over the input, run in order by diagnose(). No text here writes a CRIU version range:
 * each comes from the catalog fact its rule rests on (readableRange, criuFrom).
 */
import {
  criuFrom,
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

/**
 * One rule of the check: the findings it gives for the input. `before` holds the findings of
 * the rules listed above it (a rule about a scenario says nothing when CRIU will not start).
 */
type Rule = (input: DoctorInput, before: Finding[]) => Finding[];

/** CRIU >= 3.19's membarrier probe on a kernel without CONFIG_MEMBARRIER (patched: a warning). */
const membarrierProbe: Rule = ({ criu, catalog, kernelConfig, patches }) => {
  const v = criu.version;
  if (
    !kernelConfig ||
    !hasFact(catalog, "membarrier_get_registrations_probe", v) ||
    on(kernelConfig, "MEMBARRIER")
  )
    return [];
  if (patches.includes("membarrier-probe-nonfatal"))
    return [
      {
        severity: "warn",
        id: "membarrier-patched",
        what: `CRIU ${v} on a kernel with CONFIG_MEMBARRIER=n starts only thanks to the membarrier patch`,
        why: "membarrier registrations are neither dumped nor restored on this kernel",
        fix: "enable CONFIG_MEMBARRIER for full fidelity",
      },
    ];
  const fact = catalog.facts.membarrier_get_registrations_probe;
  return [
    {
      severity: "fail",
      id: "membarrier-probe",
      what: `CRIU ${v} on a kernel with CONFIG_MEMBARRIER=n will fail every command with "kerndat_has_membarrier_get_registrations failed when initializing kerndat"`,
      why: `CRIU ${readableRange(fact.criu)} ${fact.says}; without CONFIG_MEMBARRIER the kernel answers ENOSYS`,
      fix: "enable CONFIG_MEMBARRIER (kernel-fragments/checkpoint-restore.conf sets it), or build CRIU with the membarrier-probe-nonfatal patch",
      ...STARTS_NOT,
    },
  ];
};

/** CRIU < 3.18 on a kernel without HUGETLBFS: memfd_create(MFD_HUGETLB) ENOSYS is fatal. */
const memfdHugetlb: Rule = ({ criu, catalog, kernelConfig }) => {
  if (
    !kernelConfig ||
    !hasFact(catalog, "memfd_hugetlb_enosys_fatal", criu.version) ||
    on(kernelConfig, "HUGETLBFS")
  )
    return [];
  return [
    {
      severity: "fail",
      id: "memfd-hugetlb",
      what: `CRIU ${criu.version} on a kernel with CONFIG_HUGETLBFS=n will fail every command with "kerndat_has_memfd_hugetlb failed when initializing kerndat"`,
      why: `CRIU ${criu.version} ${catalog.facts.memfd_hugetlb_enosys_fatal.says}`,
      fix: `enable CONFIG_HUGETLBFS (kernel-fragments/checkpoint-restore.conf sets it), or use ${criuFrom(catalog, "memfd_hugetlb_enosys_fatal", false)}`,
      ...STARTS_NOT,
    },
  ];
};

/** CRIU < 4.0 linked with libnftables on a kernel without nf_tables. */
const nftablesProbe: Rule = ({ criu, catalog, kernelConfig, withNftables }) => {
  if (
    !kernelConfig ||
    !withNftables ||
    !hasFact(catalog, "nftables_probe_fatal", criu.version) ||
    on(kernelConfig, "NF_TABLES_INET")
  )
    return [];
  return [
    {
      severity: "fail",
      id: "nftables-probe",
      what: `CRIU ${criu.version} linked with libnftables on a kernel without nf_tables will fail every command with "kerndat_has_nftables_concat failed when initializing kerndat"`,
      why: `CRIU ${criu.version} ${catalog.facts.nftables_probe_fatal.says}`,
      fix: `enable CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET (kernel-fragments/checkpoint-restore.conf sets them), or use the static build (no libnftables), or ${criuFrom(catalog, "nftables_probe_fatal", false)}`,
      ...STARTS_NOT,
    },
  ];
};

/** A dynamic binary in a guest older than the suite it was linked in. */
const glibc: Rule = ({ criu, catalog, binarySuite, guestSuite }) => {
  if (!binarySuite) return [];
  const runsIn = suitesFrom(catalog, binarySuite);
  if (runsIn.includes(guestSuite)) return [];
  const need = catalog.suites.find((s) => s.name === binarySuite)!.glibc;
  const have = catalog.suites.find((s) => s.name === guestSuite)?.glibc ?? "?";
  return [
    {
      severity: "fail",
      id: "glibc",
      what: `CRIU ${criu.version} built for ${binarySuite} will not start in a ${guestSuite} userland`,
      why: `it is linked against glibc ${need}; ${guestSuite} has glibc ${have}`,
      fix: `use a ${runsIn.join(" or ")} guest, or a static build (criu.link: static, built in the oldest suite)`,
      ...STARTS_NOT,
    },
  ];
};

/** The catalog's kernel options: a required one missing fails, an optional one warns. */
const kernelOptions: Rule = ({ kernelConfig, kernelOptions: options }) => {
  if (!kernelConfig) return [];
  const missing = (opts: Record<string, string>) =>
    Object.entries(opts).filter(([sym]) => !on(kernelConfig, sym));
  return [
    ...missing(options.required).map(([sym, why]) => ({
      severity: "fail" as const,
      id: `kernel-${sym}`,
      what: `kernel lacks CONFIG_${sym}`,
      why,
      fix: `set CONFIG_${sym}=y in a kernel fragment`,
    })),
    ...missing(options.optional).map(([sym, why]) => ({
      severity: "warn" as const,
      id: `kernel-${sym}`,
      what: `kernel lacks CONFIG_${sym}`,
      why,
      fix: `set CONFIG_${sym}=y for ${why}`,
    })),
  ];
};

/**
 * A fact about this CRIU on this guest kernel that fails a test: fixed by a newer CRIU (the
 * first catalog version without the fact) or a kernel outside the fact's kernel range.
 */
const kernelFact =
  (fact: string, id: string, what: string, test: string): Rule =>
  ({ criu, catalog, kernelVersion: k }) => {
    if (!k || !hasFact(catalog, fact, criu.version, k)) return [];
    const f = catalog.facts[fact];
    return [
      {
        severity: "fail",
        id,
        what: `CRIU ${criu.version} on linux ${k} ${what}`,
        why: `CRIU ${readableRange(f.criu)} ${f.says}`,
        fix: `use ${criuFrom(catalog, fact, false)}, or a guest kernel ${readableRange(negated(f.kernel!))}`,
        test,
        expect: "FAIL",
      },
    ];
  };

const vdsoVvarVclock = kernelFact(
  "vdso_vvar_vclock_unknown",
  "vdso-vvar-vclock",
  'will fail every command with "vdso: Unexpected rt vDSO area bounds"',
  "criu-check",
);

const sockoptPasscred = kernelFact(
  "sockopt_passcred_refused",
  "sockopt-passcred",
  'will fail to dump a process with a TCP socket ("Can\'t get 1:16 opt: Operation not supported")',
  "tcp-established",
);

/** Our images carry no kernel modules: a sock_diag handler built as one is never loaded. */
const inetDiagModule: Rule = ({ kernelConfig, kernelOptions: options }, before) => {
  const module =
    kernelConfig && ["INET_DIAG", "TCP_DIAG"].find((sym) => kernelConfig.get(`CONFIG_${sym}`) === "m");
  if (!module || before.some(startsNot)) return [];
  return [
    {
      severity: "warn",
      id: "inet-diag-module",
      what: `CONFIG_${module}=m and the guest image has no kernel modules: dumping a process with a TCP socket will fail ("Sockets (family 2 proto 6) are not collected")`,
      why: options.required.INET_DIAG ?? "TCP sockets are collected through sock_diag",
      fix: `build CONFIG_${module} in (=y), or ship and load the kernel's modules in the guest`,
      test: "tcp-established",
      expect: "FAIL",
    },
  ];
};

/**
 * Membarrier registrations across a restore: what the membarrier scenario will show, when CRIU
 * can start at all on this kernel.
 */
const membarrierRegistration: Rule = ({ criu, catalog, kernelConfig, kernelVersion: k }, before) => {
  const v = criu.version;
  if (!kernelConfig || !on(kernelConfig, "MEMBARRIER") || before.some(startsNot)) return [];
  if (!hasFact(catalog, "restores_membarrier_registration", v)) {
    const fact = catalog.facts.restores_membarrier_registration;
    return [
      {
        severity: "warn",
        id: "membarrier-registration",
        what: `CRIU ${v} will not carry a membarrier registration across a restore (membarrier() then fails with EPERM)`,
        why: `only CRIU ${readableRange(fact.criu)}: ${fact.says}`,
        fix: `use ${criuFrom(catalog, "restores_membarrier_registration")}`,
        test: "membarrier/registration",
        expect: "FAIL",
      },
    ];
  }
  if (!k || !hasFact(catalog, "membarrier_registrations_without_get_registrations", v, k)) return [];
  const fact = catalog.facts.membarrier_registrations_without_get_registrations;
  return [
    {
      severity: "info",
      id: "membarrier-before-6.3",
      what: `CRIU ${v} on linux ${k} starts and keeps membarrier registrations, though the kernel has no MEMBARRIER_CMD_GET_REGISTRATIONS`,
      why: `CRIU ${readableRange(fact.criu)} ${fact.says}`,
      fix: "none needed",
      test: "membarrier/registration",
      expect: "PASS",
    },
  ];
};

/** The rules in the order their findings are listed; later ones read earlier ones' findings. */
const RULES: Rule[] = [
  membarrierProbe,
  memfdHugetlb,
  nftablesProbe,
  glibc,
  kernelOptions,
  vdsoVvarVclock,
  sockoptPasscred,
  inetDiagModule,
  membarrierRegistration,
];

export function diagnose(input: DoctorInput): Finding[] {
  const findings: Finding[] = [];
  for (const rule of RULES) findings.push(...rule(input, findings));
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
