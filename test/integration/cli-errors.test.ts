/** Bad input through the real CLI: a clear message naming the input and the fix, non-zero exit. */
import { describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { crGuest } from "../helpers/cli.js";
import { tempDir } from "../helpers/temp.js";

const dir = tempDir("crg-cli-");

describe("cr-guest CLI errors", () => {
  it("--help works for the program and each command", async () => {
    const top = await crGuest(["--help"]);
    expect(top.exitCode).toBe(0);
    expect(top.stdout).toContain("kernel");
    const k = await crGuest(["kernel", "--help"]);
    expect(k.stdout).toContain("--check-config");
  });

  it("an unknown version lists the known ones", async () => {
    const r = await crGuest(["kernel", "--check-config", "--version", "5.4"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("unknown kernel version '5.4'");
    expect(r.stderr).toMatch(/known versions: .*6\.12\.107/);
  });

  it("malformed YAML names file and line", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "kernel:\n  version: 6.12\n\tbase: allnoconfig\n");
    const r = await crGuest(["kernel", "--check-config", "--config", bad]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${bad}:3`);
  });

  it("an unknown command and an unknown flag say what exists", async () => {
    const r = await crGuest(["kernal"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("did you mean 'kernel'");
    const f = await crGuest(["kernel", "--versoin", "6.1"]);
    expect(f.exitCode).toBe(2);
    expect(f.stderr).toContain("--versoin");
  });
});

describe("one meaning per flag, clean machine output", () => {
  it("cr-guest --version prints the version; help lists the exit codes", async () => {
    const v = await crGuest(["--version"]);
    expect(v.exitCode).toBe(0);
    expect(v.stdout.trim()).toMatch(/^cr-guest \d+\.\d+\.\d+$/);
    const h = await crGuest(["smoke", "--help"]);
    expect(h.stdout).toMatch(/--criu V\s+the CRIU version/);
    expect(h.stdout).toMatch(/--kernel K\s+the kernel version/);
    expect(h.stdout).toMatch(/--image-base FILE/);
    expect(h.stdout).toMatch(/Exit codes:[\s\S]*\n\s+4\s+an infrastructure error/);
  });

  it("old spellings still work, with a one-line deprecation notice; contradictions are refused", async () => {
    const r = await crGuest(["kernel", "--check-config", "--version", "5.4"]);
    expect(r.stderr).toContain("note: --version is deprecated in 'kernel': use --kernel");
    expect(r.stderr).toContain("unknown kernel version '5.4'");
    const both = await crGuest(["criu", "--criu", "4.1", "--version", "4.2", "--dry-run"]);
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toContain("--version 4.2 and --criu 4.1 disagree");
    const jobs = await crGuest(["kernel", "--check-config", "-j", "zero"]);
    expect(jobs.exitCode).toBe(2);
    expect(jobs.stderr).toContain("--jobs zero is not a positive whole number");
    const boots = await crGuest(["matrix", "--dry-run", "--boots", "0"]);
    expect(boots.exitCode).toBe(2);
    expect(boots.stderr).toContain("--boots 0 is not a positive whole number");
  });

  it("--dry-run is refused where nothing is built, and with --verify-config", async () => {
    const doctor = await crGuest(["doctor", "--dry-run"]);
    expect(doctor.exitCode).toBe(2);
    expect(doctor.stderr).toContain("--dry-run");
    const verify = await crGuest(["kernel", "--verify-config", "/dev/null", "--dry-run"]);
    expect(verify.exitCode).toBe(2);
    expect(verify.stderr).toContain("--verify-config builds nothing, --dry-run plans a build");
  });

  it("--json: stdout is exactly one JSON document, progress and text go to stderr", async () => {
    for (const args of [
      ["criu", "--criu", "4.1", "--dry-run", "--json"],
      ["matrix", "--dry-run", "--json", "--criu", "4.1"],
      ["kernel", "--dry-run", "--json"],
      ["smoke", "--dry-run", "--json"],
      ["migrate", "--from-criu", "4.1", "--to-criu", "4.2", "--dry-run", "--json"],
      ["config", "--json"],
    ]) {
      const r = await crGuest(args, 5 * 60_000);
      expect(r.exitCode, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      expect(() => JSON.parse(r.stdout), args.join(" ")).not.toThrow();
      expect(r.stdout.trim().startsWith("{")).toBe(true);
    }
    const plan = JSON.parse((await crGuest(["criu", "--criu", "4.1", "--dry-run", "--json"])).stdout);
    expect(plan).toMatchObject({ version: "4.1.1", serving: "debian-source" });
    const cells = JSON.parse(
      (await crGuest(["matrix", "--dry-run", "--json", "--criu", "4.1"], 5 * 60_000)).stdout,
    ).cells;
    expect(cells.every((c: { criu: string }) => c.criu === "4.1.1")).toBe(true);
    // A dry run of a command that boots: each stage in the driver's order, hit or not.
    const smoke = JSON.parse((await crGuest(["smoke", "--dry-run", "--json"])).stdout);
    expect(smoke.command).toBe("smoke");
    expect(smoke.stages.map((s: { stage: string }) => s.stage)).toEqual([
      "kernel",
      "criu",
      "agent",
      "image",
      "boot",
    ]);
    for (const s of smoke.stages) expect(["reuse", "build", "run", "skip"]).toContain(s.would);
  });
});
