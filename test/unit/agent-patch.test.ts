import { describe, expect, it } from "vitest";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { patchAgentSource, setsidState } from "../../scripts/agent/agent.js";
import { loadAgentPatches, selectAgentPatch } from "../../scripts/data/agent-patches.js";
import { tempDir } from "../helpers/temp.js";

const FIXTURES = join(__dirname, "../fixtures/kata");
const RS = "src/agent/rustjail/src/container.rs";
function copyOf(name: string): string {
  const dir = tempDir(`crg-kata-${name}-`);
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

describe("kata-agent setsid patch", () => {
  const catalog = loadAgentPatches();

  it("tells terminal-only setsid from unconditional", () => {
    expect(setsidState(readFileSync(join(FIXTURES, "v4.0", RS), "utf8"))).toBe("terminal-only");
    expect(setsidState(readFileSync(join(FIXTURES, "v3.8", RS), "utf8"))).toBe("terminal-only");
    expect(setsidState(readFileSync(join(FIXTURES, "v4.1", RS), "utf8"))).toBe("unconditional");
  });

  it("picks the variant for each Kata version, none from 4.1.0 on", () => {
    expect(selectAgentPatch("3.2.0", catalog)?.name).toBe("kata-3.0-setsid-always.patch");
    expect(selectAgentPatch("3.20.0", catalog)?.name).toBe("kata-3.8-setsid-always.patch");
    expect(selectAgentPatch("4.0.0", catalog)?.name).toBe("kata-4.0-setsid-always.patch");
    expect(selectAgentPatch("4.1.0", catalog)).toBeUndefined();
    expect(() => selectAgentPatch("2.5.0", catalog)).toThrow(/no setsid patch for Kata 2.5.0/);
  });

  it("applies the 4.0 and 3.8 variants: setsid becomes unconditional", async () => {
    for (const name of ["v4.0", "v3.8"]) {
      const dir = copyOf(name);
      const r = await patchAgentSource(dir, catalog);
      expect(r.before).toBe("terminal-only");
      expect(r.after).toBe("unconditional");
      const text = readFileSync(join(dir, RS), "utf8");
      expect(text).toMatch(/^ {4}unistd::setsid\(\)\.context\("create a new session"\)\?;$/m);
      expect(text).toContain("libc::TIOCSCTTY"); // the terminal still becomes the controlling tty
    }
  });

  it("skips a tree that already calls setsid unconditionally", async () => {
    const r = await patchAgentSource(copyOf("v4.1"), catalog);
    expect(r.patch).toBeUndefined();
    expect(r.message).toContain("already calls setsid()");
  });

  it("dry-runs first: a layout the patch does not fit is refused and left untouched", async () => {
    const dir = copyOf("v3.8");
    writeFileSync(join(dir, "VERSION"), "4.0.0\n"); // claims 4.0 but has the 3.x layout
    const before = readFileSync(join(dir, RS), "utf8");
    await expect(patchAgentSource(dir, catalog)).rejects.toThrow(
      /kata-4.0-setsid-always.patch does not apply to Kata 4.0.0/,
    );
    expect(readFileSync(join(dir, RS), "utf8")).toBe(before);
  });
});
