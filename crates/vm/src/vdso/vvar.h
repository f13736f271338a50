/* The data page ("vvar") the host fills and maps read-only one page below the vDSO image.
 * Rust mirrors this struct as `VdsoData` (vdso/mod.rs); the image carries the layout in
 * `kvmjs_vvar_layout` (vdso.c) and a unit test compares the two, so they cannot drift. */
#ifndef KVMJS_VVAR_H
#define KVMJS_VVAR_H

typedef unsigned long long u64;

/* One slot per Linux clock id below this bound (CLOCK_TAI is 11). */
#define KVMJS_CLOCKS 12

/* flags */
#define KVMJS_VVAR_TSC_VALID 1ull

struct kvmjs_vvar {
	u64 magic;        /* KVMJS_VVAR_MAGIC once the host has filled the page */
	u64 flags;        /* KVMJS_VVAR_TSC_VALID: the TSC is a clock; else every call traps */
	u64 clock_mask;   /* bit n: clock id n is answered here; others take the syscall */
	u64 tsc_base;     /* guest TSC at the instant the bases were sampled */
	u64 mult;         /* ns = (ticks * mult) >> shift */
	u64 shift;
	u64 res_ns;       /* resolution reported by clock_getres for answered clocks */
	u64 cpu;          /* getcpu() answers */
	u64 node;
	u64 base_ns[KVMJS_CLOCKS]; /* each clock's value at tsc_base, in ns */
};

#define KVMJS_VVAR_MAGIC 0x6b766d6a73767661ull /* "avvsjmvk" */

#endif
