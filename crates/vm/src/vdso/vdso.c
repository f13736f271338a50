/* kvmjs vDSO: clock_gettime, gettimeofday, time, getcpu and clock_getres answered in ring 3
 * from RDTSC and the host-filled data page, so a clock read costs no VM exit. Anything the
 * page cannot answer (no usable TSC, CPU-time clocks, unknown ids) takes the real `syscall`
 * instruction, which the host emulates. No libc: built -nostdlib -ffreestanding. */
#include "vvar.h"
#include <stddef.h>

typedef long long i64;
typedef unsigned int u32;

/* Linux UAPI numbers and structs (x86-64). */
#define NR_gettimeofday 96
#define NR_time 201
#define NR_clock_gettime 228
#define NR_clock_getres 229
#define NR_getcpu 309
#define EINVAL 22

struct timespec_k { i64 tv_sec; i64 tv_nsec; };
struct timeval_k { i64 tv_sec; i64 tv_usec; };

#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT __attribute__((visibility("default")))

/* Defined by vdso.lds at the image base - 4096: the host's data page. */
extern const struct kvmjs_vvar kvmjs_vvar HIDDEN;

/* The struct layout as this compiler sees it; the Rust unit test reads it from the image's
 * symbol table and compares it with `VdsoData`. Never read at run time. */
__attribute__((used)) HIDDEN const u64 kvmjs_vvar_layout[] = {
	sizeof(struct kvmjs_vvar),
	offsetof(struct kvmjs_vvar, magic),
	offsetof(struct kvmjs_vvar, flags),
	offsetof(struct kvmjs_vvar, clock_mask),
	offsetof(struct kvmjs_vvar, tsc_base),
	offsetof(struct kvmjs_vvar, mult),
	offsetof(struct kvmjs_vvar, shift),
	offsetof(struct kvmjs_vvar, res_ns),
	offsetof(struct kvmjs_vvar, cpu),
	offsetof(struct kvmjs_vvar, node),
	offsetof(struct kvmjs_vvar, base_ns),
	KVMJS_CLOCKS,
	KVMJS_VVAR_MAGIC,
	KVMJS_VVAR_TSC_VALID,
};

static inline long sys2(long nr, long a, long b)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
	return ret;
}

static inline long sys3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The page as this call sees it: read through a volatile pointer so the compiler cannot
 * assume it is constant data of the image. */
static inline const volatile struct kvmjs_vvar *vvar(void)
{
	return &kvmjs_vvar;
}

static inline u64 rdtsc_ordered(void)
{
	u32 lo, hi;
	/* LFENCE keeps the read from being executed ahead of earlier loads. */
	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
	return ((u64)hi << 32) | lo;
}

/* The clock's value in ns, or -1 when the page cannot answer it. */
static inline int read_ns(u32 clk, u64 *ns)
{
	const volatile struct kvmjs_vvar *v = vvar();
	if (v->magic != KVMJS_VVAR_MAGIC || !(v->flags & KVMJS_VVAR_TSC_VALID))
		return -1;
	if (clk >= KVMJS_CLOCKS || !((v->clock_mask >> clk) & 1))
		return -1;
	/* Signed: a TSC read just before the base (it cannot happen on one timeline, but a
	 * wrong host offset must not turn into centuries) gives a small negative step. */
	i64 ticks = (i64)(rdtsc_ordered() - v->tsc_base);
	__int128 scaled = (__int128)ticks * (__int128)(i64)v->mult;
	*ns = v->base_ns[clk] + (u64)(i64)(scaled >> (v->shift & 127));
	return 0;
}

EXPORT int __vdso_clock_gettime(int clk, struct timespec_k *ts)
{
	u64 ns;
	if (clk < 0 || read_ns((u32)clk, &ns) != 0)
		return (int)sys2(NR_clock_gettime, clk, (long)ts);
	ts->tv_sec = (i64)(ns / 1000000000ull);
	ts->tv_nsec = (i64)(ns % 1000000000ull);
	return 0;
}

EXPORT int __vdso_gettimeofday(struct timeval_k *tv, void *tz)
{
	u64 ns;
	/* The kernel's timezone is always zero here; a non-null tz goes to the host. */
	if (tz || read_ns(0, &ns) != 0)
		return (int)sys2(NR_gettimeofday, (long)tv, (long)tz);
	if (tv) {
		tv->tv_sec = (i64)(ns / 1000000000ull);
		tv->tv_usec = (i64)(ns % 1000000000ull / 1000);
	}
	return 0;
}

EXPORT long __vdso_time(long *t)
{
	u64 ns;
	if (read_ns(0, &ns) != 0)
		return sys2(NR_time, (long)t, 0);
	long s = (long)(ns / 1000000000ull);
	if (t)
		*t = s;
	return s;
}

EXPORT long __vdso_getcpu(unsigned *cpu, unsigned *node, void *cache)
{
	const volatile struct kvmjs_vvar *v = vvar();
	if (v->magic != KVMJS_VVAR_MAGIC)
		return sys3(NR_getcpu, (long)cpu, (long)node, (long)cache);
	if (cpu)
		*cpu = (unsigned)v->cpu;
	if (node)
		*node = (unsigned)v->node;
	return 0;
}

EXPORT int __vdso_clock_getres(int clk, struct timespec_k *res)
{
	const volatile struct kvmjs_vvar *v = vvar();
	if (clk < 0 || clk >= KVMJS_CLOCKS || v->magic != KVMJS_VVAR_MAGIC ||
	    !(v->flags & KVMJS_VVAR_TSC_VALID) || !((v->clock_mask >> clk) & 1))
		return (int)sys2(NR_clock_getres, clk, (long)res);
	if (res) {
		res->tv_sec = 0;
		res->tv_nsec = (i64)v->res_ns;
	}
	return 0;
}

/* The unprefixed names, as Linux's vDSO exports them. */
int clock_gettime(int, struct timespec_k *) EXPORT __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval_k *, void *) EXPORT __attribute__((weak, alias("__vdso_gettimeofday")));
long time(long *) EXPORT __attribute__((weak, alias("__vdso_time")));
long getcpu(unsigned *, unsigned *, void *) EXPORT __attribute__((weak, alias("__vdso_getcpu")));
int clock_getres(int, struct timespec_k *) EXPORT __attribute__((weak, alias("__vdso_clock_getres")));
