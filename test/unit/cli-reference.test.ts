/**
 * docs/cli.md is generated from the flag and command tables (scripts/docs/cli-reference.ts):
 * the committed file must be what the generator renders now, and the renderer must carry every
 * part of a command (usage, summary, arguments, flags with their help and config keys, --json).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { FLAGS } from "../../scripts/cli-flags.js";
import { COMMANDS } from "../../scripts/cli.js";
import {
  CLI_REFERENCE,
  currentCliReference,
  flagKeys,
  renderCliReference,
  type CliTables,
} from "../../scripts/docs/cli-reference.js";

const fixture: CliTables = {
  commands: {
    frob: {
      summary: "frobnicate the widgets of a run",
      usage: "cr-guest frob WIDGET... [--level N]",
      flags: ["config", "jobs", "json"],
      filters: ["cell"],
      aliases: { plan: "dry-run" },
      positionals: { usage: "WIDGET...", help: "the widgets to frobnicate" },
      json: "the frobnicated widgets",
    },
  },
  flags: {
    config: { type: "string", arg: "FILE", help: "a pipeline.yaml on top of the default" },
    jobs: {
      type: "string",
      short: "j",
      arg: "N",
      help: "parallel jobs | for builds",
      sets: (v: string) => [`kernel.jobs=${v}`, `criu.jobs=${v}`],
    },
    json: { type: "boolean", help: "print one JSON document" },
    cell: { type: "string", arg: "ID", help: "only this cell" },
  },
  exitCodes: [
    [0, "done"],
    [2, "bad input"],
  ],
};

describe("the CLI reference", () => {
  it("docs/cli.md is what the generator renders from the current tables", () => {
    const committed = readFileSync(CLI_REFERENCE, "utf8");
    expect(committed === currentCliReference(), "docs/cli.md is stale: run make docs").toBe(true);
  });

  it("renders a command's summary, usage, arguments, options, filters, --json and old spellings", () => {
    const md = renderCliReference(fixture);
    expect(md).toContain(
      "### `frob`\n\nFrobnicate the widgets of a run.\n\n```\ncr-guest frob WIDGET... [--level N]\n```",
    );
    expect(md).toContain("- Arguments: `WIDGET...`: the widgets to frobnicate.");
    expect(md).toContain("- Options: `--config`, `--jobs`.");
    expect(md).toContain("  - `--cell ID`: only the cell with this id.");
    expect(md).toContain("- `--json`: prints the frobnicated widgets as one JSON document on stdout.");
    expect(md).toContain("`--plan` for `--dry-run`");
  });

  it("renders every flag with its help (pipes escaped), short form, config keys and commands", () => {
    const md = renderCliReference(fixture);
    expect(md).toContain(
      "| `--jobs N`, `-j` | parallel jobs \\| for builds | `kernel.jobs`, `criu.jobs` | frob |",
    );
    expect(md).toContain("| `--cell ID` | only this cell |  | frob |");
    expect(md).toContain("| 2 | bad input |");
  });

  it("reads the config keys a real flag stands for", () => {
    expect(flagKeys(FLAGS.criu)).toEqual(["criu.version"]);
    expect(flagKeys(FLAGS.jobs)).toEqual(["kernel.jobs", "criu.jobs"]);
    expect(flagKeys(FLAGS.prebuilt)).toEqual(["kernel.kind"]);
    expect(flagKeys(FLAGS.patch)).toEqual(["criu.patches"]);
    expect(flagKeys(FLAGS.force)).toEqual([]);
  });

  it("covers every command and every flag of the real tables", () => {
    const md = currentCliReference();
    for (const name of Object.keys(COMMANDS)) expect(md).toContain(`### \`${name}\``);
    for (const name of Object.keys(FLAGS)) expect(md).toMatch(new RegExp(`^\\| \`--${name}[ \`]`, "m"));
  });
});
