import { describe, expect, it } from "vitest";
import { cpSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { kataSourceIdentity, runAgentStage } from "../../scripts/agent/stage.js";
import { loadConfig } from "../../scripts/lib/config.js";
import { tempDir } from "../helpers/temp.js";

const FIXTURES = join(__dirname, "../fixtures/kata");
const RS = "src/agent/rustjail/src/container.rs";

describe("agent stage", () => {
  it("identifies a tree: version, setsid state, and a key that follows the rustjail file", () => {
    const a = kataSourceIdentity(join(FIXTURES, "v4.0"));
    expect(a.version).toBe("4.0.0");
    expect(a.state).toBe("terminal-only");
    expect(kataSourceIdentity(join(FIXTURES, "v4.1")).state).toBe("unconditional");
    const copy = tempDir("crg-kata-");
    cpSync(join(FIXTURES, "v4.0"), copy, { recursive: true });
    writeFileSync(join(copy, RS), `${readFileSync(join(copy, RS), "utf8")}\n// local change\n`);
    expect(kataSourceIdentity(copy).key).not.toBe(a.key);
  });

  it("takes a prebuilt ELF agent into the cache and refuses a non-ELF file", async () => {
    const cache = tempDir("crg-agent-cache-");
    const dir = tempDir("crg-agent-");
    const elf = join(dir, "kata-agent");
    writeFileSync(elf, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.alloc(64)]));
    const config = loadConfig({ set: [`cache_dir=${cache}`, `agent.binary=${elf}`] });
    const art = (await runAgentStage(config))!;
    expect(art.metadata.source).toBe("prebuilt");
    expect(art.metadata.setsid_after).toBeNull();
    expect(existsSync(art.binary)).toBe(true);
    expect((await runAgentStage(config))!.cached).toBe(true);
    const text = join(dir, "agent.sh");
    writeFileSync(text, "#!/bin/sh\n");
    await expect(
      runAgentStage(loadConfig({ set: [`cache_dir=${cache}`, `agent.binary=${text}`] })),
    ).rejects.toThrow(/is not an ELF executable/);
    await expect(
      runAgentStage(loadConfig({ set: [`cache_dir=${cache}`, `agent.binary=${join(dir, "nope")}`] })),
    ).rejects.toThrow(/does not exist/);
  });

  it("no agent configured: nothing, not an error", async () => {
    expect(
      await runAgentStage(loadConfig({ set: [`cache_dir=${tempDir("crg-agent-cache-")}`] })),
    ).toBeUndefined();
  });

  it("a source build patches a copy, never the user's tree, and says what is missing to build", async () => {
    const src = tempDir("crg-kata-src-");
    cpSync(join(FIXTURES, "v4.0"), src, { recursive: true });
    const before = readFileSync(join(src, RS), "utf8");
    const config = loadConfig({ set: [`cache_dir=${tempDir("crg-agent-cache-")}`, `agent.kata_src=${src}`] });
    // The fixture is not a full Kata tree: the build step must fail with a clear reason.
    await expect(runAgentStage(config)).rejects.toThrow(/cannot build the kata-agent/);
    expect(readFileSync(join(src, RS), "utf8")).toBe(before);
  });
});
