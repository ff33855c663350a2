/** `cr-guest bisect criu|config`: the verb, the flags both need, then the bisect itself. */
import { configOf, type CommandContext } from "../commands.js";
import { UserError } from "../lib/errors.js";
import { didYouMean } from "../lib/suggest.js";

const VERBS = ["criu", "config"] as const;

export async function bisectCommand(ctx: CommandContext): Promise<number> {
  const [verb, ...extra] = ctx.positionals;
  if (!verb || !(VERBS as readonly string[]).includes(verb) || extra.length)
    throw new UserError(
      `bisect ${ctx.positionals.join(" ") || "(nothing)"}: say what to bisect${verb ? didYouMean(verb, VERBS) : ""}`,
      "cr-guest bisect criu --git SOURCE --good REF --bad REF --test ID, or cr-guest bisect config --good A --bad B --test ID",
    );
  const v = ctx.values;
  for (const f of ["good", "bad", "test"] as const)
    if (!v[f])
      throw new UserError(
        `bisect ${verb} needs --${f}`,
        "give --good, --bad and --test (see cr-guest bisect --help)",
      );
  if (v.good === v.bad)
    throw new UserError(
      `--good and --bad are both ${v.good}`,
      "name two different ends: one that passes, one that fails",
    );
  const config = configOf(ctx);
  if (verb === "config") return (await import("./config.js")).bisectConfigCommand(ctx, config);
  return (await import("./criu.js")).bisectCriuCommand(ctx, config);
}
