import { describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../scripts/lib/config.js";
import { UserError } from "../../scripts/lib/errors.js";
import { tempDir } from "../helpers/temp.js";

const dir = tempDir("crg-config-");
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UserError) return err;
    throw err;
  }
  throw new Error("expected a UserError");
}

describe("pipeline config", () => {
  it("loads the embedded default", () => {
    const c = loadConfig();
    expect(c.kernel.version).toBe("6.12");
    expect(c.kernel.base).toBe("allnoconfig");
    expect(c.fragment_sets[c.kernel.fragment_set]).toContain("checkpoint-restore");
    expect(c.cache_dir).toMatch(/\/images$/);
  });

  it("accepts an expired Release only when asked; a static CRIU's guest suite defaults to trixie", () => {
    const c = loadConfig();
    expect(c.debian.accept_expired_release).toBe(false);
    expect(c.criu.static_guest_suite).toBe("trixie");
    expect(c.criu.guest_suite).toBe("");
    expect(loadConfig({ set: ["debian.accept_expired_release=true"] }).debian.accept_expired_release).toBe(
      true,
    );
    const e = errorOf(() => loadConfig({ set: ["debian.accept_expired_release=yes please"] }));
    expect(e.message).toContain("debian.accept_expired_release");
  });

  it("merges a user file and resolves its relative paths against that file", () => {
    const c = loadConfig({
      configFile: file("ok.yaml", "kernel:\n  base: tinyconfig\n  local_tree: src/linux\ncache_dir: out\n"),
    });
    expect(c.kernel.base).toBe("tinyconfig");
    expect(c.kernel.local_tree).toBe(join(dir, "src/linux"));
    expect(c.cache_dir).toBe(join(dir, "out"));
    expect(c.kernel.version).toBe("6.12"); // untouched keys keep the default
  });

  it("reports malformed YAML with file and line", () => {
    const e = errorOf(() =>
      loadConfig({ configFile: file("bad.yaml", "kernel:\n  version: 6.12\n\tbase: allnoconfig\n") }),
    );
    expect(e.message).toMatch(/malformed YAML at .*bad\.yaml:3/);
  });

  it("names an unknown key, its line and the closest valid key", () => {
    const e = errorOf(() =>
      loadConfig({ configFile: file("typo.yaml", "kernel:\n  version: 6.12\n  fragmnet_set: debug\n") }),
    );
    expect(e.message).toContain("typo.yaml:3");
    expect(e.message).toContain("unknown key 'kernel.fragmnet_set'");
    expect(e.message).toContain("did you mean 'fragment_set'");
  });

  it("rejects a bad enum value with the choices", () => {
    const e = errorOf(() => loadConfig({ set: ["kernel.base=allnoconfg"] }));
    expect(e.message).toContain("kernel.base must be one of allnoconfig, tinyconfig, defconfig");
    expect(e.message).toContain("did you mean 'allnoconfig'");
  });

  it("rejects an unknown fragment set", () => {
    const e = errorOf(() => loadConfig({ set: ["kernel.fragment_set=debgu"] }));
    expect(e.message).toContain("unknown fragment set 'debgu'");
    expect(e.message).toContain("did you mean 'debug'");
  });

  it("applies --set overrides last, typed by the schema", () => {
    const c = loadConfig({ set: ["kernel.jobs=3", "kernel.providers=[debian]", "kernel.boot_check=true"] });
    expect(c.kernel.jobs).toBe(3);
    expect(c.kernel.providers).toEqual(["debian"]);
    expect(c.kernel.boot_check).toBe(true);
    expect(() => loadConfig({ set: ["kernel.jobs=many"] })).toThrow(/kernel.jobs must be a number/);
  });
});

describe("versions written unquoted", () => {
  it("are taken as written: 6.10 is not 6.1, 4.0 is not 4", () => {
    expect(loadConfig({ set: ["kernel.version=6.10"] }).kernel.version).toBe("6.10");
    expect(loadConfig({ set: ["criu.version=4.0"] }).criu.version).toBe("4.0");
    expect(loadConfig({ set: ["criu.version=4.1"] }).criu.version).toBe("4.1");
  });
});
