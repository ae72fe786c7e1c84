// SPDX-License-Identifier: GPL-2.0-only
/* A tight loop of connect() to a closed port on loopback, for the cost of a
 * probe per connect. Built static so it runs in the VMs' initramfs too.
 * usage: connect_loop N PORT    prints: ns_per_connect */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(argc > 2 ? atoi(argv[2]) : 9) };
	struct timespec a, b;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0)
			return 1;
		connect(fd, (struct sockaddr *)&addr, sizeof(addr)); /* refused: nothing listens */
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.0f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	return 0;
}
