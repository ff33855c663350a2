/*
 * crg-poweroff: sync and power off at once with reboot(2). The guest runner is PID 1, not
 * systemd, and systemd's `poweroff -f`/`-ff` refuse to act without it; with QEMU's
 * -no-reboot even a reboot ends the VM, so the host sees the guest stop right after the
 * end marker instead of waiting for a deadline.
 */
#include <stdio.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
	sync();
	reboot(RB_POWER_OFF);
	perror("reboot(RB_POWER_OFF)");
	reboot(RB_AUTOBOOT);
	perror("reboot(RB_AUTOBOOT)");
	return 1;
}
