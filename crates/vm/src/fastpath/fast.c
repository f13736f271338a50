/* libkvmjs-fast.so: the guest side of the kvmjs fast path (crates/vm/src/fastpath/mod.rs).
 *
 * kvmjs preloads this library into dynamically linked programs that serve HTTP (the deno
 * CLI). It interposes the libc functions a server calls per request on its virtual
 * connection (accept4, epoll_ctl, epoll_wait, getpeername, setsockopt, recv, send, close
 * and their siblings) and answers them from the fast page, which the host fills before it
 * resumes the VM: the request's bytes, the connection's descriptor and peer, the listener's
 * epoll registration. Sends are gathered in the page's tx area. The only call that leaves
 * the VM is the wait that would block once the response is written: the host takes the
 * response there. So a request costs one VM exit instead of one per call.
 *
 * Anything the library does not answer goes to the host as the plain system call (the
 * `syscall` instruction, which the VM traps), and the host takes the connection over
 * (slot state HOST) before it runs such a call on it: correct, only slower. Without the
 * page (no kvmjs, or a VM without the fast path) every function is the plain system call.
 *
 * The page is ordinary guest memory: a program that scribbles on it can only break its
 * own request; the host validates what it reads. Locking: a spin flag taken with a
 * try-lock; a caller that finds it taken (another thread, a signal handler) makes the
 * plain system call instead. Nothing here may block or make a system call while holding
 * it. */
#include "fast.h"

#include <stddef.h>
#include <sys/auxv.h>
#include <sys/types.h>
#include <errno.h>

#define EXPORT __attribute__((visibility("default")))
#define HIDDEN __attribute__((visibility("hidden")))

/* The layout as this compiler sees it; a Rust unit test reads it from the library's symbol
 * table and compares it with kvmjs_abi::fast::Page. Never read at run time. */
__attribute__((used)) HIDDEN const uint64_t kvmjs_fast_layout[] = {
	sizeof(struct kvmjs_fast_page),
	offsetof(struct kvmjs_fast_page, lib_ready),
	offsetof(struct kvmjs_fast_page, waiting_epfd),
	offsetof(struct kvmjs_fast_page, listen_fd),
	offsetof(struct kvmjs_fast_page, listen_epoll),
	offsetof(struct kvmjs_fast_page, listen_data),
	offsetof(struct kvmjs_fast_page, listen_reported),
	offsetof(struct kvmjs_fast_page, current),
	offsetof(struct kvmjs_fast_page, tx_addr),
	offsetof(struct kvmjs_fast_page, answered),
	offsetof(struct kvmjs_fast_page, pid),
	offsetof(struct kvmjs_fast_page, epolls),
	offsetof(struct kvmjs_fast_page, slots),
	sizeof(struct kvmjs_fast_slot),
	offsetof(struct kvmjs_fast_slot, rx_pos),
	offsetof(struct kvmjs_fast_slot, reg_pending),
	offsetof(struct kvmjs_fast_slot, reg_epoll),
	offsetof(struct kvmjs_fast_slot, peer),
	offsetof(struct kvmjs_fast_slot, local_len),
	offsetof(struct kvmjs_fast_slot, local),
	sizeof(struct kvmjs_fast_epoll),
	KVMJS_FAST_MAGIC,
	KVMJS_FAST_VERSION,
	KVMJS_FAST_AT,
};

/* Linux numbers and bits this file needs (x86-64). */
enum {
	NR_read = 0, NR_write = 1, NR_close = 3, NR_writev = 20, NR_accept = 43,
	NR_sendto = 44, NR_recvfrom = 45, NR_shutdown = 48, NR_getsockname = 51,
	NR_getpeername = 52, NR_setsockopt = 54, NR_getsockopt = 55, NR_epoll_wait = 232,
	NR_epoll_ctl = 233, NR_epoll_pwait = 281, NR_accept4 = 288, NR_getppid = 110, NR_getpid = 39,
};
#define EV_IN 0x001u
#define EV_OUT 0x004u
#define EV_ERR 0x008u
#define EV_HUP 0x010u
#define EV_RDHUP 0x2000u
#define EV_ONESHOT (1u << 30)
#define EV_ET (1u << 31)
#define EV_CONTROL (EV_ET | EV_ONESHOT | (1u << 29) | (1u << 28))
#define O_NONBLOCK_ 04000
#define SOCK_CLOEXEC_ 02000000
#define MSG_PEEK_ 0x2
#define MSG_DONTWAIT_ 0x40
#define MSG_NOSIGNAL_ 0x4000
#define IPPROTO_TCP_ 6
#define TCP_NODELAY_ 1

struct ev { uint32_t events; uint64_t data; } __attribute__((packed));
struct iov { const void *base; size_t len; };

static struct kvmjs_fast_page *page;

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The libc convention: -1 with errno set. */
static long ret(long r)
{
	if (r < 0 && r > -4096) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

static long fail(int e)
{
	errno = e;
	return -1;
}

__attribute__((constructor)) static void kvmjs_fast_init(void)
{
	struct kvmjs_fast_page *p = (struct kvmjs_fast_page *)getauxval(KVMJS_FAST_AT);
	if (!p || p->magic != KVMJS_FAST_MAGIC || p->version != KVMJS_FAST_VERSION)
		return;
	p->lib_ready = 1;
	page = p;
}

static int lock(struct kvmjs_fast_page *p)
{
	return __atomic_exchange_n(&p->lock, 1u, __ATOMIC_ACQUIRE) == 0;
}

static void unlock(struct kvmjs_fast_page *p)
{
	__atomic_store_n(&p->lock, 0u, __ATOMIC_RELEASE);
}

/* The page, locked, when `fd` may be one of its descriptors; NULL otherwise (then the
 * caller makes the plain system call). */
static struct kvmjs_fast_page *enter(int fd)
{
	struct kvmjs_fast_page *p = page;
	if (!p || fd < 0 || !lock(p))
		return NULL;
	return p;
}

static struct kvmjs_fast_slot *open_slot(struct kvmjs_fast_page *p, int fd)
{
	for (int i = 0; i < KVMJS_FAST_SLOTS; i++) {
		struct kvmjs_fast_slot *s = &p->slots[i];
		if (s->state == KVMJS_SLOT_OPEN && s->fd == fd)
			return s;
	}
	return NULL;
}

static uint64_t epoll_id(struct kvmjs_fast_page *p, int epfd)
{
	for (int i = 0; i < KVMJS_FAST_EPOLLS; i++)
		if (p->epolls[i].fd == epfd && p->epolls[i].id)
			return p->epolls[i].id;
	return 0;
}

static void copy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	while (n--)
		*d++ = *s++;
}

/* Readiness as the host's virtual TCP socket computes it (net/tcp.rs, poll). */
static uint32_t ready(const struct kvmjs_fast_slot *s)
{
	uint32_t m = 0;
	int rd_shut = (s->shut & KVMJS_SHUT_RD) != 0, wr_shut = (s->shut & KVMJS_SHUT_WR) != 0;
	if (s->rx_pos < s->rx_len || rd_shut || s->peer_gone)
		m |= EV_IN;
	if (rd_shut || s->peer_gone)
		m |= EV_RDHUP;
	if (!wr_shut)
		m |= EV_OUT;
	if ((rd_shut && wr_shut) || s->peer_gone)
		m |= EV_HUP;
	return m;
}

static void put_addr(const uint8_t *a, uint32_t alen, void *addr, uint32_t *lenp)
{
	if (!addr || !lenp)
		return;
	uint32_t n = *lenp < alen ? *lenp : alen;
	copy(addr, a, n);
	*lenp = alen;
}

/* ---- accept ---------------------------------------------------------------------- */

EXPORT int accept4(int fd, void *addr, uint32_t *lenp, int flags)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return (int)ret(sys6(NR_accept4, fd, (long)addr, (long)lenp, flags, 0, 0));
	if (fd != p->listen_fd || !p->listen_fast || (flags & ~(O_NONBLOCK_ | SOCK_CLOEXEC_)) ||
	    (addr && !lenp)) {
		unlock(p);
		return (int)ret(sys6(NR_accept4, fd, (long)addr, (long)lenp, flags, 0, 0));
	}
	for (int i = 0; i < KVMJS_FAST_SLOTS; i++) {
		struct kvmjs_fast_slot *s = &p->slots[i];
		if (s->state != KVMJS_SLOT_PENDING)
			continue;
		s->state = KVMJS_SLOT_OPEN;
		s->flags = (uint32_t)flags;
		uint32_t plen = s->peer_len > sizeof s->peer ? sizeof s->peer : s->peer_len;
		put_addr(s->peer, plen, addr, lenp);
		/* EPOLLET: the first wait after the registration reports it. */
		s->reg_pending = 1;
		s->edge_seen = s->edge;
		p->answered++;
		int r = s->fd;
		unlock(p);
		return r;
	}
	int nonblock = p->listen_nonblock;
	if (nonblock)
		p->answered++;
	unlock(p);
	if (nonblock)
		return (int)fail(EAGAIN);
	/* A blocking accept with nothing queued: the host blocks it. */
	return (int)ret(sys6(NR_accept4, fd, (long)addr, (long)lenp, flags, 0, 0));
}

EXPORT int accept(int fd, void *addr, uint32_t *lenp)
{
	if (!page)
		return (int)ret(sys6(NR_accept, fd, (long)addr, (long)lenp, 0, 0, 0));
	return accept4(fd, addr, lenp, 0);
}

/* ---- epoll ----------------------------------------------------------------------- */

EXPORT int epoll_ctl(int epfd, int op, int fd, struct ev *event)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return (int)ret(sys6(NR_epoll_ctl, epfd, op, fd, (long)event, 0, 0));
	struct kvmjs_fast_slot *s = open_slot(p, fd);
	uint64_t id = s ? epoll_id(p, epfd) : 0;
	int ok = 0, err = 0;
	if (s && id) {
		switch (op) {
		case 1: /* ADD */
			if (!event || s->reg_epoll)
				break; /* the host says EFAULT, or registers a second instance */
			s->reg_epoll = id;
			s->reg_epfd = epfd;
			s->reg_events = event->events;
			s->reg_data = event->data;
			s->reg_pending = 1;
			s->edge_seen = s->edge;
			ok = 1;
			break;
		case 3: /* MOD */
			if (!event || s->reg_epoll != id)
				break;
			s->reg_events = event->events;
			s->reg_data = event->data;
			s->reg_pending = 1;
			s->edge_seen = s->edge;
			ok = 1;
			break;
		case 2: /* DEL */
			if (s->reg_epoll != id)
				break;
			s->reg_epoll = 0;
			s->reg_events = 0;
			s->reg_data = 0;
			ok = 1;
			break;
		default:
			err = EINVAL;
		}
	}
	if (ok || err)
		p->answered++;
	unlock(p);
	if (err)
		return (int)fail(err);
	if (ok)
		return 0;
	return (int)ret(sys6(NR_epoll_ctl, epfd, op, fd, (long)event, 0, 0));
}

/* Appends the ready events of the page's descriptors registered in instance `id`. */
static int collect(struct kvmjs_fast_page *p, uint64_t id, struct ev *out, int max, int *lt)
{
	int n = 0;
	if (max <= 0)
		return 0;
	if (p->listen_epoll == id && (p->listen_events & EV_IN) && p->listen_fast) {
		int pending = 0;
		for (int i = 0; i < KVMJS_FAST_SLOTS; i++)
			pending |= p->slots[i].state == KVMJS_SLOT_PENDING;
		int edge = (p->listen_events & EV_ET) != 0;
		if (pending && !(edge && p->listen_reported)) {
			out[n].events = EV_IN;
			out[n].data = p->listen_data;
			n++;
			p->listen_reported = 1;
			*lt |= !edge;
		}
	}
	for (int i = 0; i < KVMJS_FAST_SLOTS && n < max; i++) {
		struct kvmjs_fast_slot *s = &p->slots[i];
		if (s->state != KVMJS_SLOT_OPEN || s->reg_epoll != id)
			continue;
		if (s->edge != s->edge_seen) {
			s->edge_seen = s->edge;
			s->reg_pending = 1;
		}
		uint32_t want = (s->reg_events & ~EV_CONTROL) | EV_ERR | EV_HUP;
		uint32_t bits = ready(s) & want;
		if (!bits)
			continue;
		if ((s->reg_events & EV_ET) && !s->reg_pending)
			continue;
		if ((s->reg_events & EV_ONESHOT) && !(s->reg_events & ~EV_CONTROL))
			continue; /* a one-shot registration that fired */
		out[n].events = bits;
		out[n].data = s->reg_data;
		n++;
		s->reg_pending = 0;
		*lt |= !(s->reg_events & EV_ET);
		if (s->reg_events & EV_ONESHOT)
			s->reg_events &= EV_CONTROL;
	}
	return n;
}

/* The host's epoll_wait (or epoll_pwait), saying in the page that the library makes it:
 * the host then knows the library adds its own events to what the call returns. */
static long host_wait(struct kvmjs_fast_page *p, int nr, int epfd, struct ev *events, int max,
		      int timeout, const void *sigmask, long sigsetsize)
{
	__atomic_store_n(&p->waiting_epfd, epfd + 1, __ATOMIC_RELEASE);
	long r = sys6(nr, epfd, (long)events, max, timeout, (long)sigmask, sigsetsize);
	int mine = epfd + 1;
	__atomic_compare_exchange_n(&p->waiting_epfd, &mine, 0, 0, __ATOMIC_RELEASE,
				    __ATOMIC_RELAXED);
	return r;
}

static int wait(int epfd, struct ev *events, int max, int timeout, const void *sigmask,
		long sigsetsize, int nr)
{
	struct kvmjs_fast_page *p = page;
	if (!p || max <= 0 || !events)
		return (int)ret(sys6(nr, epfd, (long)events, max, timeout, (long)sigmask, sigsetsize));
	uint64_t id = 0;
	int n = 0, lt = 0;
	if (lock(p)) {
		id = epoll_id(p, epfd);
		if (id)
			n = collect(p, id, events, max, &lt);
		if (n)
			p->answered++;
		unlock(p);
	}
	if (n) {
		/* A level-triggered event is ready at every wait: Linux reports the other ready
		 * descriptors with it, so the host is asked too (without waiting), or a program
		 * that keeps such a registration would never see its timers and wakers. */
		if (lt && n < max) {
			long r = host_wait(p, nr, epfd, events + n, max - n, 0, sigmask, sigsetsize);
			if (r > 0)
				n += (int)r;
		}
		return n;
	}
	/* Nothing of ours is ready: the host waits (and takes the response, if one is
	 * complete; module docs). It may also end the wait at once with 0 when it has put a
	 * new connection in the page. */
	long r = host_wait(p, nr, epfd, events, max, timeout, sigmask, sigsetsize);
	if (r < 0)
		return (int)ret(r);
	if (r < max && lock(p)) {
		if (!id)
			id = epoll_id(p, epfd);
		if (id)
			r += collect(p, id, events + r, max - (int)r, &lt);
		unlock(p);
	}
	return (int)r;
}

EXPORT int epoll_wait(int epfd, struct ev *events, int max, int timeout)
{
	return wait(epfd, events, max, timeout, NULL, 0, NR_epoll_wait);
}

EXPORT int epoll_pwait(int epfd, struct ev *events, int max, int timeout, const void *sigmask)
{
	return wait(epfd, events, max, timeout, sigmask, 8, NR_epoll_pwait);
}

/* ---- data -------------------------------------------------------------------------- */

/* recv on an open slot: the bytes, 0 at EOF, or -EAGAIN; 1 in *pass when the host must
 * answer (a blocking read with nothing to read). */
static long slot_recv(struct kvmjs_fast_page *p, struct kvmjs_fast_slot *s, void *buf,
		      size_t len, int flags, int *pass)
{
	int current = p->current < KVMJS_FAST_SLOTS && s == &p->slots[p->current];
	if (s->rx_pos > s->rx_len || s->rx_len > p->rx_cap || (!current && s->rx_pos != s->rx_len)) {
		*pass = 1; /* not a state the host leaves: let it answer */
		return 0;
	}
	uint32_t have = s->rx_len - s->rx_pos;
	if (len == 0)
		return 0;
	if (have) {
		size_t n = len < have ? len : have;
		copy(buf, (const unsigned char *)p->rx_addr + s->rx_pos, n);
		if (!(flags & MSG_PEEK_))
			s->rx_pos += (uint32_t)n;
		return (long)n;
	}
	if (s->peer_gone || (s->shut & KVMJS_SHUT_RD))
		return 0;
	if ((s->flags & O_NONBLOCK_) || (flags & MSG_DONTWAIT_))
		return -EAGAIN;
	*pass = 1;
	return 0;
}

/* The library's part of a recv on `fd` (recvfrom, recv, read): answered from the rx area
 * when `fd` is an open slot and the call is `allowed` (flags the page can honour). 1 with
 * the result (bytes, 0 at EOF, -errno) in *r; 0 when the host makes the call. */
static int lib_recv(int fd, void *buf, size_t len, int flags, int allowed, long *r)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return 0;
	struct kvmjs_fast_slot *s = open_slot(p, fd);
	int pass = !s || !allowed;
	if (!pass)
		*r = slot_recv(p, s, buf, len, flags, &pass);
	if (!pass)
		p->answered++;
	unlock(p);
	return !pass;
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, void *addr, uint32_t *alen)
{
	long r;
	int allowed = !addr && !(flags & ~(MSG_PEEK_ | MSG_DONTWAIT_ | MSG_NOSIGNAL_));
	if (lib_recv(fd, buf, len, flags, allowed, &r))
		return ret(r);
	return ret(sys6(NR_recvfrom, fd, (long)buf, (long)len, flags, (long)addr, (long)alen));
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	return recvfrom(fd, buf, len, flags, NULL, NULL);
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	long r;
	if (lib_recv(fd, buf, len, 0, 1, &r))
		return ret(r);
	return ret(sys6(NR_read, fd, (long)buf, (long)len, 0, 0, 0));
}

/* Appends `n` buffers to the tx area when the slot takes sends and all of them fit;
 * returns the bytes taken, or -1 when the host must answer. */
static long slot_send(struct kvmjs_fast_page *p, struct kvmjs_fast_slot *s,
		      const struct iov *v, int n)
{
	if (p->current >= KVMJS_FAST_SLOTS || s != &p->slots[p->current] ||
	    (s->shut & KVMJS_SHUT_WR) || s->peer_gone || p->tx_len > p->tx_cap)
		return -1;
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		if (v[i].len > p->tx_cap || (v[i].len && !v[i].base))
			return -1;
		total += v[i].len;
		if (total > (size_t)(p->tx_cap - p->tx_len))
			return -1;
	}
	unsigned char *to = (unsigned char *)p->tx_addr + p->tx_len;
	for (int i = 0; i < n; i++) {
		copy(to, v[i].base, v[i].len);
		to += v[i].len;
	}
	p->tx_len += (uint32_t)total;
	return (long)total;
}


/* Whether the tx area holds a whole HTTP/1.1 response: a head with Content-Length and
 * that many body bytes, or a chunked body through its last chunk. Only a hint (the host's
 * framer decides, and knows the method): when it says yes, the library hands the response
 * over at once (hand_over) instead of at the program's next wait, so the work a server does
 * after its response — which an ephemeral VM throws away — is not on the client's path. */
static int looks_complete(const unsigned char *b, uint32_t n)
{
	if (n < 16 || b[0] != 'H' || b[1] != 'T' || b[2] != 'T' || b[3] != 'P' || b[4] != '/')
		return 0;
	uint32_t end = 0;
	for (uint32_t i = 3; i < n; i++) {
		if (b[i] == '\n' && b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r') {
			end = i + 1;
			break;
		}
	}
	if (!end)
		return 0;
	static const char cl[] = "content-length:", te[] = "transfer-encoding:";
	uint64_t clen = 0;
	int have_len = 0, chunked = 0;
	for (uint32_t i = 0; i < end;) {
		uint32_t e = i;
		while (e < end && b[e] != '\n')
			e++;
		uint32_t len = e - i, k = 0;
		while (k < sizeof cl - 1 && k < len && (b[i + k] | 0x20) == cl[k])
			k++;
		if (k == sizeof cl - 1) {
			uint32_t j = i + k;
			while (j < e && b[j] == ' ')
				j++;
			for (; j < e && b[j] >= '0' && b[j] <= '9' && clen < (1ull << 40); j++)
				clen = clen * 10 + (uint64_t)(b[j] - '0');
			have_len = 1;
		}
		k = 0;
		while (k < sizeof te - 1 && k < len && (b[i + k] | 0x20) == te[k])
			k++;
		if (k == sizeof te - 1)
			chunked = 1;
		i = e + 1;
	}
	if (chunked)
		return n >= end + 5 && b[n - 5] == '0' && b[n - 4] == '\r' && b[n - 3] == '\n' &&
		       b[n - 2] == '\r' && b[n - 1] == '\n';
	return have_len && (uint64_t)n >= end + clen;
}

/* Whether the response in the tx area looks complete (under the lock). */
static int tx_complete(struct kvmjs_fast_page *p)
{
	if (p->tx_len > p->tx_cap)
		return 0;
	return looks_complete((const unsigned char *)p->tx_addr, p->tx_len);
}

/* After a send that completed a response: one plain system call, at which the host takes
 * the response (and an ephemeral VM ends its request). `waiting_epfd` says so, which lets a
 * non-ephemeral VM's next request be handed over right here too. */
static void hand_over(struct kvmjs_fast_page *p)
{
	__atomic_store_n(&p->waiting_epfd, KVMJS_FAST_FLUSHING, __ATOMIC_RELEASE);
	sys6(NR_getppid, 0, 0, 0, 0, 0, 0);
	int mine = KVMJS_FAST_FLUSHING;
	__atomic_compare_exchange_n(&p->waiting_epfd, &mine, 0, 0, __ATOMIC_RELEASE,
				    __ATOMIC_RELAXED);
}

/* The library's part of a send on `fd` (sendto, write, writev): the buffers go to the tx
 * area when `fd` is an open slot, the call is `allowed` (flags the page can honour) and all
 * of it fits, then the hand-over if that completed the response. -1: the host makes the
 * call. */
static long lib_send(int fd, const struct iov *v, int n, int allowed)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return -1;
	struct kvmjs_fast_slot *s = open_slot(p, fd);
	long r = s && allowed ? slot_send(p, s, v, n) : -1;
	int done = r >= 0 && tx_complete(p);
	if (r >= 0)
		p->answered++;
	unlock(p);
	if (done)
		hand_over(p);
	return r;
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr,
		      uint32_t alen)
{
	struct iov v = { buf, len };
	long r = lib_send(fd, &v, 1, !addr && !(flags & ~(MSG_DONTWAIT_ | MSG_NOSIGNAL_)));
	return r >= 0 ? r : ret(sys6(NR_sendto, fd, (long)buf, (long)len, flags, (long)addr, alen));
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	return sendto(fd, buf, len, flags, NULL, 0);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	struct iov v = { buf, len };
	long r = lib_send(fd, &v, 1, 1);
	return r >= 0 ? r : ret(sys6(NR_write, fd, (long)buf, (long)len, 0, 0, 0));
}

EXPORT ssize_t writev(int fd, const struct iov *v, int n)
{
	long r = lib_send(fd, v, n, v && n > 0 && n <= 1024);
	return r >= 0 ? r : ret(sys6(NR_writev, fd, (long)v, n, 0, 0, 0));
}

/* ---- the rest of a connection's life ------------------------------------------------ */

EXPORT int close(int fd)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return (int)ret(sys6(NR_close, fd, 0, 0, 0, 0, 0));
	struct kvmjs_fast_slot *s = open_slot(p, fd);
	if (s) {
		/* The host releases the descriptor at its next look, before any other call
		 * runs, so the number is not reused before Linux would reuse it. */
		s->state = KVMJS_SLOT_CLOSED;
		s->reg_epoll = 0;
		p->answered++;
	}
	/* An epoll instance's descriptor: the number may come back as another one. */
	for (int i = 0; i < KVMJS_FAST_EPOLLS; i++)
		if (p->epolls[i].fd == fd)
			p->epolls[i].fd = -1;
	unlock(p);
	return s ? 0 : (int)ret(sys6(NR_close, fd, 0, 0, 0, 0, 0));
}

EXPORT int shutdown(int fd, int how)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return (int)ret(sys6(NR_shutdown, fd, how, 0, 0, 0, 0));
	struct kvmjs_fast_slot *s = open_slot(p, fd);
	int ok = s && how >= 0 && how <= 2;
	if (ok) {
		s->shut |= how == 0 ? KVMJS_SHUT_RD : how == 1 ? KVMJS_SHUT_WR
							 : KVMJS_SHUT_RD | KVMJS_SHUT_WR;
		p->answered++;
	}
	unlock(p);
	return ok ? 0 : (int)ret(sys6(NR_shutdown, fd, how, 0, 0, 0, 0));
}

/* getpeername/getsockname on an open slot: the address the host put in the page. */
static int lib_name(int fd, void *addr, uint32_t *lenp, int peer)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return 0;
	struct kvmjs_fast_slot *s = open_slot(p, fd);
	const uint8_t *a = s ? (peer ? s->peer : s->local) : NULL;
	uint32_t alen = s ? (peer ? s->peer_len : s->local_len) : 0;
	int ok = s && addr && lenp && alen <= sizeof s->peer;
	if (ok) {
		put_addr(a, alen, addr, lenp);
		p->answered++;
	}
	unlock(p);
	return ok;
}

EXPORT int getpeername(int fd, void *addr, uint32_t *lenp)
{
	if (lib_name(fd, addr, lenp, 1))
		return 0;
	return (int)ret(sys6(NR_getpeername, fd, (long)addr, (long)lenp, 0, 0, 0));
}

EXPORT int getsockname(int fd, void *addr, uint32_t *lenp)
{
	if (lib_name(fd, addr, lenp, 0))
		return 0;
	return (int)ret(sys6(NR_getsockname, fd, (long)addr, (long)lenp, 0, 0, 0));
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, uint32_t len)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return (int)ret(sys6(NR_setsockopt, fd, level, name, (long)val, len, 0));
	struct kvmjs_fast_slot *s = open_slot(p, fd);
	int ok = s && level == IPPROTO_TCP_ && name == TCP_NODELAY_ && val && len == 4;
	if (ok) {
		s->nodelay = *(const uint32_t *)val != 0;
		p->answered++;
	}
	unlock(p);
	return ok ? 0 : (int)ret(sys6(NR_setsockopt, fd, level, name, (long)val, len, 0));
}

EXPORT int getsockopt(int fd, int level, int name, void *val, uint32_t *lenp)
{
	struct kvmjs_fast_page *p = enter(fd);
	if (!p)
		return (int)ret(sys6(NR_getsockopt, fd, level, name, (long)val, (long)lenp, 0));
	struct kvmjs_fast_slot *s = open_slot(p, fd);
	int ok = s && level == IPPROTO_TCP_ && name == TCP_NODELAY_ && val && lenp && *lenp >= 4;
	if (ok) {
		uint32_t v = s->nodelay == KVMJS_NODELAY_UNSET ? 0 : s->nodelay;
		copy(val, &v, 4);
		*lenp = 4;
		p->answered++;
	}
	unlock(p);
	return ok ? 0 : (int)ret(sys6(NR_getsockopt, fd, level, name, (long)val, (long)lenp, 0));
}

/* ---- the process ------------------------------------------------------------------ */

/* V8 asks now and then (5 calls in 20 renderer requests); the VM has one process. */
EXPORT pid_t getpid(void)
{
	struct kvmjs_fast_page *p = page;
	if (p && p->pid)
		return (pid_t)p->pid;
	return (pid_t)sys6(NR_getpid, 0, 0, 0, 0, 0, 0);
}
