/* A small HTTP server shaped like deno's per-request path (tokio on epoll): an
 * edge-triggered epoll set, non-blocking accept4 until EAGAIN, getpeername and
 * TCP_NODELAY on each connection, recv until the head is complete, one send, connections
 * kept until the peer closes (recv 0, EPOLL_CTL_DEL, close). Dynamically linked, so kvmjs
 * preloads its fast-path library into it (crates/vm/tests/fast_path.rs).
 *
 * GET /big/N answers N bytes of 'x'. GET /corrupt/N scribbles over kvmjs's fast page (found through the auxiliary vector;
 * the field offsets come as arguments) before answering, as a hostile program could: the
 * host must fail at most that request.
 * Build: cc -O2 -o epoll-server epoll-server.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define FAST_PAGE_AT 0x4b4a

static int count;
/* Offsets in the fast page, from the test's argv (kvmjs_abi::fast::Page). */
static int off_tx_len, off_current, off_listen_fd, off_slots, slot_size, off_state, off_rx_len;
/* argv[8] "lt": connections registered level-triggered, EPOLLIN|EPOLLRDHUP only. */
static int level;

static void corrupt(int how)
{
	unsigned char *p = (unsigned char *)getauxval(FAST_PAGE_AT);
	if (!p)
		return;
	switch (how) {
	case 1: /* tx_len says more than the area holds */
		memset(p + off_tx_len, 0xff, 4);
		break;
	case 2: /* every slot's state is garbage */
		for (int i = 0; i < 4; i++)
			p[off_slots + i * slot_size + off_state] = 77;
		break;
	case 3: /* rx_len and rx_pos of every slot out of range */
		for (int i = 0; i < 4; i++)
			memset(p + off_slots + i * slot_size + off_rx_len, 0xff, 8);
		break;
	case 4: /* the whole page random */
		srand(7);
		for (int i = 0; i < 4096; i++)
			p[i] = (unsigned char)rand();
		break;
	case 5: /* the page unmapped: the library's next look faults */
		munmap(p, 4096);
		break;
	case 6: /* the current slot and the listener pointed elsewhere */
		memset(p + off_current, 0x02, 4);
		memset(p + off_listen_fd, 0x09, 4);
		break;
	}
}

/* GET /big/N: N bytes of body, sent in 64 KiB pieces (past the fast path's tx area). */
static void answer_big(int fd, long n)
{
	static char chunk[65536];
	char head[128];
	memset(chunk, 'x', sizeof chunk);
	int m = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\ncontent-length: %ld\r\n\r\n", n);
	send(fd, head, (size_t)m, MSG_NOSIGNAL);
	while (n > 0) {
		size_t k = n < (long)sizeof chunk ? (size_t)n : sizeof chunk;
		ssize_t w = send(fd, chunk, k, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		n -= w;
	}
}

static void answer(int fd, const char *req)
{
	char path[128] = "?", body[512], out[1024];
	sscanf(req, "GET %127s", path);
	if (!strncmp(path, "/big/", 5)) {
		count++;
		answer_big(fd, atol(path + 5));
		return;
	}
	if (!strncmp(path, "/corrupt/", 9))
		corrupt(atoi(path + 9));
	struct sockaddr_in peer;
	socklen_t plen = sizeof peer;
	char ip[32] = "?";
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0)
		inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
	int n = snprintf(body, sizeof body, "count=%d peer=%s path=%s", ++count, ip, path);
	int m = snprintf(out, sizeof out,
			 "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s",
			 n, body);
	send(fd, out, (size_t)m, MSG_NOSIGNAL);
}

int main(int argc, char **argv)
{
	if (argc == 9)
		level = !strcmp(argv[8], "lt");
	if (argc >= 8) {
		off_tx_len = atoi(argv[1]);
		off_current = atoi(argv[2]);
		off_listen_fd = atoi(argv[3]);
		off_slots = atoi(argv[4]);
		slot_size = atoi(argv[5]);
		off_state = atoi(argv[6]);
		off_rx_len = atoi(argv[7]);
	}
	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(8000) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 128)) {
		perror("bind/listen");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = (uint64_t)l };
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	static char bufs[1024][2048];
	static int lens[1024];
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			int fd = (int)evs[i].data.u64;
			if (fd == l) {
				for (;;) {
					struct sockaddr_in p;
					socklen_t pl = sizeof p;
					int c = accept4(l, (struct sockaddr *)&p, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (c < 0)
						break;
					if (c >= 1024) {
						close(c);
						continue;
					}
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					lens[c] = 0;
					struct epoll_event ce = {
						.events = level ? EPOLLIN | EPOLLRDHUP
								: EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
						.data.u64 = (uint64_t)c,
					};
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
				}
				continue;
			}
			if (!(evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)))
				continue;
			for (;;) {
				ssize_t r = recv(fd, bufs[fd] + lens[fd], sizeof bufs[fd] - 1 - (size_t)lens[fd], 0);
				if (r > 0) {
					lens[fd] += (int)r;
					bufs[fd][lens[fd]] = 0;
					if (strstr(bufs[fd], "\r\n\r\n")) {
						answer(fd, bufs[fd]);
						lens[fd] = 0;
					}
					continue;
				}
				if (r == 0 || errno != EAGAIN) {
					epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
					close(fd);
				}
				break;
			}
		}
	}
}
