/*
 * crg-kata PORT STATEDIR: the process of a Kata-shaped container (see
 * guest/scenarios/kata-container.sh). It holds what a container's workload typically holds:
 *   - a TCP listener on 127.0.0.1:PORT and one established connection accepted from it;
 *   - a unix socket pair;
 *   - an flock(LOCK_EX) on STATEDIR/lock.
 * Every 100 ms it sends a counter through the TCP connection and the socket pair and reads
 * it back on the other end; every 10th tick it also connects to its own listener, accepts and
 * exchanges the counter (the listener still works). It writes, each in place as a counter
 * file (crg-counter.h):
 *   STATEDIR/count    the last counter that made the round trips
 *   STATEDIR/accepts  how many fresh connections the listener accepted
 * A restored copy goes on from the dumped values; any failed round trip exits with 1.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>
#include "crg-counter.h"


static int roundtrip(int a, int b, unsigned long n) {
	unsigned long got = 0;
	return write(a, &n, sizeof n) == sizeof n && read(b, &got, sizeof got) == sizeof got && got == n;
}

int main(int argc, char **argv) {
	if (argc != 3) { fprintf(stderr, "usage: crg-kata PORT STATEDIR\n"); return 2; }
	/* A container starts with its stdio only (rustjail closes the rest); an inherited fd of
	 * the runner's mount namespace would not be dumpable from the container's. */
	for (int fd = 3; fd < 1024; fd++) close(fd);
	char lock[4096];
	snprintf(lock, sizeof lock, "%s/lock", argv[2]);
	int lfd = open(lock, O_RDWR | O_CREAT, 0644);
	if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB)) { perror("crg-kata: lock"); return 1; }

	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, lsk = socket(AF_INET, SOCK_STREAM, 0), csk = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lsk, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lsk, (void *)&addr, sizeof addr) || listen(lsk, 4) || connect(csk, (void *)&addr, sizeof addr)) { perror("crg-kata: tcp"); return 1; }
	int ssk = accept(lsk, NULL, NULL);
	int pair[2];
	if (ssk < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair)) { perror("crg-kata: sockets"); return 1; }

	int count_fd = counter_open(argv[2], "count"), accepts_fd = counter_open(argv[2], "accepts");
	if (count_fd < 0 || accepts_fd < 0) { perror("crg-kata: counter files"); return 1; }
	/* Written at once: a dump before the first accept must see the size a restore will find. */
	unsigned long accepts = 0;
	counter_put(accepts_fd, accepts);
	for (unsigned long n = 1;; n++) {
		if (!roundtrip(csk, ssk, n)) { perror("crg-kata: tcp round trip"); return 1; }
		if (!roundtrip(pair[0], pair[1], n)) { perror("crg-kata: unix round trip"); return 1; }
		if (n % 10 == 0) {
			int c = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(c, (void *)&addr, sizeof addr)) { perror("crg-kata: connect to the listener"); return 1; }
			int s = accept(lsk, NULL, NULL);
			if (s < 0 || !roundtrip(c, s, n)) { perror("crg-kata: listener round trip"); return 1; }
			close(s);
			close(c);
			counter_put(accepts_fd, ++accepts);
		}
		counter_put(count_fd, n);
		usleep(100 * 1000);
	}
}
