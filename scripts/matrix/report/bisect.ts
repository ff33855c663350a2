/**
 * The `cr-guest bisect` command for a regression between two reports: `bisect criu` when only
 * CRIU changed (between its tags, or the commits a git build recorded), `bisect config` when
 * only the kernel's .config changed. Any other change (both, the kernel version, nothing) has
 * no single axis to bisect.
 */
import type { CellResult } from "../cell.js";

export const CRIU_GIT = "https://github.com/checkpoint-restore/criu.git";
/** A cell does not record its cache dir: the default one (pipeline.yaml's cache_dir). */
export const DEFAULT_CACHE_DIR = "images";

export interface BisectAdvice {
  commands: string[];
  /** Why there is no command when one was expected. */
  note?: string;
}

/** A shell word as typed: quoted only when the shell would otherwise change it. */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const command = (args: string[]) => ["cr-guest", "bisect", ...args].map(shellWord).join(" ");

type Criu = NonNullable<CellResult["identities"]["criu"]>;

/** CRIU's tag for a version: v4.2 for 4.2 and 4.2.0 (its tags drop a patch level of 0). */
export function criuTag(version: string): string {
  return `v${version.replace(/^(\d+\.\d+)\.0$/, "$1")}`;
}

/** What `bisect criu` checks out for a cell's CRIU: its commit, else its release's tag. */
function criuRef(c: Criu): string | undefined {
  if (c.commit) return c.commit;
  // A git or local build without a recorded commit is not its version's tag.
  return c.provider === "git" || c.provider === "local-source" ? undefined : criuTag(c.version);
}

const kernelConfig = (key: string) => `${DEFAULT_CACHE_DIR}/kernel/${key}/config`;

/** The bisect commands for one test that went from PASS to FAIL between two runs of a cell. */
export function bisectAdvice(old: CellResult, now: CellResult, test: string): BisectAdvice {
  const [ok, ko] = [old.identities, now.identities];
  if (test === "build" || old.migration || now.migration) return { commands: [] };
  if (!ok.kernel || !ko.kernel || !ok.criu || !ko.criu) return { commands: [] };
  const [good, bad] = [criuRef(ok.criu), criuRef(ko.criu)];
  const criuChanged = good !== bad || ok.criu.sha256 !== ko.criu.sha256;
  const configChanged = ok.kernel.config_sha256 !== ko.kernel.config_sha256;
  // Another kernel version is a source change, not a config change.
  if (ok.kernel.version !== ko.kernel.version) return { commands: [] };
  if (criuChanged && configChanged)
    return { commands: [], note: "CRIU and the kernel config both changed: bisect one at a time" };
  if (criuChanged && good && bad && good !== bad)
    return {
      commands: [command(["criu", "--git", CRIU_GIT, "--good", good, "--bad", bad, "--test", test])],
    };
  if (configChanged) {
    const [a, b] = [kernelConfig(ok.kernel.key), kernelConfig(ko.kernel.key)];
    return {
      commands: [command(["config", "--good", a, "--bad", b, "--test", test, "--criu", now.criu_version])],
    };
  }
  return { commands: [] };
}
