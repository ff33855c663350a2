import { describe, expect, it } from "vitest";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createResultsDisk, parseDoneRecord, readResultsDisk } from "../../scripts/boot/results-disk.js";
import { errorLines, readTestRecords, summarize } from "../../scripts/boot/results.js";
import { runInput, shQuote } from "../../scripts/boot/run-input.js";
import { loadScenarios } from "../../scripts/data/scenarios.js";
import {
  formatRun,
  kernelCommandLine,
  onlineCpus,
  parseGuestClock,
  runTimeline,
} from "../../scripts/boot/stage.js";
import { loadCriuCatalog } from "../../scripts/data/criu-catalog.js";
import { loadKernelRequirements } from "../../scripts/data/kernel-requirements.js";
import { run } from "../../scripts/lib/exec.js";
import { REPO_ROOT } from "../../scripts/lib/paths.js";
import { guestContractEnv } from "../../scripts/lib/guest-contract.js";
import type { ImageResult } from "../../scripts/image/stage.js";
import { missingTools } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";

const LIB = join(REPO_ROOT, "guest/lib.sh");

describe("run_bounded (guest/lib.sh, run by this host's sh)", () => {
  it("returns the command's exit code at once, and 124 with diagnostics at the deadline, leaving no watchdog behind", async () => {
    const dir = tempDir("crg-bounded-");
    const env = join(dir, "contract.env");
    writeFileSync(env, guestContractEnv());
    // Unique sleep lengths, so leftovers can be told apart from anything else on the host.
    const script = `CRG_CONTRACT_ENV=${env}; . ${LIB}
      uptime_cs t0; run_bounded 5 "$1/a" sh -c 'exit 3'; rc=$?; seconds_since s "$t0"; echo "quick rc=$rc $s"
      uptime_cs t0; run_bounded 1 "$1/b" sleep 31.37; rc=$?; seconds_since s "$t0"; echo "slow rc=$rc $s"
      run_bounded 301.37 "$1/c" true; echo "short rc=$?"
      # Many quick commands: each stops its watchdog at a different moment of its start-up (a
      # TERM caught by the sleep's child before it reset its traps once left most sleeps behind).
      for i in $(seq 50); do run_bounded 301.37 "$1/c" true; done
      # A killed watchdog's sleep goes within moments, also on a loaded machine (this file may
      # run first, beside the suite's start-up); a left-behind one would live 301 s.
      for i in $(seq 50); do pgrep -f "^sleep (31|301)\\.37" > /dev/null || break; sleep 0.1; done
      pgrep -f "^sleep (31|301)\\.37" || echo "no leftovers"
      uptime_cs a; sleep 0.3; seconds_since s "$a"; echo "$s"
      uptime_cs t0; run_bounded 0 "$1/d" sleep 7.37; rc=$?; seconds_since s "$t0"; echo "zero rc=$rc $s"`;
    const r = await run(["sh", "-c", script, "sh", dir], { timeoutMs: 30_000, allowFailure: true });
    const lines = r.stdout.trim().split("\n");
    const [quick, slow] = lines.map((l) => Number(l.split(" ")[2]));
    expect(lines[0]).toMatch(/^quick rc=3 /);
    expect(quick).toBeLessThan(1);
    expect(lines[1]).toMatch(/^slow rc=124 /);
    expect(slow).toBeGreaterThanOrEqual(1);
    expect(slow).toBeLessThan(4);
    const diag = readFileSync(join(dir, "b"), "utf8");
    expect(diag).toMatch(/^TIMEOUT after 1s: sleep 31\.37/);
    // Every process of the machine, the stuck sleep among them: pid ppid state wchan comm.
    const table = diag.split("--- every process (pid ppid state wchan command)\n")[1] ?? "";
    expect(table).toMatch(/^\d+ \d+ S \S+ sleep$/m);
    expect(table).toMatch(/^1 0 [A-Z] \S+ \S+/m);
    expect(lines.slice(2, 4)).toEqual(["short rc=0", "no leftovers"]);
    // The test clock without forks: seconds with two decimals.
    expect(lines[4]).toMatch(/^0\.[3-9]\d$/);
    // A deadline that comes before the command's pid is written (a loaded machine) still kills it.
    expect(lines[5]).toMatch(/^zero rc=124 /);
    expect(Number(lines[5].split(" ")[2])).toBeLessThan(5);
  });
});

describe("feature checks and waits (guest/lib.sh, guest/scenario-lib.sh, on this host)", () => {
  it("runs the feature checks in a pool under one deadline: each its own verdict, the hung one a timeout with diagnostics, the unreached skipped", async () => {
    const dir = tempDir("crg-features-");
    writeFileSync(join(dir, "contract.env"), guestContractEnv());
    // A CRIU stand-in: `check --feature F` passes, fails with an Error line, or hangs.
    const criu = join(dir, "criu");
    writeFileSync(
      criu,
      `#!/bin/sh\ncase $3 in\n  hang) sleep 41.73 ;;\n  bad*) echo "(00.010) Error (criu/cr-check.c:9): $3 is off"; echo "the end"; exit 1 ;;\n  *) echo "$3 is supported" ;;\nesac\n`,
      { mode: 0o755 },
    );
    const out = join(dir, "out");
    // Two workers: one takes a, hang, late; the other b, bad1, c.
    const script = `CRG_CONTRACT_ENV=${dir}/contract.env; HERE=${join(REPO_ROOT, "guest")}; OUT=${out}; CRIU=${criu}; TEST_TIMEOUT=2; CHECK_JOBS=2
      export HERE OUT CRIU TEST_TIMEOUT CHECK_JOBS CRG_CONTRACT_ENV; . ${LIB}
      uptime_cs t0; run_feature_checks a b hang bad1 late c; seconds_since s "$t0"; echo "took $s"
      sleep 0.2; pgrep -f "^sleep 41\\.73" || echo "no leftovers"`;
    const r = await run(["sh", "-c", script], { timeoutMs: 30_000, allowFailure: true });
    const read = (t: string, f: string) => readFileSync(join(out, "tests/feature", t, f), "utf8").trim();
    for (const t of ["a", "b", "c"])
      expect([read(t, "status"), read(t, "message")]).toEqual(["PASS", `${t} is supported`]);
    expect([read("bad1", "status"), read("bad1", "rc"), read("bad1", "message")]).toEqual([
      "FAIL",
      "1",
      "Error (criu/cr-check.c:9): bad1 is off",
    ]);
    expect([read("hang", "status"), read("hang", "rc")]).toEqual(["FAIL", "124"]);
    expect(read("hang", "diag.txt")).toMatch(/TIMEOUT after 2s[\s\S]*check --feature hang/);
    expect([read("late", "status"), read("late", "message")]).toEqual([
      "SKIP",
      "not run: the feature checks' deadline (2s) passed while feature/hang ran",
    ]);
    const took = Number(/took (\S+)/.exec(r.stdout)?.[1]);
    expect(took).toBeGreaterThanOrEqual(2);
    expect(took).toBeLessThan(5);
    expect(r.stdout).toMatch(/no leftovers/);
    expect(() => readFileSync(join(out, "tests/feature-checks.diag"))).toThrow();
  });

  it("runs the scenarios side by side in the order listed, never two that hold the same thing at once, each under its own deadline", async () => {
    const dir = tempDir("crg-scenarios-");
    writeFileSync(join(dir, "contract.env"), guestContractEnv());
    // HERE as the guest has it: lib.sh, and stand-in scenarios that log their start and end.
    const here = join(dir, "here");
    mkdirSync(join(here, "scenarios"), { recursive: true });
    writeFileSync(join(here, "lib.sh"), readFileSync(LIB));
    const log = join(dir, "log");
    writeFileSync(
      join(here, "scenarios", "sleeper.sh"),
      `. "$HERE/lib.sh"; uptime_cs t; echo "start $SCENARIO $t" >> ${log}; sleep "$(cat "$IN/$SCENARIO")"; uptime_cs t; echo "end $SCENARIO $t" >> ${log}; record "$SCENARIO/case" PASS 0 0 "slept"\n`,
    );
    const input = join(dir, "in");
    mkdirSync(input);
    const queue = join(dir, "queue");
    // name, step timeout, script, holds: "long" holds two, one of them shared with "mounts2";
    // "stuck" overruns its 6 s.
    const rows = [
      ["long", "1.2", "other mounts"],
      ["stuck", "8", "-"],
      ["short1", "0.3", "-"],
      ["mounts2", "0.3", "mounts"],
      ["short2", "0.3", "-"],
      ["short3", "0.3", "-"],
    ];
    for (const [name, secs] of rows) writeFileSync(join(input, name), secs);
    writeFileSync(
      queue,
      rows.map(([name, , holds]) => `${name}\t${name === "stuck" ? 1 : 60}\tsleeper.sh\t${holds}\n`).join(""),
    );
    const out = join(dir, "out");
    const script = `CRG_CONTRACT_ENV=${dir}/contract.env; HERE=${here}; IN=${input}; OUT=${out}; SCENARIO_JOBS=2; SCENARIO_POOL_DIR=${dir}/pool
      export HERE IN OUT CRG_CONTRACT_ENV SCENARIO_JOBS SCENARIO_POOL_DIR; . ${LIB}
      uptime_cs t0; run_scenarios ${queue}; seconds_since s "$t0"; echo "took $s"`;
    const r = await run(["sh", "-c", script], { timeoutMs: 30_000, allowFailure: true });
    const events = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([what, name, cs]) => ({ what, name, at: Number(cs) }));
    const at = (what: string, name: string) => events.find((e) => e.what === what && e.name === name)!.at;
    // Every scenario once; the first two in the list start first, side by side.
    expect(
      events
        .filter((e) => e.what === "start")
        .map((e) => e.name)
        .sort(),
    ).toEqual(rows.map(([n]) => n).sort());
    expect(
      events
        .filter((e) => e.what === "start")
        .slice(0, 2)
        .map((e) => e.name)
        .sort(),
    ).toEqual(["long", "stuck"]);
    // The two that hold "mounts" never overlap: mounts2 waits for long, the others go past it.
    expect(at("start", "mounts2")).toBeGreaterThanOrEqual(at("end", "long"));
    expect(at("start", "short1")).toBeLessThan(at("end", "long") + 50);
    for (const name of ["long", "short1", "mounts2", "short2", "short3"])
      expect(readFileSync(join(out, "tests", name, "case", "status"), "utf8").trim()).toBe("PASS");
    // The stuck one is stopped at its own deadline (6 x 1 s) and recorded, with diagnostics.
    expect([
      readFileSync(join(out, "tests/stuck/status"), "utf8").trim(),
      readFileSync(join(out, "tests/stuck/rc"), "utf8").trim(),
    ]).toEqual(["FAIL", "124"]);
    expect(readFileSync(join(out, "scenarios/stuck/diag.txt"), "utf8")).toMatch(
      /^TIMEOUT after 6s: sh .*sleeper\.sh/,
    );
    // Side by side: the whole is the stuck one's deadline, not the sum (6 + 1.2 + 4 x 0.3 s).
    const took = Number(/took (\S+)/.exec(r.stdout)?.[1]);
    expect(took).toBeGreaterThanOrEqual(6);
    expect(took).toBeLessThan(7.5);
    // Clock marks at each start and end, for the host's per-phase clock.
    for (const [name] of rows)
      expect(r.stdout).toMatch(
        new RegExp(`clock scenario:${name} [\\d.]+\\n[\\s\\S]*clock scenario-done:${name} [\\d.]+`),
      );
    expect(() => readFileSync(join(dir, "pool"))).toThrow();
  });

  it("runs only the case smoke --test names (ONLY=scenario/case), every case without it", async () => {
    const dir = tempDir("crg-only-");
    writeFileSync(join(dir, "contract.env"), guestContractEnv());
    const cases = (only: string) =>
      `HERE=${join(REPO_ROOT, "guest")}; IN=${dir}; OUT=${dir}/out; CRIU=/bin/true; SCENARIO=pick; STEP_TIMEOUT=5; CRG_CONTRACT_ENV=${dir}/contract.env; ONLY=${only}
      . ${join(REPO_ROOT, "guest/scenario-lib.sh")}
      half() { echo "ran $CASE"; case_end PASS "ok" success; return 1; }
      run_case one half half; run_case two half half`;
    const ran = async (only: string) =>
      (await run(["sh", "-c", cases(only)], { timeoutMs: 30_000, allowFailure: true })).stdout
        .split("\n")
        .filter((l) => l.startsWith("ran "));
    expect(await ran("pick/two")).toEqual(["ran pick/two"]);
    expect(await ran("")).toEqual(["ran pick/one", "ran pick/two"]);
    // Another scenario's case, a check or a feature: this scenario's cases all run (the host
    // sends only the named scenario, so this does not happen in a guest).
    expect(await ran("criu-check")).toEqual(["ran pick/one", "ran pick/two"]);
  });

  it("waits for a value, a change and a process's end with builtins, and gives up at the deadline, saying what it waited for", async () => {
    const dir = tempDir("crg-waits-");
    writeFileSync(join(dir, "contract.env"), guestContractEnv());
    const f = join(dir, "count");
    // start_session's wait (200 polls, seconds) runs beside the others: a command that never
    // becomes a session leader running its program (setsid cannot exec it).
    const script = `HERE=${join(REPO_ROOT, "guest")}; IN=${dir}; OUT=${dir}/out; CRIU=/bin/true; SCENARIO=waits; STEP_TIMEOUT=5; CRG_CONTRACT_ENV=${dir}/contract.env
      . ${join(REPO_ROOT, "guest/scenario-lib.sh")}
      ( pid=$(start_session ${dir}/no-such-program); echo "rc=$? pid=[$pid]" > ${dir}/session ) 2> ${dir}/session.err &
      sleep 30.37 & lone=$!
      ( ns_init $lone || echo "no ns init under $lone" > ${dir}/ns ) 2> ${dir}/ns.err &
      echo x > ${f}
      ( i=0; while [ $i -lt 8 ]; do i=$((i + 1)); echo $i > ${f}.t; mv ${f}.t ${f}; sleep 0.1; done ) &
      wait_value ${f} "v >= 5" 5 && echo "reached $SEEN"
      wait_value ${f} "v > 100" 1 || echo "gave up"
      wait_changed ${f} 8 1 || echo "unchanged"
      wait_for ${dir}/never 1 || echo "never written"
      wait_value ${f} "x > 1" 1; echo "bad condition rc=$?"
      pid=$(start_session sh -c 'while :; do sleep 0.05; done')
      [ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ] && echo "session leader $pid"
      kill -STOP $pid; wait_gone 1 $pid || echo "still there"; kill -CONT $pid
      kill_tree_wait "$pid" && ! [ -e /proc/$pid ] && echo "gone"
      # In a case: the wait's message goes to the case's log, and last_wait gives it to the case.
      case_begin a-case; wait_for ${dir}/never 1 || case_end FAIL "nothing came: $(last_wait)" error
      kill $lone; wait; cat ${dir}/session`;
    const r = await run(["sh", "-c", script], { timeoutMs: 60_000, allowFailure: true });
    const lines = r.stdout.trim().split("\n");
    expect(Number(/reached (\d+)/.exec(lines[0])?.[1])).toBeGreaterThanOrEqual(5);
    expect(lines.slice(1, 5)).toEqual(["gave up", "unchanged", "never written", "bad condition rc=2"]);
    expect(lines[5]).toMatch(/^session leader \d+$/);
    expect(lines.slice(6, 8)).toEqual(["still there", "gone"]);
    const pid = lines[5].split(" ")[2];
    const said = r.stderr.split("\n");
    expect(said).toContain(
      `timed out after 1s waiting for the number in ${f} to satisfy v > 100 (it reads '8')`,
    );
    expect(said).toContain(`timed out after 1s waiting for ${f} to change from '8'`);
    expect(said).toContain(`timed out after 1s waiting for ${dir}/never to be written`);
    expect(said).toContain("wait_value: the condition must start with 'v ' (the number): x > 1");
    expect(said).toContain(`timed out after 1s waiting for pid(s) ${pid} to be gone`);
    const lone = /no ns init under (\d+)/.exec(readFileSync(join(dir, "ns"), "utf8"))?.[1];
    expect(readFileSync(join(dir, "ns.err"), "utf8").trim()).toMatch(
      new RegExp(
        `^timed out after \\d+\\.\\d\\ds waiting for a namespace init under pid ${lone} running its own program \\(last seen: none\\)$`,
      ),
    );
    // A session that never started: a failure and a message, no pid.
    expect(readFileSync(join(dir, "session"), "utf8").trim()).toBe("rc=1 pid=[]");
    expect(readFileSync(join(dir, "session.err"), "utf8")).toMatch(
      new RegExp(
        `^timed out after \\d+\\.\\d\\ds waiting for pid \\d+ \\(${dir}/no-such-program\\) to lead its own session running its command \\(killed\\)$`,
        "m",
      ),
    );
    const message = readFileSync(join(dir, "out/tests/waits/a-case/message"), "utf8").trim();
    expect(message).toBe(`nothing came: timed out after 1s waiting for ${dir}/never to be written`);
    expect(readFileSync(join(dir, "out/tests/waits/a-case/out.log"), "utf8")).toContain(
      `timed out after 1s waiting for ${dir}/never to be written`,
    );
  });
});

describe("counter files (guest/helpers/crg-counter.h, read by scenario-lib.sh's counter)", () => {
  it.skipIf(missingTools(["gcc"]))(
    "are rewritten in place at a fixed size, so a dump that catches a write restores the same file",
    async () => {
      const dir = tempDir("crg-counter-");
      await run(
        [
          "gcc",
          "-O2",
          "-Wall",
          "-Werror",
          "-o",
          join(dir, "crg-kata"),
          join(REPO_ROOT, "guest/helpers/crg-kata.c"),
        ],
        { timeoutMs: 120_000 },
      );
      mkdirSync(join(dir, "st"));
      const st = join(dir, "st");
      const port = 40_000 + (process.pid % 20_000);
      const script = `HERE=${join(REPO_ROOT, "guest")}; IN=${dir}; OUT=${dir}/out; CRIU=/bin/true; SCENARIO=counter; STEP_TIMEOUT=5; CRG_CONTRACT_ENV=${dir}/contract.env
      . ${join(REPO_ROOT, "guest/scenario-lib.sh")}
      ${join(dir, "crg-kata")} ${port} ${st} & pid=$!
      wait_value ${st}/count "v >= 1" 10 && first=$(stat -c %i ${st}/count)
      # Before the first accept (tick 10): already its full size, as a dump now would record it.
      echo "early accepts $(counter ${st}/accepts) size $(stat -c %s ${st}/accepts)"
      # Past 9 -> 10: the size stays the same when the value gets a digit longer.
      wait_value ${st}/count "v >= 12" 10 && echo "value $(counter ${st}/count) size $(stat -c %s ${st}/count) $(stat -c %s ${st}/accepts) inode $([ "$(stat -c %i ${st}/count)" = "$first" ] && echo same)"
      ls ${st}
      kill $pid`;
      writeFileSync(join(dir, "contract.env"), guestContractEnv());
      const r = await run(["sh", "-c", script], { timeoutMs: 30_000, allowFailure: true });
      const m = /value (\d+) size (\d+) (\d+) inode (\w*)/.exec(r.stdout);
      expect(m, r.stdout + r.stderr).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThanOrEqual(12);
      expect([m![2], m![3], m![4]]).toEqual(["21", "21", "same"]);
      expect(r.stdout).toMatch(/^early accepts 0 size 21$/m);
      // No temporary name ever: a dump can only have the counter itself open.
      expect(
        r.stdout
          .split("\n")
          .filter((l) => /^(count|accepts|lock)$/.test(l))
          .sort(),
      ).toEqual(["accepts", "count", "lock"]);
      expect(r.stdout).not.toMatch(/\.tmp/);
    },
  );
});

describe("results disk", () => {
  it("carries the input to the guest's shell code and its results back", async () => {
    const dir = tempDir("crg-rdisk-");
    const disk = join(dir, "results.img");
    await createResultsDisk(
      disk,
      { "run.conf": "CRIU_VERSION='4.1.1'\n", "requested.conf": "CONFIG_MEMBARRIER=y\n" },
      dir,
    );
    // The guest side, run on the host against the disk file: guest/lib.sh as shipped.
    // With the contract.env the image carries, generated from the host's contract module.
    const env = join(dir, "contract.env");
    writeFileSync(env, guestContractEnv());
    const script = `CRG_CONTRACT_ENV=${env}; . ${LIB}; mkdir -p "$1/in" "$1/out/tests/x"; read_input "$2" "$1/in" || exit 9; cp "$1/in/run.conf" "$1/out/seen.conf"; echo PASS > "$1/out/tests/x/status"; mkdir -p /run/cr-guest; write_output "$2" "$1/out"`;
    const r = await run(["sh", "-c", script, "sh", dir, disk], { timeoutMs: 30_000, allowFailure: true });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = join(dir, "extracted");
    expect(await readResultsDisk(disk, out)).toEqual({ ok: true });
    expect(readFileSync(join(out, "seen.conf"), "utf8")).toContain("CRIU_VERSION='4.1.1'");
    expect(readFileSync(join(out, "tests/x/status"), "utf8").trim()).toBe("PASS");
  });

  it("a disk the guest never wrote is an infrastructure error, not a result", async () => {
    const dir = tempDir("crg-rdisk-");
    const disk = join(dir, "results.img");
    await createResultsDisk(disk, { "run.conf": "" }, dir);
    const r = await readResultsDisk(disk, join(dir, "out"));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(/did not write its results/);
    expect(parseDoneRecord(Buffer.from("CRGUEST-DONE out=123\n"))).toBe(123);
    expect(parseDoneRecord(Buffer.from("garbage"))).toBeUndefined();
  });
});

describe("run input", () => {
  const catalog = loadCriuCatalog();
  const scenarios = loadScenarios(join(REPO_ROOT, "scenarios.yaml"));

  it("expects the fatal membarrier probe from 3.19 on, unless patched", () => {
    const base = {
      catalog,
      requirements: loadKernelRequirements(),
      requested: new Map([
        ["CONFIG_MEMBARRIER", "y"],
        ["CONFIG_EXPERT", "n"],
      ]),
      scenarios,
      testTimeoutSeconds: 60,
    };
    expect(runInput({ ...base, criuVersion: "3.17.1", patches: [] }).expectations.MEMBARRIER_PROBE).toBe(
      "tolerant",
    );
    expect(runInput({ ...base, criuVersion: "4.1.1", patches: [] }).expectations.MEMBARRIER_PROBE).toBe(
      "fatal",
    );
    const patched = runInput({ ...base, criuVersion: "4.1.1", patches: ["membarrier-probe-nonfatal"] });
    expect(patched.expectations.MEMBARRIER_PROBE).toBe("tolerant");
    expect(patched.files["run.conf"]).toContain("CRIU_PATCHES='membarrier-probe-nonfatal'");
    expect(patched.files["requested.conf"]).toBe("CONFIG_MEMBARRIER=y\n# CONFIG_EXPERT is not set\n");
    // Features differ by version: 4.x knows pagemap_scan, 3.17.1 does not; every version's
    // cr-check.c has uffd-noncoop, so the guest checks it too.
    expect(patched.files["run.conf"]).toMatch(/FEATURES='[^']*pagemap_scan/);
    expect(patched.files["run.conf"]).toMatch(/FEATURES='[^']*\buffd-noncoop\b/);
    expect(runInput({ ...base, criuVersion: "3.17.1", patches: [] }).files["run.conf"]).not.toMatch(
      /pagemap_scan/,
    );
    const lines = patched.files["scenarios.conf"].trim().split("\n");
    expect(lines.length).toBe(scenarios.length);
    expect(lines.find((l) => l.startsWith("membarrier-enosys"))?.split("\t")[3]).toBe("no");
  });

  it("quotes values for the guest's sh", async () => {
    const r = await run(["sh", "-c", `X=${shQuote("it's $(not) run")}; printf %s "$X"`], { timeoutMs: 5000 });
    expect(r.stdout).toBe("it's $(not) run");
  });

  it("rejects a scenario list with a typo, a missing script or a bad range, naming file and line", () => {
    const dir = tempDir("crg-scen-");
    const f = join(dir, "s.yaml");
    writeFileSync(
      f,
      "scenarios:\n  - name: simple-process\n    script: simple-process.sh\n    timeout: 10\n    timout: 5\n",
    );
    expect(() => loadScenarios(f)).toThrow(
      /s\.yaml:5: unknown key 'scenarios\.0\.timout' \(did you mean 'timeout'\?\)/,
    );
    writeFileSync(f, "scenarios:\n  - name: x\n    script: nope.sh\n    timeout: 10\n");
    expect(() => loadScenarios(f)).toThrow(/guest\/scenarios\/nope\.sh does not exist/);
    writeFileSync(
      f,
      "scenarios:\n  - name: x\n    script: simple-process.sh\n    timeout: 10\n    criu: banana\n",
    );
    expect(() => loadScenarios(f)).toThrow(/s\.yaml:5: scenarios\.0\.criu: must be a semver range/);
    writeFileSync(f, "scenarios:\n  - name: x\n    script: simple-process.sh\n    timeout: soon\n");
    expect(() => loadScenarios(f)).toThrow(/s\.yaml:4: scenarios\.0\.timeout must be a number, got "soon"/);
  });
});

describe("results", () => {
  it("reads the guest's records: nested names, CRIU Error lines, diagnostics", () => {
    const out = tempDir("crg-out-");
    const t = join(out, "tests", "pidns-init", "no-setsid");
    mkdirSync(t, { recursive: true });
    writeFileSync(join(t, "status"), "PASS\n");
    writeFileSync(join(t, "rc"), "1\n");
    writeFileSync(join(t, "seconds"), "0.42\n");
    writeFileSync(join(t, "message"), "reproduced\n");
    writeFileSync(join(t, "outcome"), "error\n");
    writeFileSync(
      join(t, "dump.log"),
      "(00.001) info\n(00.010) Error (criu/cr-dump.c:1618): A session leader of 444(1) is outside of its pid namespace\n",
    );
    const f = join(out, "tests", "frozen-cgroup", "without-freeze-cgroup");
    mkdirSync(f, { recursive: true });
    writeFileSync(join(f, "status"), "FAIL\n");
    writeFileSync(join(f, "diag.txt"), "TIMEOUT after 30s\nwchan: do_freezer_trap\n");
    const recs = readTestRecords(out, out);
    expect(recs.map((r) => r.name)).toEqual(["frozen-cgroup/without-freeze-cgroup", "pidns-init/no-setsid"]);
    const p = recs[1];
    expect(p).toMatchObject({ status: "PASS", exit_code: 1, seconds: 0.42, outcome: "error" });
    expect(p.error_lines).toEqual([
      "Error (criu/cr-dump.c:1618): A session leader of 444(1) is outside of its pid namespace",
    ]);
    expect(recs[0].diagnostics).toContain("do_freezer_trap");
    expect(summarize(recs)).toEqual({ PASS: 1, FAIL: 1, SKIP: 0, ERROR: 0 });
    expect(errorLines("Warn x\n(0.1) Error (a.c:1): b\n")).toEqual(["Error (a.c:1): b"]);
  });

  it("an infrastructure error reads as such, never as a CRIU result", () => {
    const text = formatRun({
      status: "ERROR",
      error: "timeout: boot timeout",
      attempts: [{ status: "timeout", reason: "x", seconds: 180, console_log: "c" }],
    } as never);
    expect(text).toMatch(/^ERROR \(infrastructure, not a CRIU result\)/);
  });

  it("the per-phase clock splits a run into host, boot, tests, guest overhead and power-off", () => {
    const r = {
      seconds: 80,
      attempts: [
        {
          status: "ok",
          reason: "end marker seen",
          seconds: 75,
          boot_seconds: 2.5,
          prepare_seconds: 0.4,
          end_seconds: 71,
          read_seconds: 1.2,
          console_log: "c",
        },
      ],
      tests: [{ seconds: 14.3 }, { seconds: 13.1 }, { seconds: 7.4 }],
    } as never;
    const p = Object.fromEntries(runTimeline(r).map((x) => [x.phase, x.seconds]));
    expect(p["QEMU start to guest init"]).toBe(2.5);
    expect(p["tests (sum of each test's clock)"]).toBeCloseTo(34.8);
    expect(p["guest outside tests (set-up, collecting, packing)"]).toBeCloseTo(71 - 2.5 - 34.8);
    expect(p["end marker to QEMU exit (power-off)"]).toBe(4);
    expect(p["host: results read"]).toBe(1.2);
    // A run recorded before the clock existed: unknown phases are null, never invented.
    const old = {
      seconds: 80,
      attempts: [{ status: "ok", reason: "", seconds: 75, boot_seconds: 2.5, console_log: "c" }],
      tests: [],
    } as never;
    expect(
      Object.fromEntries(runTimeline(old).map((x) => [x.phase, x.seconds]))[
        "end marker to QEMU exit (power-off)"
      ],
    ).toBeNull();
  });

  it("with the guest's clock marks the guest's time splits into set-up, checks, each scenario and packing", () => {
    // As the console shows them: kernel lines, the marks (some after the init's prefix), noise.
    const console = [
      "[    0.000000] Linux version 6.12.107",
      "cr-guest: init up: 6.12.107",
      "cr-guest: clock init 3.10",
      "cr-guest: clock checks 4.60",
      "cr-guest: PASS criu-check: Looks good.",
      "cr-guest: clock features 6.60",
      "cr-guest: clock ptrace 26.60",
      "cr-guest: clock scenario:simple-process 30.60",
      "cr-guest: clock scenario:kata-container 38.10",
      "cr-guest: clock tests-done 60.10",
      "cr-guest: clock packing 60.20",
      "cr-guest: clock written 68.60",
      "cr-guest: clock broken",
    ].join("\n");
    const marks = parseGuestClock(console);
    expect(marks.map((m) => m.mark)).toEqual([
      "init",
      "checks",
      "features",
      "ptrace",
      "scenario:simple-process",
      "scenario:kata-container",
      "tests-done",
      "packing",
      "written",
    ]);
    const r = {
      seconds: 80,
      attempts: [
        {
          status: "ok",
          reason: "",
          seconds: 75,
          boot_seconds: 2.5,
          end_seconds: 68.5,
          console_log: "c",
          guest_clock: marks,
        },
      ],
      tests: [{ seconds: 20 }],
    } as never;
    const p = Object.fromEntries(runTimeline(r).map((x) => [x.phase, x.seconds]));
    expect(p["guest: set-up (mounts, input disk)"]).toBeCloseTo(1.5);
    expect(p["guest: criu --version, criu check, check --all"]).toBeCloseTo(2);
    expect(p["guest: the --feature checks"]).toBeCloseTo(20);
    expect(p["guest: ptrace checks, kernel config"]).toBeCloseTo(4);
    expect(p["guest: scenario simple-process"]).toBeCloseTo(7.5);
    expect(p["guest: scenario kata-container"]).toBeCloseTo(22);
    expect(p["guest: end of the tests to packing"]).toBeCloseTo(0.1);
    expect(p["guest: results packed and written"]).toBeCloseTo(8.4);
    // The last mark runs to the end marker, on the host's clock (init at 2.5 s = uptime 3.1).
    expect(p["guest: sync to the end marker"]).toBeCloseTo(68.5 - (2.5 + 65.5));
    expect(p["tests (sum of each test's clock)"]).toBeUndefined();
  });

  it("scenarios that ran side by side are spans under the scenarios phase, not phases of their own", () => {
    const marks = parseGuestClock(
      [
        "init 3.00",
        "checks 4.00",
        "scenarios 10.00",
        "scenario:kata-container 10.01",
        "scenario:frozen-cgroup 10.02",
        "scenario-done:frozen-cgroup 19.02",
        "scenario:sibling 19.03",
        "scenario-done:sibling 22.03",
        "scenario-done:kata-container 24.01",
        "tests-done 24.10",
        "packing 24.20",
        "written 25.00",
      ]
        .map((l) => `cr-guest: clock ${l}`)
        .join("\n"),
    );
    const r = {
      seconds: 40,
      attempts: [
        {
          status: "ok",
          reason: "",
          seconds: 30,
          boot_seconds: 2,
          end_seconds: 24.5,
          console_log: "c",
          guest_clock: marks,
        },
      ],
      tests: [],
    } as never;
    const rows = runTimeline(r);
    const names = rows.map((x) => x.phase);
    const p = Object.fromEntries(rows.map((x) => [x.phase, x.seconds]));
    expect(p["guest: the scenarios"]).toBeCloseTo(14.1);
    // Each span right under it, with its own length; they overlap, so they are not phases.
    expect(
      names.slice(names.indexOf("guest: the scenarios") + 1, names.indexOf("guest: the scenarios") + 4),
    ).toEqual([
      "  guest: scenario kata-container (side by side)",
      "  guest: scenario frozen-cgroup (side by side)",
      "  guest: scenario sibling (side by side)",
    ]);
    expect(p["  guest: scenario kata-container (side by side)"]).toBeCloseTo(14);
    expect(p["  guest: scenario frozen-cgroup (side by side)"]).toBeCloseTo(9);
    expect(p["guest: end of the tests to packing"]).toBeCloseTo(0.1);
    expect(names.some((n) => n.includes("scenario-done"))).toBe(false);
  });

  it("counts the CPUs the guest had online, from its sysfs list", () => {
    expect(onlineCpus("0")).toBe(1);
    expect(onlineCpus("0-1")).toBe(2);
    expect(onlineCpus("0-3,6,8-9")).toBe(7);
    expect(onlineCpus("")).toBeUndefined();
    expect(onlineCpus("junk")).toBeUndefined();
  });

  it("boots our images by PARTUUID and existing ones by partition", () => {
    const fresh = { metadata: { root: { device: "/dev/sda1", partuuid: "c7a5" } } } as unknown as ImageResult;
    expect(kernelCommandLine(fresh)).toContain("root=PARTUUID=c7a5");
    const existing = {
      metadata: { root: { device: "/dev/sda2", partuuid: null } },
    } as unknown as ImageResult;
    expect(kernelCommandLine(existing)).toContain("root=/dev/vda2");
    expect(kernelCommandLine(existing)).toContain("init=/usr/libexec/cr-guest/init");
  });
});

describe("run plan", () => {
  it("keys a run by kernel, image, input, memory, the most vCPUs and a non-default bus; gives it the vCPUs asked within boot.cpus", async () => {
    const { planRun } = await import("../../scripts/boot/stage.js");
    const { loadConfig } = await import("../../scripts/lib/config.js");
    const catalog = loadCriuCatalog();
    const config = loadConfig({ set: ["boot.cpus=2", "boot.retries=1"] });
    const options = {
      kernel: { dir: "/k/abc", key: "abc", version: "6.12.107", config_sha256: "c", requested: new Map() },
      image: {
        dir: "/i/img1",
        metadata: { root: { device: "/dev/sda1", partuuid: "c7a5" }, agent: null },
        manifest: { base: "fresh trixie minbase" },
      } as unknown as ImageResult,
      criu: { metadata: { version: [...catalog.versions.keys()].at(-1)!, patches: [] } } as never,
      accel: "tcg" as const,
    };
    const plan = planRun(config, options);
    expect([plan.vcpus, plan.tries]).toEqual([2, 2]);
    expect(plan.append).toContain("root=PARTUUID=c7a5");
    expect(planRun(config, { ...options, vcpus: 1 })).toMatchObject({ key: plan.key, vcpus: 1 });
    expect(planRun(config, { ...options, vcpus: 9 }).vcpus).toBe(2);
    expect(planRun(config, { ...options, bus: "virtio" }).key).toBe(plan.key);
    expect(planRun(config, { ...options, bus: "nvme" }).key).not.toBe(plan.key);
    expect(planRun(config, { ...options, kernel: { ...options.kernel, key: "def" } }).key).not.toBe(plan.key);
    expect(planRun(loadConfig({ set: ["boot.cpus=2", "boot.memory_mib=4096"] }), options).key).not.toBe(
      plan.key,
    );
    expect(planRun(config, { ...options, conf: { PHASE: "A" } }).key).not.toBe(plan.key);
    expect(planRun(config, { ...options, transfer: { mode: "write" } }).key).not.toBe(plan.key);
  });
});

describe("runs of record", () => {
  it("an ERROR rerun keeps the last complete run; a complete one replaces it, the old one kept as superseded", async () => {
    const { promoteRun } = await import("../../scripts/boot/stage.js");
    const { mkdirSync, existsSync, readdirSync } = await import("node:fs");
    const runs = tempDir("crg-runs-");
    const attempt = (name: string, text: string) => {
      const d = join(runs, "k1.attempts", name);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, "results.json"), text);
      return d;
    };
    const first = await promoteRun(runs, "k1", attempt("a1", "complete 1"), "COMPLETE");
    expect(first).toBe(join(runs, "k1"));
    const failed = await promoteRun(runs, "k1", attempt("a2", "error"), "ERROR");
    expect(failed).toBe(join(runs, "k1.attempts", "a2"));
    expect(readFileSync(join(runs, "k1", "results.json"), "utf8")).toBe("complete 1");
    await promoteRun(runs, "k1", attempt("a3", "complete 2"), "COMPLETE");
    expect(readFileSync(join(runs, "k1", "results.json"), "utf8")).toBe("complete 2");
    const kept = readdirSync(join(runs, "k1.attempts"));
    expect(kept).toContain("a2");
    const superseded = kept.find((n) => n.startsWith("superseded-"))!;
    expect(readFileSync(join(runs, "k1.attempts", superseded, "results.json"), "utf8")).toBe("complete 1");
    expect(existsSync(join(runs, "k1.attempts", "a3"))).toBe(false);
  });
});
