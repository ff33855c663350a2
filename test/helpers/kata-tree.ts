/**
 * A small fragments tree in Kata's layout (tools/packaging/kernel/configs/fragments), written
 * for the tests: common/ with an !s390x-only file... as Kata tags them, x86_64/, build-type/,
 * whitelist.conf with Kata's habits (duplicates, patterns that are prefixes of longer names)
 * and a whitelist for one full kernel version. Symbols are real 6.12 x86 ones, plus ones that
 * no longer exist in 6.12 (as Kata's own tree has), which the whitelist accepts.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function writeKataTree(root: string, kernelVersion = "6.12.107"): string {
  const dir = join(root, "fragments");
  const file = (p: string, text: string) => {
    mkdirSync(join(dir, p, ".."), { recursive: true });
    writeFileSync(join(dir, p), text);
  };
  file(
    "common/base.conf",
    "# Basic kernel support\nCONFIG_64BIT=y\nCONFIG_PRINTK=y\nCONFIG_TTY=y\nCONFIG_BLOCK=y\n",
  );
  file(
    "common/cgroup.conf",
    "# cgroups\nCONFIG_CGROUPS=y\nCONFIG_MEMCG=y\n# Gone since 6.1 (merged into MEMCG): whitelisted\nCONFIG_MEMCG_SWAP=y\n",
  );
  file(
    "common/netfilter.conf",
    "CONFIG_NETFILTER=y\nCONFIG_NF_CONNTRACK=y\n# Removed in 5.1: whitelisted\nCONFIG_NF_NAT_IPV4=y\n",
  );
  file("common/s390.conf", "# !x86_64 !aarch64\n# s390 only\nCONFIG_S390_GUEST=y\n");
  file("common/debugfs.conf", "# !confidential\nCONFIG_DEBUG_FS=y\n");
  file(
    "x86_64/arch.conf",
    "CONFIG_X86_64=y\nCONFIG_HYPERVISOR_GUEST=y\nCONFIG_PARAVIRT=y\n# Renamed MITIGATION_RETPOLINE in 6.9: whitelisted for this version only\nCONFIG_RETPOLINE=y\n",
  );
  file("build-type/debug/debug.conf", "CONFIG_DEBUG_KERNEL=y\n");
  // Kata's whitelist lists some names twice; comments and blank lines are not patterns here.
  file("whitelist.conf", "CONFIG_MEMCG_SWAP\nCONFIG_NF_NAT_IPV4\nCONFIG_MEMCG_SWAP\n");
  file(`whitelist-${kernelVersion}.conf`, "CONFIG_RETPOLINE\n");
  return dir;
}
