/* vdso-clock: a static glibc program that reads the clocks through glibc (the vDSO, when
 * the VM provides one) and checks each against the raw clock_gettime system call, which
 * always reaches the host. Built with `cc -static`; the KVM test counts its system calls:
 * with a TSC clock, the only clock_gettime calls the host sees are the raw ones below. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long ns(const struct timespec *t)
{
	return (long long)t->tv_sec * 1000000000 + t->tv_nsec;
}

int main(void)
{
	int ok = 1;
	printf("vdso: %s\n", getauxval(AT_SYSINFO_EHDR) ? "present" : "absent");
	const clockid_t ids[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME};
	for (unsigned i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		struct timespec before, host, after;
		clock_gettime(ids[i], &before);
		syscall(SYS_clock_gettime, ids[i], &host);
		clock_gettime(ids[i], &after);
		/* The host's reading lies between the two guest readings, give or take 1 ms. */
		int agrees = ns(&host) >= ns(&before) - 1000000 && ns(&host) <= ns(&after) + 1000000;
		ok &= agrees;
		printf("clock %d: agrees with the host within 1 ms: %s\n", (int)ids[i],
		       agrees ? "yes" : "NO");
	}
	struct timespec prev, now;
	int monotonic = 1;
	clock_gettime(CLOCK_MONOTONIC, &prev);
	for (int i = 0; i < 10000; i++) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (ns(&now) < ns(&prev))
			monotonic = 0;
		prev = now;
	}
	ok &= monotonic;
	printf("monotonic over 10000 reads: %s\n", monotonic ? "yes" : "NO");
	struct timeval tv;
	gettimeofday(&tv, NULL);
	time_t t = time(NULL);
	int sane = tv.tv_sec - t >= -1 && tv.tv_sec - t <= 1 && t > 1577836800;
	ok &= sane;
	printf("gettimeofday/time agree: %s\n", sane ? "yes" : "NO");
	return ok ? 0 : 1;
}
