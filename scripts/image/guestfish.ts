/**
 * One guestfish session per image: every mkdir, upload, chmod, symlink and the read-back
 * checksums go into a single script, so the appliance boots once (10-20 s a launch here).
 * Building the script is pure; running it is one command with a deadline.
 */
import { UserError } from "../lib/errors.js";
import { run, type RunResult } from "../lib/exec.js";
import { findInPath } from "../lib/host-tools.js";
import { existsSync, readdirSync } from "node:fs";

export type GuestOp =
  | { op: "mkdir"; path: string }
  | { op: "upload"; from: string; to: string; mode: number }
  | { op: "write"; to: string; content: string; mode: number }
  | { op: "symlink"; target: string; link: string };

/** guestfish words: quoted so spaces and quotes survive (its own quoting, not a shell's). */
export function gfQuote(word: string): string {
  if (/[\n\r]/.test(word))
    throw new UserError(
      `a guestfish argument may not contain a newline: ${JSON.stringify(word)}`,
      "rename the file",
    );
  return `"${word.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

export interface InjectionScript {
  text: string;
  /** `text` without its launch and mount: what a session started early still needs. */
  body: string;
  /** Guest paths whose sha256 the script prints, in order. */
  checksummed: string[];
}

/** `write` content travels through a host file: guestfish `upload` avoids any quoting of data. */
export function injectionScript(
  ops: GuestOp[],
  writeFile: (content: string) => string,
  rootDevice = "/dev/sda1",
): InjectionScript {
  const header = `${launchLines(rootDevice).join("\n")}\n`;
  const lines: string[] = [];
  const checksummed: string[] = [];
  for (const o of ops) {
    switch (o.op) {
      case "mkdir":
        lines.push(`mkdir-p ${gfQuote(o.path)}`);
        break;
      case "upload":
        lines.push(
          `upload ${gfQuote(o.from)} ${gfQuote(o.to)}`,
          `chmod 0${o.mode.toString(8)} ${gfQuote(o.to)}`,
        );
        checksummed.push(o.to);
        break;
      case "write":
        lines.push(
          `upload ${gfQuote(writeFile(o.content))} ${gfQuote(o.to)}`,
          `chmod 0${o.mode.toString(8)} ${gfQuote(o.to)}`,
        );
        checksummed.push(o.to);
        break;
      case "symlink":
        lines.push(`ln-sf ${gfQuote(o.target)} ${gfQuote(o.link)}`);
        break;
    }
  }
  // Read every injected file back in the same session.
  for (const path of checksummed)
    lines.push(`echo CRG-SUM ${gfQuote(path)}`, `checksum sha256 ${gfQuote(path)}`);
  lines.push("sync", "umount-all");
  const body = `${lines.join("\n")}\n`;
  return { text: header + body, body, checksummed };
}

function launchLines(rootDevice: string): string[] {
  return ["run", `mount ${gfQuote(rootDevice)} /`];
}

/** Pairs the `CRG-SUM path` markers with the checksum line that follows each. */
export function parseChecksums(stdout: string): Map<string, string> {
  const sums = new Map<string, string>();
  const lines = stdout.split("\n");
  for (let i = 0; i < lines.length - 1; i++) {
    const m = /^CRG-SUM (.+)$/.exec(lines[i]);
    if (m && /^[0-9a-f]{64}$/.test(lines[i + 1].trim())) sums.set(m[1], lines[i + 1].trim());
  }
  return sums;
}

export function guestfishEnv(accelWorks: boolean): Record<string, string> {
  // libguestfs boots an appliance VM: direct backend, and TCG where KVM does not work.
  return {
    LIBGUESTFS_BACKEND: "direct",
    ...(accelWorks ? {} : { LIBGUESTFS_BACKEND_SETTINGS: "force_tcg" }),
  };
}

export function requireGuestfish(): void {
  const missing: string[] = [];
  if (!findInPath("guestfish")) missing.push("guestfish (Debian package libguestfs-tools)");
  if (!existsSync("/boot") || !requireKernelUnderBoot())
    missing.push("a kernel under /boot for the appliance (Debian package linux-image-amd64)");
  if (missing.length)
    throw new UserError(
      `guestfish cannot run: missing ${missing.join(", ")}`,
      "apt-get install libguestfs-tools linux-image-amd64   (or run 'make setup')",
    );
}

function requireKernelUnderBoot(): boolean {
  try {
    return readdirSync("/boot").some((f) => f.startsWith("vmlinuz-"));
  } catch {
    return false;
  }
}

interface GuestfishRun {
  image: string;
  readonly?: boolean;
  timeoutMs: number;
  kvm: boolean;
  logFile?: string;
}

function guestfishCommand(
  opts: GuestfishRun,
  stdin: { input: string } | { stdin: AsyncIterable<string> },
): Promise<RunResult> {
  requireGuestfish();
  return run(
    ["guestfish", "--no-progress-bars", ...(opts.readonly ? ["--ro"] : ["--rw"]), "-a", opts.image],
    {
      ...stdin,
      timeoutMs: opts.timeoutMs,
      env: guestfishEnv(opts.kvm),
      logFile: opts.logFile,
    },
  );
}

/** Runs a guestfish script against an image; one appliance launch. */
export async function runGuestfish(opts: GuestfishRun & { script: string }): Promise<RunResult> {
  return guestfishCommand(opts, { input: opts.script });
}

/**
 * A guestfish session whose appliance boots now (10-20 s under TCG) and whose script comes
 * later: the image stage's injection, started while CRIU still builds. Still one launch.
 * The deadline covers the wait for the script too.
 */
export class GuestfishSession {
  private readonly queue = new LineQueue();
  private readonly result: Promise<RunResult>;
  private failure: unknown;

  constructor(opts: GuestfishRun & { rootDevice?: string }) {
    this.queue.push(`${launchLines(opts.rootDevice ?? "/dev/sda1").join("\n")}\n`);
    this.result = guestfishCommand(opts, { stdin: this.queue });
    // Seen by finish() or abort(); a launch that fails before either is not unhandled.
    this.result.catch((err) => (this.failure = err));
  }

  /** Sends the rest of the script (an InjectionScript's body) and waits for the session to end. */
  finish(body: string): Promise<RunResult> {
    this.queue.push(body);
    this.queue.close();
    return this.result;
  }

  /** Ends the session without changing the image (guestfish exits when its input ends). */
  async abort(): Promise<void> {
    this.queue.close();
    await this.result.catch(() => undefined);
  }

  /** Whether the session already ended in an error (e.g. the appliance did not boot). */
  get failed(): unknown {
    return this.failure;
  }
}

/** Lines for a command's standard input, pushed as they are made; ends on close. */
class LineQueue implements AsyncIterable<string> {
  private readonly chunks: string[] = [];
  private closed = false;
  private wake: (() => void) | undefined;

  push(chunk: string): void {
    if (this.closed) throw new Error("the guestfish session's input is already closed");
    this.chunks.push(chunk);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      const next = this.chunks.shift();
      if (next !== undefined) yield next;
      else if (this.closed) return;
      else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}
