/**
 * The compatibility check: a CRIU version, how it is obtained, a guest suite and a kernel
 * config -> what will fail, why, and the fix. Pure; the CLI feeds it a .config. Each rule is a
 * function over the input, run in order by diagnose(). What the config lacks comes from the
 * kernel requirements map (kernel-findings.ts); the rules here are about the kernel's version,
 * the guest's glibc and what the scenarios will show. No text here writes a CRIU version range:
 * each comes from the catalog fact its rule rests on (readableRange, criuFrom), or the map.
 */
import {
  criuFrom,
  hasFact,
  readableRange,
  suitesFrom,
  type CriuCatalog,
  type CriuVersionEntry,
} from "./criu-catalog.js";
import type { Fragment } from "./fragments.js";
import { kernelFindings, type BuildCondition } from "./kernel-findings.js";
import type { KernelRequirements } from "./kernel-requirements.js";

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
  /** What CRIU's start-up probes, checks and features need (criu-builds/kernel-requirements.yaml). */
  requirements: KernelRequirements;
  /** CONFIG_X -> value of the kernel the guest will run; undefined when unknown. */
  kernelConfig?: Map<string, string>;
  kernelVersion?: string;
  guestSuite: string;
  /** The suite whose glibc the binary is linked against (undefined: static, runs anywhere). */
  binarySuite?: string;
  /** How the binary was built, as the map's build conditions (data/requirement-check.ts criuBuildConditions). */
  criuBuild: BuildCondition[];
  patches: string[];
  /** The default fragments: a fix names the line that sets a symbol. */
  fragments?: Fragment[];
}

/** ">=6.13.0" -> "<6.13.0": the kernels a one-sided fact does not cover. */
function negated(range: string): string {
  const m = /^\s*(>=|<|>|<=)\s*(\S+)\s*$/.exec(range);
  if (!m) return `outside ${range}`;
  return `${({ ">=": "<", "<": ">=", ">": "<=", "<=": ">" } as Record<string, string>)[m[1]]}${m[2]}`;
}

/**
 * A finding that says CRIU will not start at all. A plain check's finding (check/NAME) fails
 * `criu check` too, but CRIU starts and dumps.
 */
const startsNot = (f: Finding) =>
  f.test === "criu-check" && f.expect === "FAIL" && f.severity === "fail" && !f.id.startsWith("check/");
const STARTS_NOT = { test: "criu-check", expect: "FAIL" } as const;

const on = (config: Map<string, string>, sym: string) =>
  ["y", "m"].includes(config.get(`CONFIG_${sym}`) ?? "n");

/**
 * One rule of the check: the findings it gives for the input. `before` holds the findings of
 * the rules listed above it (a rule about a scenario says nothing when CRIU will not start).
 */
type Rule = (input: DoctorInput, before: Finding[]) => Finding[];

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

/**
 * The kernel requirements map held against the config: a start-up probe it blocks fails every
 * command (a patch that tolerates it: a warning), a plain check it blocks fails `criu check`,
 * a feature it blocks is a warning.
 */
const kernelRequirements: Rule = (input) => {
  if (!input.kernelConfig) return [];
  return kernelFindings({
    requirements: input.requirements,
    catalog: input.catalog,
    // Our images carry no kernel modules: =m counts as absent.
    kernel: { config: input.kernelConfig, version: input.kernelVersion, modules: false },
    criu: { version: input.criu.version, build: input.criuBuild, patches: input.patches },
    fragments: input.fragments,
  });
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
const inetDiagModule: Rule = ({ kernelConfig }, before) => {
  const module =
    kernelConfig && ["INET_DIAG", "TCP_DIAG"].find((sym) => kernelConfig.get(`CONFIG_${sym}`) === "m");
  if (!module || before.some(startsNot)) return [];
  return [
    {
      severity: "warn",
      id: "inet-diag-module",
      what: `CONFIG_${module}=m and the guest image has no kernel modules: dumping a process with a TCP socket will fail ("Sockets (family 2 proto 6) are not collected")`,
      why: "CRIU collects TCP sockets through sock_diag, whose inet handler is that module",
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
  kernelRequirements,
  glibc,
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
