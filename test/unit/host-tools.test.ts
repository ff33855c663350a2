import { describe, expect, it } from "vitest";
import { requireHostTools } from "../../scripts/lib/host-tools.js";

describe("host tools", () => {
  it("names every missing tool with its Debian package and the install command", () => {
    let message = "";
    let hint = "";
    try {
      requireHostTools(
        ["make", "flex", "qemu-system-x86_64"],
        ["/nonexistent/gelf.h"],
        "building a kernel",
        "/nonexistent",
      );
    } catch (err) {
      message = (err as Error).message;
      hint = (err as { hint: string }).hint;
    }
    expect(message).toContain("missing host tools for building a kernel");
    expect(message).toContain("make (Debian package make)");
    expect(message).toContain("flex (Debian package flex)");
    expect(message).toContain("qemu-system-x86_64 (Debian package qemu-system-x86)");
    expect(hint).toContain("apt-get install make flex qemu-system-x86");
  });
  it("passes when the tools are on PATH", () => {
    expect(() => requireHostTools(["sh"], [], "x", "/bin:/usr/bin")).not.toThrow();
  });
});
