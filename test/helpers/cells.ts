/** Cell results as the matrix writes them, for report, verdict and CI tests (fixtures). */
import {
  CELL_SCHEMA,
  INFORMATIONAL_TESTS,
  cellStatusOf,
  type CellResult,
  type CellTest,
} from "../../scripts/matrix/cell.js";

export const t = (
  name: string,
  status: CellTest["status"],
  message = "",
  error_lines: string[] = [],
): CellTest => ({ name, status, seconds: 1.5, exit_code: status === "PASS" ? 0 : 1, message, error_lines });

export function cell(
  criu: string,
  kernel: string,
  patches: string,
  tests: CellTest[],
  over: Partial<CellResult> = {},
): CellResult {
  const informational = [...INFORMATIONAL_TESTS, "frozen-cgroup/without-freeze-cgroup"];
  const fail = cellStatusOf("COMPLETE", tests, informational) === "FAIL";
  return {
    schema: CELL_SCHEMA,
    matrix: "fixture",
    id: `${criu}_${kernel}_${patches}_native`,
    axes: { criu, kernel, patches, suite: "native" },
    criu_version: criu,
    patches: patches === "mb" ? ["membarrier-probe-nonfatal"] : [],
    sets: [`criu.version="${criu}"`],
    inputs_key: "k",
    status: fail ? "FAIL" : "PASS",
    reason: null,
    failed_stage: null,
    predicted: [],
    identities: {
      kernel: { key: "kk", version: "6.12.107", release: null, config_sha256: "c" },
      criu: {
        key: "ck",
        version: criu,
        provider: criu === "3.17.1" ? "debian-binary" : "debian-source",
        link: "static",
        sha256: "s",
        patches: [],
      },
    },
    stages: {},
    accel: "tcg",
    tests,
    informational,
    summary: {
      PASS: tests.filter((x) => x.status === "PASS").length,
      FAIL: tests.filter((x) => x.status === "FAIL").length,
      SKIP: tests.filter((x) => x.status === "SKIP").length,
      ERROR: 0,
    },
    guest: {},
    console_tail: "",
    paths: { results: `/runs/${criu}/results.json` },
    host: "ci-1",
    started: "2026-11-23T10:00:00.000Z",
    finished: "2026-11-23T10:01:00.000Z",
    seconds: 60,
    ...over,
  };
}

export const KERNDAT =
  "Error (criu/kerndat.c:1972): kerndat_has_membarrier_get_registrations failed when initializing kerndat.";
export const good = (
  criu: string,
  kernel = "6.12",
  patches = "none",
  membarrier: CellTest["status"] = "PASS",
) =>
  cell(criu, kernel, patches, [
    t("criu-check", "PASS", "Looks good."),
    t("criu-check-all", "FAIL", "dump or restore failure."),
    t("feature/timens", "PASS"),
    t("feature/apparmor_stacking", "FAIL"),
    t("ptrace-strace", "PASS"),
    t("ptrace-attach", "PASS"),
    t("simple-process/dump-restore", "PASS"),
    t(
      "pidns-init/no-setsid",
      "PASS",
      "reproduced: A session leader of 12(1) is outside of its pid namespace",
    ),
    t("pidns-init/setsid", "PASS"),
    t(
      "membarrier/registration",
      membarrier,
      membarrier === "FAIL" ? "after restore: EPERM" : "still registered",
    ),
  ]);
export const STARTUP = [
  KERNDAT,
  "Error (criu/crtools.c:261): Could not initialize kernel features detection.",
];
export const noMembarrier = cell("4.1.1", "nomb", "none", [
  t("criu-check", "FAIL", "criu check: exit 1", STARTUP),
  ...["timens", "apparmor_stacking", "uffd", "tun", "userns"].map((f) =>
    t(`feature/${f}`, "FAIL", "criu check: exit 1", STARTUP),
  ),
  t("ptrace-strace", "PASS"),
  t("ptrace-attach", "PASS"),
  t("simple-process", "SKIP", "criu check failed"),
  t("membarrier", "SKIP", "criu check failed"),
]);
