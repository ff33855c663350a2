/*
 * crg-membarrier STATEDIR: registers for private expedited membarrier, then waits. Whenever
 * STATEDIR/probe appears it issues MEMBARRIER_CMD_PRIVATE_EXPEDITED and writes "ok" or the
 * errno name to STATEDIR/result, so a test can ask before the dump and after the restore
 * whether the registration survived (3.17.1 loses it: EPERM).
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int membarrier(int cmd) { return (int)syscall(__NR_membarrier, cmd, 0, 0); }

int main(int argc, char **argv) {
	char probe[4096], result[4096], tmp[4096];
	if (argc != 2) { fprintf(stderr, "usage: crg-membarrier STATEDIR\n"); return 2; }
	snprintf(probe, sizeof probe, "%s/probe", argv[1]);
	snprintf(result, sizeof result, "%s/result", argv[1]);
	snprintf(tmp, sizeof tmp, "%s/result.tmp", argv[1]);
	if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) {
		/* STATEDIR/error tells the scenario why: ENOSYS means the kernel has no membarrier(). */
		char error[4096];
		int err = errno;
		FILE *f;
		snprintf(error, sizeof error, "%s/error", argv[1]);
		if ((f = fopen(error, "w"))) {
			fprintf(f, "%s\n", err == ENOSYS ? "ENOSYS" : strerror(err));
			fclose(f);
		}
		printf("register failed: %s\n", strerror(err));
		return 1;
	}
	{
		/* STATEDIR/ready: registered, probes are answered from now on. */
		char ready[4096];
		FILE *f;
		snprintf(ready, sizeof ready, "%s/ready", argv[1]);
		if ((f = fopen(ready, "w"))) fclose(f);
	}
	printf("registered\n");
	fflush(stdout);
	for (;;) {
		if (access(probe, F_OK) == 0) {
			int rc = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
			FILE *f = fopen(tmp, "w");
			if (f) {
				if (rc == 0) fprintf(f, "ok\n");
				else fprintf(f, "%s\n", errno == EPERM ? "EPERM" : strerror(errno));
				fclose(f);
				rename(tmp, result);
			}
			unlink(probe);
		}
		usleep(100 * 1000);
	}
}
