/** Bad input through the real CLI: a clear message naming the input and the fix, non-zero exit. */
import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crGuest } from "../helpers/cli.js";

const dir = mkdtempSync(join(tmpdir(), "crg-cli-"));

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
