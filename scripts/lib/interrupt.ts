/**
 * Ctrl-C and SIGTERM: stop every child process (and its descendants), remove the temporary
 * directories of unfinished artifacts, say so, and exit 130 (SIGINT) or 143 (SIGTERM).
 * Long-running pieces register what they own while it is live.
 */
import { rmSync } from "node:fs";

type Killer = () => Promise<unknown> | unknown;

class InterruptHandler {
  interrupted = false;
  private children = new Set<Killer>();
  private temps = new Set<string>();
  private installed = false;

  /** A running child: `kill` stops it and its descendants. Returns the unregister function. */
  child(kill: Killer): () => void {
    this.children.add(kill);
    return () => this.children.delete(kill);
  }

  /** A temporary directory removed on interrupt (until it is renamed into place). */
  temp(dir: string): () => void {
    this.temps.add(dir);
    return () => this.temps.delete(dir);
  }

  install(): void {
    if (this.installed) return;
    this.installed = true;
    for (const [signal, code] of [
      ["SIGINT", 130],
      ["SIGTERM", 143],
    ] as const)
      process.on(signal, () => void this.stop(signal, code));
  }

  private async stop(signal: string, code: number): Promise<void> {
    if (this.interrupted) process.exit(code); // a second Ctrl-C: leave at once
    this.interrupted = true;
    process.stderr.write(`\ninterrupted (${signal}): stopping ${this.children.size} child process(es)\n`);
    // Bounded: a child that does not die within 5 s is left to the kernel's SIGKILL below.
    await Promise.race([
      Promise.allSettled([...this.children].map((k) => k())),
      new Promise((r) => setTimeout(r, 5000)),
    ]);
    for (const dir of this.temps) rmSync(dir, { recursive: true, force: true });
    process.stderr.write("interrupted\n");
    process.exit(code);
  }
}

export const interruptHandler = new InterruptHandler();
