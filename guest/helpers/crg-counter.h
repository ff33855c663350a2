/*
 * Counter files, as guest/scenario-lib.sh reads them (`counter FILE`): one line, the value
 * left-aligned in 20 columns, rewritten in place through a descriptor held open from the
 * start. Not through a temporary file and a rename: a --leave-running dump that catches the
 * temporary open restores after the rename has taken its name. The fixed width keeps the
 * file's size, which CRIU checks at restore, the same whatever the value; so write a value
 * before anything can be dumped (an empty file dumped, 21 bytes at restore: "bad size").
 */
#ifndef CRG_COUNTER_H
#define CRG_COUNTER_H
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define COUNTER_WIDTH 21 /* 20 columns and the newline */

static int counter_open(const char *dir, const char *name) {
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static void counter_put(int fd, unsigned long v) {
	char line[COUNTER_WIDTH + 1];
	snprintf(line, sizeof line, "%-20lu\n", v);
	/* One write of the whole line at offset 0: a reader sees the old or the new value. */
	if (pwrite(fd, line, COUNTER_WIDTH, 0) != COUNTER_WIDTH) perror("counter");
}
#endif
