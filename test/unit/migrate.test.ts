/**
 * Migration pairs: the transfer disk written by the guest's own shell code and verified by
 * the host (and refused when missing, unwritten or corrupt); cases split into halves that
 * hand their state over between two "boots" (the scenario library run twice on this host);
 * what each boot is told; and the pair's verdict from the two runs.
 */
import { describe, expect, it } from "vitest";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../scripts/lib/exec.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { guestContractEnv } from "../../scripts/lib/guest-contract.js";
import {
  copyTransferDisk,
  createTransferDisk,
  readTransferArchive,
  TransferDiskError,
  verifyTransferDisk,
} from "../../scripts/boot/transfer-disk.js";
import {
  judgePair,
  migrateConf,
  pairAxes,
  pairId,
  pairPredictions,
  sideFromFlags,
  type PairSpec,
} from "../../scripts/migrate/pair.js";
import { pairCell, renderPairGrids } from "../../scripts/matrix/pairs.js";
import { failsUnexpectedly, judgeCell } from "../../scripts/matrix/verdicts.js";
import { expectValid } from "../helpers/schemas.js";
import { imageSide } from "../../scripts/migrate/run.js";
import { loadConfig } from "../../scripts/lib/config.js";
import type { StageOutcome } from "../../scripts/driver.js";
import { loadCriuCatalog } from "../../scripts/data/criu-catalog.js";
import { loadScenarios, migratingCases } from "../../scripts/data/scenarios.js";
import type { RunResults } from "../../scripts/boot/stage.js";
import { deriveFindings } from "../../scripts/matrix/report.js";
import { repoData } from "../../scripts/data/repo-data.js";
import { tempDir } from "../helpers/temp.js";

const LIB = join(REPO_ROOT, "guest/lib.sh");
const SCENARIO_LIB = join(REPO_ROOT, "guest/scenario-lib.sh");

async function guestSh(dir: string, script: string, ...args: string[]) {
  const env = join(dir, "contract.env");
  writeFileSync(env, guestContractEnv());
  return run(
    ["sh", "-c", `CRG_CONTRACT_ENV=${env}; . ${LIB}; mkdir -p /run/cr-guest; ${script}`, "sh", ...args],
    { timeoutMs: 30_000, allowFailure: true },
  );
}

describe("transfer disk", () => {
  it("boot A's write_transfer is verified by the host; a fresh copy reads back in boot B's read_transfer", async () => {
    const dir = tempDir("crg-xfer-");
    const disk = join(dir, "transfer.img");
    await createTransferDisk(disk);
    expect(() => verifyTransferDisk(disk)).toThrow(
      /holds no CRGUEST-TRANSFER-DONE record: boot A did not write it/,
    );
    const w = await guestSh(
      dir,
      `mkdir -p "$1/t/simple-process/dump-restore/img"; echo core > "$1/t/simple-process/dump-restore/img/core-1.img"; d=$(find_disk x || true); write_transfer "$2" "$1/t"`,
      dir,
      disk,
    );
    expect(w.exitCode, w.stderr).toBe(0);
    const rec = verifyTransferDisk(disk);
    expect(rec.bytes).toBeGreaterThan(0);
    const copy = join(dir, "transfer-b.img");
    expect(await copyTransferDisk(disk, copy)).toEqual(rec);
    const r = await guestSh(
      dir,
      `read_transfer "$2" "$1/back" && cat "$1/back/simple-process/dump-restore/img/core-1.img"`,
      dir,
      copy,
    );
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("core");
    // The host's own copy of the archive (what crit reads): the bytes the record names.
    const tgz = join(dir, "host.tgz");
    expect(await readTransferArchive(disk, tgz)).toEqual(rec);
    const listed = await run(["tar", "-tzf", tgz], { timeoutMs: 10_000 });
    expect(listed.stdout).toContain("simple-process/dump-restore/img/core-1.img");
  });

  it("a corrupt or missing disk is refused by name, by the host and by the guest", async () => {
    const dir = tempDir("crg-xfer-");
    const disk = join(dir, "transfer.img");
    await createTransferDisk(disk);
    await guestSh(
      dir,
      `mkdir -p "$1/t/c"; head -c 100000 /dev/urandom > "$1/t/c/pages-1.img"; write_transfer "$2" "$1/t"`,
      dir,
      disk,
    );
    const fd = openSync(disk, "r+");
    writeSync(fd, Buffer.from("flipped"), 0, 7, 1024 * 1024 + 500);
    closeSync(fd);
    expect(() => verifyTransferDisk(disk)).toThrow(
      new RegExp(`transfer disk ${disk} is corrupt: its data hashes to [0-9a-f]{64}, its record says`),
    );
    const r = await guestSh(dir, `read_transfer "$2" "$1/back"`, dir, disk);
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout).toMatch(/is corrupt: sha256/);
    expect(() => verifyTransferDisk(join(dir, "gone.img"))).toThrow(TransferDiskError);
    writeFileSync(join(dir, "plain.img"), "not a disk");
    expect(() => verifyTransferDisk(join(dir, "plain.img"))).toThrow(/has no CRGUEST-TRANSFER-V1 marker/);
  });
});

describe("cases in halves (guest/scenario-lib.sh, on this host)", () => {
  // A stand-in scenario: the dump half writes state and carries a value; the restore half
  // reads both. Run as boot A (PHASE=dump), then as boot B (PHASE=restore) with a fresh
  // state directory, the transfer directory being the only link.
  const script = (dir: string) => `
HERE=${join(REPO_ROOT, "guest")}; IN=${dir}/in; OUT=$OUT; CRIU=/bin/true; SCENARIO=demo; STEP_TIMEOUT=5
. ${SCENARIO_LIB}
st=${dir}/state-$PHASE_DIR
dump_demo() { mkdir -p "$st"; echo 41 > "$st/count"; at_dump=41; mkdir -p "$IMG"; echo pages > "$IMG/pages-1.img"; carry at_dump; carry_dir "$st"; }
restore_demo() { v=$(cat "$st/count"); if [ "$v" = "$at_dump" ] && [ -f "$IMG/pages-1.img" ]; then case_end PASS "state $v came over" success; else case_end FAIL "state '$v' vs '$at_dump'" error; fi; }
other() { case_end PASS "ran" success; }
run_case moves dump_demo restore_demo
run_case stays other true
`;
  it("boot A hands the case over, boot B takes it over and restores; a case that does not migrate runs in neither", async () => {
    const dir = tempDir("crg-halves-");
    const sh = (phase: string, out: string) =>
      run(
        [
          "sh",
          "-c",
          `PHASE=${phase}; PHASE_DIR=same; MIGRATE="demo/moves"; TRANSFER=${dir}/transfer; WORK_ROOT=${dir}; OUT=${out}; export PHASE MIGRATE TRANSFER; ${script(dir)}`,
        ],
        { timeoutMs: 30_000, allowFailure: true, env: { CRG_CONTRACT_ENV: join(dir, "contract.env") } },
      );
    writeFileSync(join(dir, "contract.env"), guestContractEnv());
    const a = await sh("dump", join(dir, "outA"));
    expect(a.exitCode, a.stdout + a.stderr).toBe(0);
    expect(readFileSync(join(dir, "outA/tests/demo/moves/status"), "utf8").trim()).toBe("PASS");
    expect(readFileSync(join(dir, "outA/tests/demo/moves/message"), "utf8")).toMatch(/handed over/);
    expect(readFileSync(join(dir, "transfer/demo/moves/carried.tsv"), "utf8")).toBe("at_dump\t41\n");
    await run(["rm", "-rf", join(dir, "state-same")], { timeoutMs: 5000 }); // boot B starts from a fresh root
    const b = await sh("restore", join(dir, "outB"));
    expect(b.exitCode, b.stdout + b.stderr).toBe(0);
    expect(readFileSync(join(dir, "outB/tests/demo/moves/message"), "utf8").trim()).toBe(
      "state 41 came over",
    );
    expect(() => readFileSync(join(dir, "outB/tests/demo/stays/status"))).toThrow();
    // Nothing handed over: boot B says so instead of restoring nothing.
    await run(["rm", "-rf", join(dir, "transfer")], { timeoutMs: 5000 });
    await sh("restore", join(dir, "outC"));
    expect(readFileSync(join(dir, "outC/tests/demo/moves/message"), "utf8")).toMatch(
      /nothing to restore: .*transfer\/demo\/moves is missing/,
    );
  });
});

describe("carry (guest/scenario-lib.sh, on this host): values are data, parsed in boot B, never sourced", () => {
  // Boot A and boot B of a stand-in scenario whose dump half carries the values in vals/ (one
  // file each, read whole) and whose restore half writes back what it got.
  const halves = (dir: string, phase: "dump" | "restore", out: string, carried: string) =>
    run(
      [
        "sh",
        "-c",
        `HERE=${join(REPO_ROOT, "guest")}; IN=${dir}/in; OUT=${out}; CRIU=/bin/true; SCENARIO=carrydemo; STEP_TIMEOUT=5
PHASE=${phase}; MIGRATE="carrydemo/values"; TRANSFER=${dir}/transfer
. ${SCENARIO_LIB}
dump_half() { mkdir -p "$IMG"; for f in ${dir}/vals/*; do v=$(cat "$f"); eval "\${f##*/}=\\$v"; done; carry ${carried}; }
restore_half() { mkdir -p ${dir}/got; for n in $(ls ${dir}/vals); do eval "v=\\$$n"; printf '%s' "$v" > ${dir}/got/$n; done; case_end PASS "restored" success; }
run_case values dump_half restore_half`,
      ],
      { timeoutMs: 30_000, allowFailure: true, env: { CRG_CONTRACT_ENV: join(dir, "contract.env") } },
    );
  const setUp = (values: Record<string, string>) => {
    const dir = tempDir("crg-carry-");
    writeFileSync(join(dir, "contract.env"), guestContractEnv());
    mkdirSync(join(dir, "vals"));
    for (const [name, value] of Object.entries(values)) writeFileSync(join(dir, "vals", name), value);
    return dir;
  };
  const message = (dir: string, out: string) =>
    readFileSync(join(dir, out, "tests/carrydemo/values/message"), "utf8").trim();

  it("carries quotes, $, backticks, spaces, tabs and a shell injection unchanged, and runs none of them", async () => {
    const pwned = (d: string) => join(d, "pwned");
    const dir = tempDir("crg-carry-");
    const values = {
      quoted: `it's "quoted"`,
      dollar: `$HOME \${PATH} $(touch ${pwned(dir)})`,
      backtick: `\`touch ${pwned(dir)}\``,
      spaces: "  two  spaces\tand a tab  ",
      inject: `'; touch ${pwned(dir)}; '`,
      backslash: "a\\b\\n",
      empty: "",
    };
    const d = setUp(values);
    // The values name a file in their own directory: nothing may create it.
    for (const [name, value] of Object.entries(values))
      writeFileSync(join(d, "vals", name), value.replaceAll(pwned(dir), pwned(d)));
    const a = await halves(d, "dump", join(d, "outA"), Object.keys(values).join(" "));
    expect(a.exitCode, a.stdout + a.stderr).toBe(0);
    expect(message(d, "outA"), a.stderr).toMatch(/^dumped with .*handed over/);
    expect(readFileSync(join(d, "transfer/carrydemo/values/carried.tsv"), "utf8")).toBe(
      Object.keys(values)
        .map((n) => `${n}\t${readFileSync(join(d, "vals", n), "utf8")}\n`)
        .join(""),
    );
    const b = await halves(d, "restore", join(d, "outB"), "");
    expect(b.exitCode, b.stdout + b.stderr).toBe(0);
    expect(message(d, "outB")).toBe("restored");
    for (const name of Object.keys(values))
      expect([name, readFileSync(join(d, "got", name), "utf8")]).toEqual([
        name,
        readFileSync(join(d, "vals", name), "utf8"),
      ]);
    expect(readFileSync(join(d, "outB/tests/carrydemo/values/out.log"), "utf8")).toContain(
      "carried: quoted dollar backtick spaces inject backslash empty",
    );
    expect(existsSync(pwned(d))).toBe(false);
  });

  it("refuses a name that is not a scenario variable's and a value with a newline: boot A fails the case, naming them", async () => {
    const d = setUp({ fine: "1", multi: "two\nlines" });
    const a = await halves(d, "dump", join(d, "outA"), "fine multi PATH 'x;y'");
    expect(a.exitCode, a.stdout + a.stderr).toBe(0);
    expect(readFileSync(join(d, "outA/tests/carrydemo/values/status"), "utf8").trim()).toBe("FAIL");
    expect(message(d, "outA")).toBe(
      "dumped, but a value cannot be handed over: multi holds a newline (a carried value is one line); " +
        "'PATH' is not a scenario variable's name ([a-z][a-z0-9_]*); 'x;y' is not a scenario variable's name ([a-z][a-z0-9_]*)",
    );
    expect(a.stderr).toMatch(/^carry: multi holds a newline/m);
    expect(existsSync(join(d, "transfer/carrydemo/values/complete"))).toBe(false);
  });

  it("boot B refuses a malformed carried.tsv by line, and evaluates no name it did not check", async () => {
    const d = setUp({ x: "1" });
    const a = await halves(d, "dump", join(d, "outA"), "x");
    expect(a.exitCode, a.stdout + a.stderr).toBe(0);
    for (const bad of [`x\t1\ntouch ${join(d, "pwned")}\t2\n`, "x\t1\nno tab here\n"]) {
      writeFileSync(join(d, "transfer/carrydemo/values/carried.tsv"), bad);
      const b = await halves(d, "restore", join(d, "outB"), "");
      expect(b.exitCode, b.stdout + b.stderr).toBe(0);
      expect(message(d, "outB")).toBe(
        `nothing to restore: line 2 of ${d}/transfer/carrydemo/values/carried.tsv is not NAME<TAB>VALUE with NAME a scenario variable's name`,
      );
    }
    expect(existsSync(join(d, "pwned"))).toBe(false);
    expect(existsSync(join(d, "got"))).toBe(false);
  });
});

const record = (
  name: string,
  status: "PASS" | "FAIL" | "SKIP",
  message = "",
  error_lines: string[] = [],
) => ({ name, status, seconds: 1, exit_code: 0, message, error_lines, logs: [] });
function runOf(tests: ReturnType<typeof record>[], over: Partial<RunResults> = {}): RunResults {
  return {
    schema: 1,
    run_key: "k",
    status: "COMPLETE",
    error: null,
    accel: "tcg",
    attempts: [],
    identities: {
      kernel: { key: "k", version: "6.12.107", release: null, config_sha256: "x" },
      criu: { version: "4.1.1", sha256: "s", provider: "upstream", link: "static", patches: [] },
      agent: null,
      image: { key: "i", base: "fresh" },
    },
    expectations: {},
    scenarios: [],
    guest: {},
    tests: tests as RunResults["tests"],
    summary: { PASS: 0, FAIL: 0, SKIP: 0, ERROR: 0 },
    seconds: 1,
    created: "",
    ...over,
  };
}

describe("pair verdicts", () => {
  const cases = ["simple-process/dump-restore", "tcp-established/loopback"];
  const pair: PairSpec = {
    from: sideFromFlags("4.1.1", "6.12", []),
    to: sideFromFlags("4.2.1", "6.12", []),
    inPlace: false,
  };

  it("names the pair and what changes", () => {
    expect(pairId(pair)).toBe("4.1.1_6.12_unpatched-to-4.2.1_6.12_unpatched");
    expect(pairAxes(pair)).toBe("CRIU 4.1.1 -> 4.2.1");
    expect(pairAxes({ ...pair, to: { ...pair.from, kernel: "6.1" } })).toBe("kernel 6.12 -> 6.1");
  });

  it("a dump that fails in boot A fails its case with the dump's Error lines; nothing dumped: boot B is not started", () => {
    const a = runOf([
      record("criu-check", "PASS"),
      record(cases[0], "FAIL", "dump: Can't dump", ["Error (criu/cr-dump.c:1): boom"]),
      record(cases[1], "FAIL", "dump: x"),
    ]);
    const v = judgePair(cases, a);
    expect(v.restoreBootNeeded).toBe(false);
    expect(v.status).toBe("FAIL");
    expect(v.reason).toMatch(/nothing was dumped in boot A: boot B not started/);
    expect(v.cases[0].dump?.error_lines).toEqual(["Error (criu/cr-dump.c:1): boom"]);
    // The half is named once, whether or not the guest named it.
    expect(v.cases.map((c) => c.message)).toEqual(["dump: Can't dump", "dump: x"]);
  });

  it("both boots: a case passes only when its restore half passes; boot B crashing is ERROR, never a CRIU result", () => {
    const a = runOf([record(cases[0], "PASS", "dumped"), record(cases[1], "PASS", "dumped")]);
    const b = runOf([
      record(cases[0], "PASS", "counts on"),
      record(cases[1], "FAIL", "connection dead", ["Error (criu/sk-tcp.c:1): repair"]),
    ]);
    const v = judgePair(cases, a, b);
    expect(v.status).toBe("FAIL");
    expect(v.cases.map((c) => c.status)).toEqual(["PASS", "FAIL"]);
    expect(v.cases[1].message).toBe("restore: connection dead");
    const named = judgePair(
      [cases[0]],
      a,
      runOf([record(cases[0], "FAIL", "restore: Error (criu/cr-restore.c:2320): Restoring FAILED.")]),
    );
    expect(named.cases[0].message).toBe("restore: Error (criu/cr-restore.c:2320): Restoring FAILED.");
    expect(judgePair(cases, a, runOf([], { status: "ERROR", error: "panic: Kernel panic" })).status).toBe(
      "ERROR",
    );
    expect(judgePair(cases, runOf([], { status: "ERROR", error: "timeout" })).status).toBe("ERROR");
    const unreadable = judgePair(
      cases,
      a,
      runOf([], {
        guest: { transfer_status: "unreadable", transfer_reason: "transfer on /dev/vdc is corrupt" },
      }),
    );
    expect(unreadable).toMatchObject({
      status: "ERROR",
      reason: "boot B could not read the transfer disk: transfer on /dev/vdc is corrupt",
    });
  });

  it("a restore half that did not run says why (the gate)", () => {
    const a = runOf([record(cases[0], "PASS", "dumped")]);
    const b = runOf([record("criu-check", "FAIL", "Error (criu/kerndat.c): no membarrier")]);
    const v = judgePair([cases[0]], a, b);
    expect(v.cases[0]).toMatchObject({
      status: "FAIL",
      message:
        "restore: the restore half did not run: criu check failed (Error (criu/kerndat.c): no membarrier)",
    });
  });

  it("tells each boot its phase, cases and binaries, each half in its own CRIU's mount syntax", () => {
    const catalog = loadCriuCatalog();
    const conf = migrateConf(
      "restore",
      cases,
      { dump: "/a/criu", restore: "/b/criu" },
      { dump: "3.14.0", restore: "4.1.1" },
      catalog,
    );
    expect(conf).toMatchObject({
      PHASE: "restore",
      MIGRATE: cases.join(" "),
      CRIU: "/b/criu",
      CRIU_DUMP: "/a/criu",
      CRIU_RESTORE: "/b/criu",
      EXTERNAL_MASTERS_SYNTAX_DUMP: "enable",
    });
    expect(
      migrateConf(
        "dump",
        cases,
        { dump: "/a/criu", restore: "/b/criu" },
        { dump: "4.1.1", restore: "4.2.1" },
        catalog,
      ),
    ).toMatchObject({ CRIU: "/a/criu", EXTERNAL_MASTERS_SYNTAX_DUMP: "mnt" });
  });

  it("predicts from the catalog: a registration survives only when both CRIUs keep it; a pair cell judges it XFAIL", () => {
    const catalog = loadCriuCatalog();
    const cases = ["membarrier/registration", "tcp-established/loopback", "simple-process/dump-restore"];
    expect(
      pairPredictions(
        catalog,
        { dump: "4.1.1", restore: "4.2.1", dumpKernel: "6.12.107", restoreKernel: "6.12.107" },
        cases,
      ),
    ).toEqual([]);
    const up = pairPredictions(
      catalog,
      { dump: "3.17.1", restore: "4.1.1", dumpKernel: "6.12.107", restoreKernel: "6.12.107" },
      cases,
    );
    expect(up).toEqual([
      expect.objectContaining({
        test: "membarrier/registration",
        expect: "FAIL",
        what: "the dumping CRIU 3.17.1 does not keep a membarrier registration across a dump and restore",
      }),
    ]);
    // On 6.1 CRIU >= 3.19 keeps it without GET_REGISTRATIONS; a 7.1 dump of a TCP socket by 4.1.1 fails.
    expect(
      pairPredictions(
        catalog,
        { dump: "4.1.1", restore: "4.1.1", dumpKernel: "6.1.176", restoreKernel: "6.12.107" },
        cases,
      ),
    ).toEqual([]);
    expect(
      pairPredictions(
        catalog,
        { dump: "4.1.1", restore: "4.2.1", dumpKernel: "7.1.8", restoreKernel: "7.1.8" },
        cases,
      ).map((p) => p.test),
    ).toEqual(["tcp-established/loopback"]);
    // A downgrade across the pagemap change (4.2 writes nr_pages, 4.1 reads compat_nr_pages): every case.
    const down = pairPredictions(
      catalog,
      { dump: "4.2.1", restore: "4.1.1", dumpKernel: "6.12.107", restoreKernel: "6.12.107" },
      cases,
    );
    expect(down.map((p) => p.test)).toEqual(cases);
    expect(down[0]).toMatchObject({
      id: "pair-pagemap-nr-pages",
      expect: "FAIL",
      what: "CRIU 4.1.1 cannot read the page runs CRIU 4.2.1 writes (pagemap nr_pages): it restores no memory",
    });
    expect(
      pairPredictions(
        catalog,
        { dump: "4.2.1", restore: "4.2.1", dumpKernel: "6.12.107", restoreKernel: "6.1.176" },
        cases,
      ),
    ).toEqual([]);
    const r = {
      schema: 1 as const,
      id: "3.17.1_6.12_unpatched-to-4.1.1_6.12_unpatched",
      axes: {
        from: sideFromFlags("3.17.1", "6.12", []),
        to: sideFromFlags("4.1.1", "6.12", []),
        in_place: false,
        changes: "CRIU 3.17.1 -> 4.1.1",
      },
      status: "FAIL" as const,
      reason: "1 of 2 cases failed",
      predicted: up,
      cases: [
        {
          name: "membarrier/registration",
          status: "FAIL" as const,
          message: "restore: registration lost",
          dump: null,
          restore: null,
        },
        {
          name: "simple-process/dump-restore",
          status: "PASS" as const,
          message: "counts on",
          dump: null,
          restore: null,
        },
      ],
      identities: { from: { criu: null, kernel: null }, to: { criu: null, kernel: null }, image: null },
      runs: { dump: "runs/a", restore: "runs/b" },
      transfer: null,
      seconds: 100,
      created: new Date().toISOString(),
      crit: [
        {
          version: "3.17.1",
          role: "dump" as const,
          status: "ok" as const,
          message: "decoded all 2 dumps",
          cases: [],
        },
        {
          version: "4.1.1",
          role: "restore" as const,
          status: "failed" as const,
          message: "decoded 1 of 2 dumps",
          cases: [
            { name: "membarrier/registration", status: "FAIL" as const, message: "crit x ps: KeyError" },
          ],
        },
      ],
    };
    const axes = (criu: string) => ({ criu, kernel: "6.12", patches: "unpatched", suite: "native" });
    const cell = pairCell("default", axes("3.17.1"), axes("4.1.1"), "k", r);
    expectValid("cell", cell);
    expect(judgeCell(cell).map((j) => j.verdict)).toEqual([
      "xfail",
      "pass",
      "informational",
      "informational",
    ]);
    expect(failsUnexpectedly(cell)).toBe(false);
    const md = renderPairGrids([cell]).join("\n");
    expect(md).toContain("### membarrier/registration");
    // Predicted by the catalog: XFAIL in the grid, and "expected" with the reason in the failures.
    expect(md).toMatch(/\| 3\.17\.1 on 6\.12 \| XFAIL \|/);
    expect(md).toContain(
      "- 3.17.1_6.12_unpatched-to-4.1.1_6.12_unpatched, membarrier/registration: expected (the dumping CRIU 3.17.1 does not keep a membarrier registration across a dump and restore): restore: registration lost",
    );
    expect(md).not.toMatch(/^- .*crit\/4\.1\.1/m);
    // A finding rule for any test ("*"): the downgrade's vDSO failure, in words from the catalog fact.
    const vdso = {
      ...cell,
      id: "4.2.1_6.12_unpatched-to-4.1.1_6.12_unpatched",
      tests: [
        {
          ...cell.tests[1],
          status: "FAIL" as const,
          message: "restore: Restoring FAILED.",
          error_lines: ["pie: 10068: Error (criu/pie/util-vdso.c:117): vdso: ELF header magic mismatch"],
        },
      ],
    };
    const found = deriveFindings([vdso], repoData().findings).find((f) => f.id === "pagemap-downgrade");
    expect(found?.seen_in).toEqual([
      {
        cell: vdso.id,
        test: "simple-process/dump-restore",
        message: "pie: 10068: Error (criu/pie/util-vdso.c:117): vdso: ELF header magic mismatch",
      },
    ]);
    expect(found?.say).toMatch(
      /^A dump taken by CRIU >= 4\.2 cannot be restored by an older CRIU: these versions write/,
    );
    // crit's readings are informational: in the cell, not in the grid, never deciding.
    expect(cell.tests.map((t) => t.name)).toEqual([
      "membarrier/registration",
      "simple-process/dump-restore",
      "crit/3.17.1",
      "crit/4.1.1",
    ]);
    expect(cell.tests.find((t) => t.name === "crit/4.1.1")).toMatchObject({
      status: "FAIL",
      error_lines: ["membarrier/registration: crit x ps: KeyError"],
    });
    expect(md).not.toContain("### crit/");
    expect(md).toMatch(
      /\| 3\.17\.1_6\.12_unpatched-to-4\.1\.1_6\.12_unpatched \| 4\.1\.1 \| FAIL \| restore side's crit: decoded 1 of 2 dumps \|/,
    );
  });

  it("one image for both sides: the older guest suite both static builds run in", () => {
    const catalog = loadCriuCatalog();
    const side = (version: string, guest_suite: string, runs_in: string[]) =>
      [
        loadConfig(),
        { value: { metadata: { version, guest_suite, runs_in } } } as unknown as StageOutcome<"criu">,
      ] as [ReturnType<typeof loadConfig>, StageOutcome<"criu">];
    const a = side("4.1.1", "trixie", ["bookworm", "trixie", "sid"]);
    const b = side("4.2.1", "sid", ["bookworm", "trixie", "sid"]);
    expect(imageSide(catalog, a, b)[1].value.metadata.version).toBe("4.1.1");
    expect(imageSide(catalog, b, a)[1].value.metadata.version).toBe("4.1.1");
    // A dynamic build runs only in its own suite: then the image is of that one.
    const dyn = side("4.2.1", "sid", ["sid"]);
    expect(imageSide(catalog, a, dyn)[1].value.metadata.version).toBe("4.2.1");
  });

  it("scenarios.yaml: the cases the issue names migrate, and each script runs them with run_case", () => {
    const scenarios = loadScenarios(join(REPO_ROOT, "scenarios.yaml"));
    const migrating = migratingCases(scenarios);
    for (const c of [
      "simple-process/dump-restore",
      "pidns-init/setsid",
      "sibling/dump-restore",
      "tcp-established/loopback",
      "shm-propagation/external-master",
      "membarrier/registration",
      "frozen-cgroup/with-freeze-cgroup",
      "kata-container/dump-restore",
    ])
      expect(migrating).toContain(c);
    for (const s of scenarios)
      for (const c of s.migrate)
        expect(readFileSync(join(REPO_ROOT, "guest/scenarios", s.script), "utf8")).toMatch(
          new RegExp(`^run_case ${c} `, "m"),
        );
  });
});
