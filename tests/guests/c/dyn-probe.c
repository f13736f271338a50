/* dyn-probe: a small dynamically linked glibc program whose output is the same natively and
 * in a kvmjs VM (the acceptance test compares the bytes). It exercises what an unmodified
 * program needs from the VM: the dynamic loader and libc.so, pthreads (4 threads, a mutex
 * and a condition variable), a file mapping, mprotect RW->RX of generated code, and
 * clock_gettime through the vDSO. Usage: dyn-probe FILE */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 250

static void fail(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Threads take turns in a fixed order through one mutex and condvar, so the log they
 * build is the same on every run. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static int turn;
static unsigned char order[THREADS * ROUNDS];
static int pos;

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	for (int r = 0; r < ROUNDS; r++) {
		pthread_mutex_lock(&lock);
		while (turn != id)
			pthread_cond_wait(&turn_changed, &lock);
		order[pos++] = (unsigned char)('a' + id);
		turn = (turn + 1) % THREADS;
		pthread_cond_broadcast(&turn_changed);
		pthread_mutex_unlock(&lock);
	}
	return (void *)(intptr_t)(id * 10);
}

static void threads(void)
{
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		if ((errno = pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i)))
			fail("pthread_create");
	long sum = 0;
	for (int i = 0; i < THREADS; i++) {
		void *ret;
		if ((errno = pthread_join(t[i], &ret)))
			fail("pthread_join");
		sum += (long)(intptr_t)ret;
	}
	printf("threads: %d x %d turns, order %.8s... hash %016llx, joined sum %ld\n", THREADS,
	       ROUNDS, (const char *)order, (unsigned long long)fnv1a(order, sizeof order), sum);
}

static void file_map(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open");
	struct stat st;
	if (fstat(fd, &st) != 0)
		fail("fstat");
	if (st.st_size == 0) {
		printf("mmap: empty file\n");
		close(fd);
		return;
	}
	unsigned char *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap file");
	close(fd);
	printf("mmap: %lld bytes, fnv1a %016llx, first byte %02x\n", (long long)st.st_size,
	       (unsigned long long)fnv1a(p, (size_t)st.st_size), p[0]);
	if (munmap(p, (size_t)st.st_size) != 0)
		fail("munmap");
}

static void jit(void)
{
	/* lea rax, [rdi + rsi*2]; ret */
	static const unsigned char code[] = {0x48, 0x8d, 0x04, 0x77, 0xc3};
	long page = sysconf(_SC_PAGESIZE);
	unsigned char *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fail("mmap anon");
	memcpy(p, code, sizeof code);
	if (mprotect(p, (size_t)page, PROT_READ | PROT_EXEC) != 0)
		fail("mprotect RX");
	long (*f)(long, long) = (long (*)(long, long))(void *)p;
	printf("jit: f(40, 1) = %ld, f(-7, 100) = %ld\n", f(40, 1), f(-7, 100));
	munmap(p, (size_t)page);
}

static int64_t ns(clockid_t id)
{
	struct timespec ts;
	if (clock_gettime(id, &ts) != 0)
		fail("clock_gettime");
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void clocks(void)
{
	printf("vdso: %s\n", getauxval(AT_SYSINFO_EHDR) ? "present" : "absent");
	int monotonic = 1;
	int64_t prev = ns(CLOCK_MONOTONIC);
	for (int i = 0; i < 10000; i++) {
		int64_t now = ns(CLOCK_MONOTONIC);
		if (now < prev)
			monotonic = 0;
		prev = now;
	}
	int64_t real = ns(CLOCK_REALTIME) / 1000000000;
	/* 2020-01-01 .. 2100-01-01 */
	int sane = real > 1577836800 && real < 4102444800;
	struct timespec ten_ms = {0, 10 * 1000 * 1000};
	int64_t t0 = ns(CLOCK_MONOTONIC);
	if (nanosleep(&ten_ms, NULL) != 0)
		fail("nanosleep");
	int64_t slept = ns(CLOCK_MONOTONIC) - t0;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	int agree = tv.tv_sec - real >= 0 && tv.tv_sec - real <= 2;
	printf("clock: monotonic %s, realtime %s, 10 ms sleep %s, gettimeofday %s\n",
	       monotonic ? "ok" : "WENT BACKWARDS", sane ? "sane" : "INSANE",
	       slept >= 10000000 && slept < 5000000000 ? "ok" : "WRONG",
	       agree ? "agrees" : "DISAGREES");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: dyn-probe FILE\n");
		return 2;
	}
	printf("dyn-probe: start\n");
	threads();
	file_map(argv[1]);
	jit();
	clocks();
	printf("dyn-probe: done\n");
	return 0;
}
