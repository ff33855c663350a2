/**
 * The map's dump entries (what dumping or restoring a kind of resource needs) on the real map
 * and the default kernel's real final .config (test/fixtures/kconfig/default-6.12.107.config):
 * their shown_by is checked against scenarios.yaml, a verdict lists the blocked ones, a failing
 * scenario test gets them as its cause, and the doctor warns.
 */
import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KERNEL_REQUIREMENTS_FILE, loadKernelRequirements } from "../../scripts/data/kernel-requirements.js";
import { loadDotConfig } from "../../scripts/data/fragments.js";
import { scenarioTests } from "../../scripts/data/repo-data.js";
import { assess, causeOf, formatVerdict, judgeConfig } from "../../scripts/data/requirement-check.js";
import { kernelFindings } from "../../scripts/data/kernel-findings.js";
import { loadCriuCatalog } from "../../scripts/data/criu-catalog.js";
import { mapTests } from "../../scripts/explain/prove-plan.js";

const knownTests = scenarioTests();
const map = loadKernelRequirements(undefined, { knownTests });
const committed = readFileSync(KERNEL_REQUIREMENTS_FILE, "utf8");
const config = loadDotConfig(join(__dirname, "../fixtures/kconfig/default-6.12.107.config"));
const base = { config, version: "6.12.107" };
const criu = { version: "4.1.1", build: ["compat" as const], patches: [] };
const withoutInetDiag = { ...base, config: new Map([...config].filter(([k]) => k !== "CONFIG_INET_DIAG")) };

function loadEdited(from: string, to: string) {
  expect(committed.split(from).length, `'${from}' occurs once in the map`).toBe(2);
  const f = join(mkdtempSync(join(tmpdir(), "crg-dump-")), "kernel-requirements.yaml");
  writeFileSync(f, committed.replace(from, to));
  return loadKernelRequirements(f, { knownTests });
}

describe("dump entries in the map", () => {
  it("load, with shown_by naming scenario cases, and one without shown_by is fine", () => {
    const tcp = map.entries.find((r) => r.kind === "dump" && r.name === "tcp_socket");
    expect(tcp?.shownBy).toEqual(["tcp-established/loopback", "kata-container/dump-restore"]);
    expect(tcp?.effect).toBe("dumping or restoring it fails");
    expect(map.entries.find((r) => r.kind === "dump" && r.name === "udp_socket")?.shownBy).toEqual([]);
  });

  it("an unknown shown_by test is refused at load with file:line and a suggestion", () => {
    const unix = "    shown_by: [kata-container/dump-restore]\n    proven: false\n\n  packet_socket:";
    const line = committed.slice(0, committed.indexOf(unix)).split("\n").length;
    expect(() => loadEdited(unix, unix.replace("dump-restore", "dump-restor"))).toThrow(
      new RegExp(
        `kernel-requirements.yaml:${line}: dump/unix_socket: shown_by names 'kata-container/dump-restor'.*did you mean 'kata-container/dump-restore'`,
      ),
    );
  });

  it("shown_by is for dump entries only", () => {
    expect(() =>
      loadEdited(
        "    feeds: [breakpoints]\n",
        "    feeds: [breakpoints]\n    shown_by: [tcp-established/loopback]\n",
      ),
    ).toThrow(/shown_by is for dump entries only/);
  });

  it("are not tests the proofs plan for", () => {
    expect(mapTests(map, criu, base).some((t) => t.includes("socket"))).toBe(false);
    expect(mapTests(map, criu, base)).toEqual(mapTests(map, criu, withoutInetDiag));
  });
});

describe("a kernel without INET_DIAG", () => {
  const verdict = judgeConfig(map, withoutInetDiag, criu);

  it("the default kernel blocks no dump entry", () => {
    expect(judgeConfig(map, base, criu).dump).toEqual([]);
  });

  it("its verdict lists the dumps that will fail, not counted in features", () => {
    expect(verdict.dump.map((x) => x.req.name)).toEqual(["tcp_socket", "net_namespace_sockets"]);
    expect(verdict.features).toEqual(judgeConfig(map, base, criu).features);
    expect(formatVerdict(verdict)).toMatch(
      /; dumps that will fail: tcp_socket \(INET_DIAG\), net_namespace_sockets \(INET_DIAG\)$/,
    );
  });

  it("tcp-established/loopback gets a cause naming INET_DIAG; criu-check does not", () => {
    const ctx = { verdict, assessments: assess(map, withoutInetDiag, criu) };
    const cause = causeOf("tcp-established/loopback", ctx);
    expect(cause?.kind).toBe("config");
    expect(cause?.symbols).toEqual(["INET_DIAG"]);
    expect(cause?.entries).toEqual(["dump/tcp_socket"]);
    expect(cause?.text).toMatch(
      /^dumping or restoring tcp_socket needs CONFIG_INET_DIAG, off in this kernel/,
    );
    expect(causeOf("kata-container/dump-restore", ctx)?.entries).toEqual([
      "dump/tcp_socket",
      "dump/net_namespace_sockets",
    ]);
    expect(causeOf("simple-process/dump-restore", ctx)).toBeUndefined();
    expect(causeOf("criu-check", ctx)?.kind).toBe("unexplained");
  });

  it("the doctor warns, with the first shown_by as the test", () => {
    const f = kernelFindings({
      requirements: map,
      catalog: loadCriuCatalog(),
      kernel: withoutInetDiag,
      criu,
    });
    const tcp = f.find((x) => x.id === "dump/tcp_socket");
    expect(tcp).toMatchObject({ severity: "warn", test: "tcp-established/loopback", expect: "FAIL" });
    expect(tcp?.what).toMatch(/dumping or restoring tcp_socket will fail: needs INET_DIAG/);
    const onDefault = kernelFindings({ requirements: map, catalog: loadCriuCatalog(), kernel: base, criu });
    expect(onDefault.filter((x) => x.id.startsWith("dump/"))).toEqual([]);
  });
});
