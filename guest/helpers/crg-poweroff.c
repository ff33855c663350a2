/*
 * crg-poweroff: sync and end the VM at once with reboot(2). The guest runner is PID 1, not
 * systemd, and systemd's `poweroff -f`/`-ff` refuse to act without it. RB_POWER_OFF needs
 * ACPI (our allnoconfig kernel has none: "Power off not available: System halted instead"
 * and the VM stays up), so this reboots: QEMU runs with -no-reboot, which ends the VM.
 */
#include <stdio.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
	sync();
	reboot(RB_AUTOBOOT);
	perror("reboot(RB_AUTOBOOT)");
	return 1;
}
