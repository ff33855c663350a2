/**
 * `cr-guest explain NAME [--criu V] [--json]`: what the kernel requirements map says about a
 * feature, a check, a start-up probe or a Kconfig symbol. Reads the repository's data only.
 */
import { configOf, type CommandContext } from "../commands.js";
import { resolveCriuVersion } from "../data/criu-catalog.js";
import { repoData } from "../data/repo-data.js";
import { UserError } from "../lib/errors.js";
import { explain, explainedDocument, formatExplained } from "./entry.js";

export async function explainCommand(ctx: CommandContext): Promise<number> {
  const v = ctx.values;
  if (v.prove) return (await import("./prove-command.js")).proveCommand(ctx, configOf(ctx));
  for (const flag of ["record", "kept", "max-batch", "dry-run", "force"] as const)
    if (v[flag] !== undefined)
      throw new UserError(`explain: --${flag} goes with --prove`, `add --prove, or drop --${flag}`);
  const [name, ...extra] = ctx.positionals;
  if (!name || extra.length)
    throw new UserError(
      name ? `explain takes one name, got ${ctx.positionals.join(" ")}` : "explain needs a name",
      "e.g. cr-guest explain uffd, explain check_fdinfo_ext, explain kerndat_uffd or explain USERFAULTFD",
    );
  const data = repoData();
  const criu = ctx.values.criu ? resolveCriuVersion(ctx.values.criu, data.criu).version : undefined;
  const explained = explain(data.kernelRequirements, name, criu);
  ctx.say(formatExplained(explained));
  ctx.emit(explainedDocument(explained));
  return 0;
}
