/*
 * crg-tcp PORT STATEDIR: one process holding both ends of an established TCP connection on
 * loopback. Every 200 ms it sends a counter through the connection, reads it back on the
 * other end and writes the last value read to STATEDIR/count (a counter file, crg-counter.h). After a restore with
 * --tcp-established the count keeps growing from where the dump left it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "crg-counter.h"

int main(int argc, char **argv) {
	if (argc != 3) { fprintf(stderr, "usage: crg-tcp PORT STATEDIR\n"); return 2; }
	int count_fd = counter_open(argv[2], "count");
	if (count_fd < 0) { perror("crg-tcp: count"); return 1; }
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, lsk = socket(AF_INET, SOCK_STREAM, 0), csk = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lsk, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lsk, (void *)&addr, sizeof addr) || listen(lsk, 1) || connect(csk, (void *)&addr, sizeof addr)) { perror("crg-tcp: setup"); return 1; }
	int ssk = accept(lsk, NULL, NULL);
	if (ssk < 0) { perror("crg-tcp: accept"); return 1; }
	close(lsk); /* only the established pair remains */
	printf("connected\n");
	fflush(stdout);
	for (unsigned long n = 1;; n++) {
		unsigned long got = 0;
		if (write(csk, &n, sizeof n) != sizeof n || read(ssk, &got, sizeof got) != sizeof got || got != n) { perror("crg-tcp: io"); return 1; }
		counter_put(count_fd, got);
		usleep(200 * 1000);
	}
}
