"""Tabulates bench/density/run.sh: report.py N OUT_DIR "AS C PSS_KB" ...

Per configuration, each figure is (after - before) / N in MB, from the /proc/meminfo
files run.sh saved (Pss: the process's whole Pss / N, kvmjs's fixed ~14 MB included).
"Per further VM" is (figure at concurrency 4 - figure at concurrency 1) / 3.
"""

import datetime
import os
import platform
import sys

USER = ["AnonPages", "Shmem"]
KERNEL = ["VmallocUsed", "SUnreclaim", "PageTables", "SecPageTables", "KernelStack"]


def meminfo(path):
    out = {}
    with open(path) as f:
        for line in f:
            key, rest = line.split(":", 1)
            out[key] = int(rest.split()[0])
    return out


def figures(n, out, size, c, pss_kb):
    before = meminfo(os.path.join(out, f"meminfo-{size}-{c}-before"))
    after = meminfo(os.path.join(out, f"meminfo-{size}-{c}-after"))
    f = {k: (after.get(k, 0) - before.get(k, 0)) / n / 1024 for k in USER + KERNEL}
    f["Pss"] = pss_kb / n / 1024
    f["user"] = sum(f[k] for k in USER)
    f["kernel"] = sum(f[k] for k in KERNEL)
    f["total"] = f["user"] + f["kernel"]
    f["MemFree drop"] = (before["MemFree"] - after["MemFree"]) / n / 1024
    return f


def probe_line(out, size, c):
    with open(os.path.join(out, f"serve-{size}-{c}.log")) as f:
        for line in f:
            if "host probe:" in line:
                return line.split("host probe:", 1)[1].strip()
    return "(not logged)"


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    runs = {}
    for row in sys.argv[3:]:
        size, c, pss = row.split()
        runs[(size, c)] = figures(n, out, size, c, int(pss))
    cols = ["Pss", "AnonPages", "Shmem"] + KERNEL + ["user", "kernel", "total", "MemFree drop"]
    print("# Host memory per loaded program (QuickJS hello)\n")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    print(f"- date: {now}; {n} programs per configuration, one request each")
    print(f"- CPU: {cpu_model()} x {os.cpu_count()}; kernel {platform.release()}")
    first = next(iter(runs))
    print(f"- host probe: {probe_line(out, *first)}")
    print("- method: bench/density/run.sh (its header); MB per program, /proc/meminfo deltas")
    print("  over the program count; total = AnonPages + Shmem + the kernel columns\n")
    print("| address_space | VMs per program | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for (size, c), f in runs.items():
        print(f"| {size} MB | {c} | " + " | ".join(f"{f[k]:.2f}" for k in cols) + " |")
    for size in sorted({s for s, _ in runs}, key=int, reverse=True):
        one, four = runs.get((size, "1")), runs.get((size, "4"))
        if one and four:
            extra = {k: (four[k] - one[k]) / 3 for k in cols}
            print(f"| {size} MB | per further VM | " + " | ".join(f"{extra[k]:.2f}" for k in cols) + " |")


if __name__ == "__main__":
    main()
