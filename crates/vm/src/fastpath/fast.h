/* The fast page: the state the kvmjs host and the fast-path library (fast.c) share in
 * guest memory. Rust mirrors this layout as `kvmjs_abi::fast::Page`; the library carries
 * the layout in `kvmjs_fast_layout` (fast.c) and a unit test compares the two, so they
 * cannot drift. The host never trusts what the library wrote: it clamps every count,
 * ignores states it does not know and uses its own record of which descriptor a slot is. */
#ifndef KVMJS_FAST_H
#define KVMJS_FAST_H

#include <stdint.h>

#define KVMJS_FAST_MAGIC 0x747361666a6d766bull /* "kvmjfast" */
#define KVMJS_FAST_VERSION 1u
/* auxv type whose value is the page's address (absent: the library stays out of the way). */
#define KVMJS_FAST_AT 0x4b4au
#define KVMJS_FAST_SLOTS 4
#define KVMJS_FAST_EPOLLS 8

/* kvmjs_fast_slot.state */
#define KVMJS_SLOT_FREE 0u    /* unused */
#define KVMJS_SLOT_PENDING 1u /* host: a connection waits to be accepted on listen_fd */
#define KVMJS_SLOT_OPEN 2u    /* lib: accepted; the library answers calls on fd */
#define KVMJS_SLOT_CLOSED 3u  /* lib: closed; the host releases fd at its next look */
#define KVMJS_SLOT_HOST 4u    /* host: took the connection over; calls go to the host */

/* kvmjs_fast_slot.shut */
#define KVMJS_SHUT_RD 1u
#define KVMJS_SHUT_WR 2u

/* kvmjs_fast_page.waiting_epfd while the library hands a complete response over (a plain
 * getppid the host stops at) */
#define KVMJS_FAST_FLUSHING (-1)

/* kvmjs_fast_slot.nodelay when the program never set TCP_NODELAY */
#define KVMJS_NODELAY_UNSET 0xffffffffu

struct kvmjs_fast_slot {
	int32_t fd;           /* host: the descriptor the connection has */
	uint32_t state;       /* KVMJS_SLOT_* */
	uint32_t rx_len;      /* host: request bytes (in the rx area; only the current slot) */
	uint32_t rx_pos;      /* lib: bytes the program has read */
	uint32_t peer_gone;   /* host: the peer closed; reads past rx_len see EOF */
	uint32_t edge;        /* host: bumped when the connection became more ready */
	uint32_t edge_seen;   /* lib: `edge` when it last looked */
	uint32_t flags;       /* lib: accept4 flags (SOCK_NONBLOCK, SOCK_CLOEXEC) */
	uint32_t shut;        /* lib: KVMJS_SHUT_* the program asked for */
	uint32_t nodelay;     /* lib: TCP_NODELAY value, or KVMJS_NODELAY_UNSET */
	uint32_t reg_events;  /* lib: the epoll registration's events */
	int32_t reg_epfd;     /* lib: the epoll descriptor it was registered through */
	uint32_t reg_pending; /* lib: an edge not reported yet (EPOLLET) */
	uint32_t peer_len;    /* host: bytes of `peer` */
	uint64_t reg_epoll;   /* lib: the epoll instance (kvmjs_fast_page.epolls id); 0 = none */
	uint64_t reg_data;    /* lib: the registration's user data */
	uint8_t peer[28];     /* host: the peer's sockaddr_in / sockaddr_in6 */
	uint32_t local_len;   /* host: bytes of `local` */
	uint8_t local[28];    /* host: the local sockaddr */
	uint32_t pad;
};

struct kvmjs_fast_epoll {
	int32_t fd;           /* host: a descriptor of an epoll instance; -1 = unused */
	uint32_t pad;
	uint64_t id;          /* host: the instance's identity (never 0) */
};

struct kvmjs_fast_page {
	uint64_t magic;       /* host: KVMJS_FAST_MAGIC */
	uint32_t version;     /* host: KVMJS_FAST_VERSION */
	uint32_t lib_ready;   /* lib: 1 once it uses the page */
	int32_t waiting_epfd; /* lib: epfd + 1 of the wait its epoll_wait is in; 0 = none;
			       * KVMJS_FAST_FLUSHING: in its hand-over call */
	uint32_t lock;        /* lib: taken while it changes the page */
	int32_t listen_fd;    /* host: the listening socket; -1 = none */
	uint32_t listen_fast; /* host: accepts on listen_fd are answered from the slots */
	uint32_t listen_nonblock; /* host: listen_fd is non-blocking */
	uint32_t listen_events;   /* host: the listener's epoll events */
	uint64_t listen_epoll;    /* host: the listener's epoll instance id; 0 = none */
	uint64_t listen_data;     /* host: the listener's epoll user data */
	uint32_t listen_reported; /* lib: the pending connection was reported (EPOLLET) */
	uint32_t current;     /* host: the slot whose sends go to tx; >= SLOTS: none */
	uint32_t tx_len;      /* lib: bytes in the tx area the host has not taken */
	uint32_t tx_cap;      /* host */
	uint32_t rx_cap;      /* host */
	uint32_t pid;         /* host: what getpid returns (the VM's one process) */
	uint64_t tx_addr;     /* host: guest address of the tx area */
	uint64_t rx_addr;     /* host: guest address of the rx area */
	uint64_t answered;    /* lib: calls answered without the host (a count, for tests) */
	struct kvmjs_fast_epoll epolls[KVMJS_FAST_EPOLLS];
	struct kvmjs_fast_slot slots[KVMJS_FAST_SLOTS];
};

#endif
