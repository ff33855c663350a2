/**
 * A stage as named phases (tuxmake's Build.run shape): an ordered list of steps over one
 * state object, each timed and recorded as {name, seconds, status}. A phase that throws stops
 * the list; the error keeps its class, hint and exit code, and its message starts with the
 * phase's name (failedPhaseOf gives it to code). A skipped phase is recorded as skipped.
 *
 * The runner draws nothing: progress.ts's runSteps shows the same phases as listr2 lines, and a
 * stage that runs inside another's line (image, boot) passes its log.
 */

export type PhaseStatus = "done" | "skipped" | "failed";

export interface PhaseTiming {
  name: string;
  seconds: number;
  status: PhaseStatus;
}

export type PhaseLog = (line: string) => void;

export interface Phase<S> {
  /** Short and stable: it names the phase in timings, errors and metadata. */
  name: string;
  /** Skip the phase (recorded as skipped) when this returns a reason. */
  skip?: (state: S) => string | false;
  run: (state: S, log: PhaseLog, setTitle: (title: string) => void) => Promise<void>;
}

export interface PhaseHooks {
  /** The stage the phases belong to: errors then read "image inject: ...". */
  stage?: string;
  log?: PhaseLog;
  setTitle?: (title: string) => void;
  started?: (name: string) => void;
  /** After each phase, with its timing (and the reason when it was skipped). */
  ended?: (timing: PhaseTiming, skipped?: string) => void;
}

const failedPhases = new WeakMap<object, string>();

/** The phase an error came from, when a phase runner saw it fail (the innermost one). */
export function failedPhaseOf(err: unknown): string | undefined {
  return typeof err === "object" && err !== null ? failedPhases.get(err) : undefined;
}

/** Marks `err` as `where`'s and says so at the start of its message (once: the innermost phase). */
function nameFailure(err: unknown, where: string): unknown {
  const e = err instanceof Error ? err : new Error(String(err));
  if (failedPhases.has(e)) return e;
  failedPhases.set(e, where);
  e.message = `${where}: ${e.message}`;
  return e;
}

const noop = () => undefined;

/**
 * Runs one phase and appends its timing to `timings`. Throws what the phase threw, named.
 * runSteps calls it once per listr2 task; runPhases once per phase.
 */
export async function runPhase<S>(
  state: S,
  phase: Phase<S>,
  timings: PhaseTiming[],
  hooks: PhaseHooks = {},
): Promise<PhaseTiming> {
  const skipped = phase.skip?.(state);
  if (skipped) {
    const timing: PhaseTiming = { name: phase.name, seconds: 0, status: "skipped" };
    timings.push(timing);
    hooks.ended?.(timing, skipped);
    return timing;
  }
  hooks.started?.(phase.name);
  const t0 = performance.now();
  const record = (status: PhaseStatus): PhaseTiming => {
    const timing = { name: phase.name, seconds: Math.round(performance.now() - t0) / 1000, status };
    timings.push(timing);
    return timing;
  };
  try {
    await phase.run(state, hooks.log ?? noop, hooks.setTitle ?? noop);
  } catch (err) {
    hooks.ended?.(record("failed"));
    throw nameFailure(err, hooks.stage ? `${hooks.stage} ${phase.name}` : phase.name);
  }
  const timing = record("done");
  hooks.ended?.(timing);
  return timing;
}

/** Runs the phases in order over `state`; returns every phase's timing (skipped ones too). */
export async function runPhases<S>(
  state: S,
  phases: Phase<S>[],
  hooks: PhaseHooks = {},
): Promise<PhaseTiming[]> {
  const timings: PhaseTiming[] = [];
  for (const phase of phases) await runPhase(state, phase, timings, hooks);
  return timings;
}

/** The seconds of each phase that ran, by name (a stage's `seconds` record). */
export function phaseSeconds(timings: PhaseTiming[]): Record<string, number> {
  return Object.fromEntries(timings.filter((t) => t.status !== "skipped").map((t) => [t.name, t.seconds]));
}

/** A value an earlier phase must have set: a clear error, not a `!`, when the order is wrong. */
export function fromPhase<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is not set: the phase that makes it has not run`);
  return value;
}
