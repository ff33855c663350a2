/**
 * The command line as commands see it: each flag typed from its row of FLAGS (a count is a
 * number, a repeatable flag a list), checked once at parse time for every command, the matrix
 * filters apart; unknown flags still refused; usage lines naming only what a command takes.
 */
import { describe, expect, it } from "vitest";
import { COMMANDS, parseCommandArgs } from "../../scripts/cli.js";
import { flagSets, positiveInt } from "../../scripts/cli-flags.js";
import { CI_STEPS } from "../../scripts/commands.js";
import { UserError } from "../../scripts/lib/errors.js";

const parse = (name: string, args: string[]) => parseCommandArgs(name, COMMANDS[name], args);

/** The UserError a call throws (the test fails if it throws nothing or something else). */
function userError(f: () => unknown): UserError {
  try {
    f();
  } catch (err) {
    if (err instanceof UserError) return err;
    throw err;
  }
  throw new Error("no error thrown");
}

describe("typed flag values", () => {
  it("strings, booleans and repeatable flags come as their FLAGS row says", () => {
    const p = parse("smoke", ["--criu", "4.1", "--patch", "a", "--patch", "b", "--force", "--json"]);
    expect(p.values).toEqual({ criu: "4.1", patch: ["a", "b"], force: true, json: true });
    expect(p.filters).toEqual({});
    expect(p.help).toBe(false);
  });

  it("a count is parsed once into a number, for every command that takes it", () => {
    expect(parse("matrix", ["--boots", "3"]).values.boots).toBe(3);
    expect(parse("ci", ["cell", "--boots", "2", "--criu", "4.1"]).values.boots).toBe(2);
    expect(parse("kernel", ["-j", "4"]).values.jobs).toBe(4);
    expect(flagSets(parse("kernel", ["-j", "4"]).values, COMMANDS.kernel.flags)).toEqual([
      "kernel.jobs=4",
      "criu.jobs=4",
    ]);
  });

  it("a bad count is refused at parse time, naming the flag and the fix (exit 2)", () => {
    for (const [cmd, flag, bad] of [
      ["matrix", "--boots", "0"],
      ["ci", "--boots", "two"],
      ["ci", "--boots", "1.5"],
      ["kernel", "--jobs", "-3"],
      ["smoke", "--jobs", "4x"],
    ]) {
      const err = userError(() => parse(cmd, [`${flag}=${bad}`]));
      expect(err.message).toBe(`${flag} ${bad} is not a positive whole number`);
      expect(err.hint).toBe(`pass ${flag} 1 or more`);
      expect(err.exitCode).toBe(2);
    }
    expect(positiveInt("12", "boots")).toBe(12);
  });

  it("--help wins over a bad argument", () => {
    const p = parse("matrix", ["--boots", "0", "--help"]);
    expect(p.help).toBe(true);
  });

  it("matrix filters are lists apart from the flags; a single run's --criu is one string", () => {
    const m = parse("matrix", ["--criu", "4.1", "--criu", "4.2", "--guest-suite", "trixie", "--dry-run"]);
    expect(m.filters).toEqual({ criu: ["4.1", "4.2"], "guest-suite": ["trixie"] });
    expect(m.values).toEqual({ "dry-run": true });
    expect(parse("ci", ["keys", "--criu", "4.1"]).filters).toEqual({ criu: ["4.1"] });
    expect(parse("criu", ["--criu", "4.1"]).values.criu).toBe("4.1");
  });

  it("unknown flags, and flags another command takes, still fail with the command named", () => {
    const err = userError(() => parse("kernel", ["--versoin", "6.1"]));
    expect(err.message).toMatch(/^kernel: .*--versoin/);
    expect(err.hint).toBe("see 'cr-guest kernel --help'");
    expect(userError(() => parse("doctor", ["--dry-run"])).message).toMatch(/--dry-run/);
    expect(userError(() => parse("compare", ["--boots", "2"])).message).toMatch(/--boots/);
  });

  it("old spellings map onto the flag (with a notice); a contradiction is refused", () => {
    const p = parse("kernel", ["--version", "6.1", "--base", "tinyconfig"]);
    expect(p.values).toEqual({ kernel: "6.1", "kernel-base": "tinyconfig" });
    expect(p.notices).toContain("note: --version is deprecated in 'kernel': use --kernel");
    expect(parse("criu", ["--plan"]).values).toEqual({ "dry-run": true });
    expect(userError(() => parse("criu", ["--criu", "4.1", "--version", "4.2"])).message).toBe(
      "--version 4.2 and --criu 4.1 disagree",
    );
  });

  it("--dry-run is taken by every command that builds or boots", () => {
    for (const name of ["kernel", "criu", "agent", "image", "smoke", "migrate", "matrix"])
      expect(parse(name, ["--dry-run"]).values["dry-run"], name).toBe(true);
  });

  it("flags stand for their config keys; --ref needs --git", () => {
    const p = parse("smoke", ["--criu", "4.2", "--guest-suite", "trixie", "--kernel", "6.1"]);
    expect(flagSets(p.values, COMMANDS.smoke.flags)).toEqual([
      'criu.version="4.2"',
      'criu.guest_suite="trixie"',
      'kernel.version="6.1"',
    ]);
    expect(userError(() => flagSets({ ref: "main" }, COMMANDS.criu.flags)).message).toBe(
      "--ref without --git",
    );
  });
});

describe("usage lines", () => {
  it("every flag a usage line names is one its command takes", () => {
    const wrong: string[] = [];
    for (const [name, cmd] of Object.entries(COMMANDS)) {
      const taken = new Set<string>([...cmd.flags, ...(cmd.filters ?? [])]);
      for (const m of cmd.usage.matchAll(/--([a-z][a-z-]*)/g))
        if (!taken.has(m[1])) wrong.push(`${name}: --${m[1]}`);
      expect(cmd.usage.startsWith(`cr-guest ${name}`), name).toBe(true);
    }
    expect(wrong).toEqual([]);
  });

  it("the commands that take --dry-run say so in their usage line", () => {
    for (const [name, cmd] of Object.entries(COMMANDS))
      if (cmd.flags.includes("dry-run")) expect(cmd.usage, name).toContain("--dry-run");
  });

  it("ci's usage and help name every step, keys too", () => {
    expect(Object.keys(CI_STEPS)).toEqual(["keys", "kernels", "cell", "report"]);
    for (const step of Object.keys(CI_STEPS)) {
      expect(COMMANDS.ci.usage).toContain(step);
      expect(COMMANDS.ci.positionals?.usage).toContain(step);
      expect(COMMANDS.ci.summary).toContain(`ci ${step}`);
    }
  });
});
