/**
 * crit's planning on real CRIU release trees (the tag archives of ../shared/criu-tarballs): where
 * pycriu and crit live per version, which protos become modules, and the verdict read from
 * crit's real output shapes. Making and running crit for real is in the migration integration test.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  critArgv,
  critCaseVerdict,
  critLayout,
  critSources,
  critSummary,
  CritUnavailableError,
  imageProtos,
  pbPy,
} from "../../scripts/migrate/crit.js";
import { missingTarballs, unpackRelease } from "../helpers/criu-sources.js";

const ok = (stdout: string) => ({ exitCode: 0, stdout, stderr: "" });

describe.skipIf(missingTarballs())("crit from a CRIU tree", () => {
  it("3.17.1 keeps pycriu in lib/py with crit as its cli.py; 3.19 and 4.2 have lib/pycriu and the crit package", () => {
    const trees = Object.fromEntries(["3.17.1", "3.19", "4.2"].map((v) => [v, unpackRelease(v)]));
    try {
      const layout = (v: string) => critLayout((rel) => existsSync(join(trees[v], rel)), v);
      expect(layout("3.17.1")).toEqual({ pycriu: "lib/py", critPackage: null });
      expect(layout("3.19")).toEqual({ pycriu: "lib/pycriu", critPackage: "crit/crit" });
      expect(layout("4.2")).toEqual({ pycriu: "lib/pycriu", critPackage: "crit/crit" });
      expect(critArgv(layout("3.17.1"))).toEqual(["python3", "-c", "from pycriu import cli; cli.main()"]);
      expect(critArgv(layout("4.2"))).toEqual(["python3", "-m", "crit"]);
      // Every image proto but rpc.proto, and pb.py imports each module CRIU's Makefile would.
      const protos = imageProtos(readdirSync(join(trees["4.2"], "images")));
      expect(protos).toContain("inventory.proto");
      expect(protos).toContain("core.proto");
      expect(protos).not.toContain("rpc.proto");
      const pb = pbPy(protos);
      expect(pb).toContain("from .inventory_pb2 import *");
      expect(pb).toContain("from .core_x86_pb2 import *");
      expect(pb).not.toContain("from .opts_pb2 ");
      expect(pb).toContain("from .sk_opts_pb2 import *");
      // images.py reads the modules pb.py names: the names must be those protoc writes.
      expect(readFileSync(join(trees["4.2"], "lib/pycriu/images/images.py"), "utf8")).toContain(
        "from . import pb",
      );
      // A tree without pycriu cannot give crit, and says so.
      expect(() => critLayout(() => false, "a bare tree")).toThrow(CritUnavailableError);
      expect(() => critLayout(() => false, "a bare tree")).toThrow(/a bare tree has no pycriu/);
    } finally {
      for (const t of Object.values(trees)) rmSync(dirname(t), { recursive: true, force: true });
    }
  });
});

describe("where crit comes from", () => {
  it("the build's own content first (under any provider serving it), then other sources of the version; never a binary package", () => {
    const candidates = [
      { provider: "debian-binary", key: "b", identity: "deb:bookworm:3.17.1-2" },
      { provider: "local-mirror", identity: undefined, skip: "criu.local_mirror is not set" },
      { provider: "debian-source", key: "d", identity: "sha256:orig" },
      { provider: "upstream", key: "u", identity: "sha256:tag" },
    ];
    // A build from the tag archive (made once with --criu-mirror): upstream serves that content.
    expect(critSources(candidates, "sha256:tag").map((c) => c.provider)).toEqual([
      "upstream",
      "debian-source",
    ]);
    expect(critSources(candidates, "sha256:orig").map((c) => c.provider)).toEqual([
      "debian-source",
      "upstream",
    ]);
    expect(critSources(candidates.slice(0, 2), "sha256:tag")).toEqual([]);
  });
});

describe("crit's reading of a dump", () => {
  const inventory = JSON.stringify({
    magic: "INVENTORY",
    entries: [{ img_version: 2, fdinfo_per_id: true }],
  });
  const ps = "    PID   PGID    SID   COMM\n  10023  10023  10023   sh\n  10065  10023  10023       sleep\n";

  it("PASS needs the inventory's version and a process tree with commands", () => {
    expect(critCaseVerdict("simple-process/dump-restore", ok(inventory), ok(ps))).toEqual({
      name: "simple-process/dump-restore",
      status: "PASS",
      message: "inventory img_version 2; ps: 10023 sh, 10065 sleep",
    });
  });

  it("a Python exception is a FAIL with its last line; an empty tree or non-JSON too", () => {
    const crash = {
      exitCode: 1,
      stdout: "",
      stderr: "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'pstree'\n",
    };
    expect(critCaseVerdict("c", crash, ok(ps))).toMatchObject({
      status: "FAIL",
      message: "crit show inventory.img: KeyError: 'pstree'",
    });
    expect(critCaseVerdict("c", ok(inventory), crash)).toMatchObject({
      status: "FAIL",
      message: "crit x ps: KeyError: 'pstree'",
    });
    expect(critCaseVerdict("c", ok("Unknown magic 0x1234"), ok(ps))).toMatchObject({
      status: "FAIL",
      message: expect.stringMatching(/not JSON/),
    });
    expect(critCaseVerdict("c", ok(inventory), ok("    PID   PGID    SID   COMM\n"))).toMatchObject({
      status: "FAIL",
      message: expect.stringMatching(/no process listed/),
    });
    expect(critCaseVerdict("c", { exitCode: null, stdout: "", stderr: "" }, ok(ps)).message).toBe(
      "crit show inventory.img: exit null, no output",
    );
  });

  it("sums the cases up per CRIU version", () => {
    const pass = { name: "a", status: "PASS" as const, message: "" };
    const fail = { name: "b", status: "FAIL" as const, message: "crit x ps: KeyError" };
    expect(critSummary([pass, pass])).toEqual({ status: "ok", message: "decoded all 2 dumps" });
    expect(critSummary([pass, fail])).toEqual({
      status: "failed",
      message: "decoded 1 of 2 dumps; b: crit x ps: KeyError",
    });
    expect(critSummary([])).toMatchObject({ status: "failed" });
  });
});
