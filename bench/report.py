#!/usr/bin/env python3
"""Turns bench/run's raw wrk results into bench/results.md and a PNG chart.

Medians across rounds of mean/p50/p99 latency and req/s; kvmjs rows add VM exits, dirty
pages and reset time per request. Ratios are computed within the same run only; the
"Varnish in front" table sets the same ephemeral programs served directly, behind Varnish
over HTTP and inside Varnish as the VMOD side by side.
"""
import argparse
import json
import statistics
from collections import defaultdict

ORDER = ["deno", "node", "quickjs-process", "quickjs-fork", "kvmjs-nonephemeral", "kvmjs-ephemeral", "kvmjs-ephemeral-varnish", "kvmjs-ephemeral-vmod", "kvmjs-deno-nonephemeral", "kvmjs-deno-ephemeral"]
LABELS = {
    "deno": "native deno (Deno.serve)",
    "node": "native node (http)",
    "quickjs-process": "QuickJS guest, plain process",
    "quickjs-fork": "QuickJS guest, fork per request",
    "kvmjs-nonephemeral": "kvmjs non-ephemeral",
    "kvmjs-ephemeral": "kvmjs ephemeral",
    "kvmjs-ephemeral-varnish": "kvmjs ephemeral via Varnish",
    "kvmjs-ephemeral-vmod": "kvmjs ephemeral in Varnish (VMOD)",
    "kvmjs-deno-nonephemeral": "kvmjs non-ephemeral, deno engine",
    "kvmjs-deno-ephemeral": "kvmjs ephemeral, deno engine",
}
WORKLOADS = ["hello", "output", "renderer"]


def median(rows, key):
    vals = [r[key] for r in rows if key in r and r.get("requests", 0) > 0]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "–"
    if unit == "us":
        return f"{v/1000:.2f} ms" if v >= 10000 else f"{v:.0f} µs"
    if unit == "rps":
        return f"{v/1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("md")
    ap.add_argument("png")
    for k in ["date", "kernel", "cpu", "kvm", "versions", "mode"]:
        ap.add_argument(f"--{k}", default="")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.raw) if l.strip()]
    groups = defaultdict(list)
    for r in rows:
        groups[(r["workload"], r["comparator"], r["conns"])].append(r)
    conns = sorted({r["conns"] for r in rows})

    def m(w, c, n, key):
        return median(groups.get((w, c, n), []), key)

    out = ["# kvmjs benchmark results", ""]
    out += [
        f"- date: {a.date}; mode: {a.mode}",
        f"- machine: {a.cpu}; kernel {a.kernel}; KVM: {a.kvm}",
        f"- peers: {a.versions}",
        "- method: `wrk -t1 -cN -s bench/wrk.lua`, every server on 127.0.0.1, comparators interleaved within each round,"
        " a 1 s unrecorded warm-up before each measurement; figures are medians across rounds.",
        "- kvmjs counters (exits, dirty pages, reset) are per request, from the server's /metrics before/after each run"
        " (for the VMOD row, varnishd's /metrics, which vcl/kvmjs-vmod.vcl routes to the VMOD).",
        "",
    ]
    for w in WORKLOADS:
        out += [f"## {w}", ""]
        head = "| comparator | p50 | p99 | mean | req/s (c1) |"
        sep = "|---|---|---|---|---|"
        if 2 in conns:
            head += " req/s (c2) | p50 (c2) |"
            sep += "---|---|"
        head += " exits/req | dirty pages/req | reset |"
        sep += "---|---|---|"
        out += [head, sep]
        for c in ORDER:
            if (w, c, 1) not in groups:
                continue
            line = f"| {LABELS[c]} | {fmt(m(w,c,1,'p50_us'),'us')} | {fmt(m(w,c,1,'p99_us'),'us')} | {fmt(m(w,c,1,'mean_us'),'us')} | {fmt(m(w,c,1,'rps'),'rps')} |"
            if 2 in conns:
                line += f" {fmt(m(w,c,2,'rps'),'rps')} | {fmt(m(w,c,2,'p50_us'),'us')} |"
            ex, dp, rs = m(w, c, 1, "exits_per_req"), m(w, c, 1, "dirty_per_req"), m(w, c, 1, "reset_us")
            line += f" {fmt(ex)} | {fmt(dp)} | {fmt(rs,'us') if rs else '–'} |"
            out.append(line)
        out.append("")

    def ratio(w, x, y, key="p50_us"):
        vx, vy = m(w, x, 1, key), m(w, y, 1, key)
        return f"{vx/vy:.2f}×" if vx and vy else "–"

    out += ["## Ratios (p50 latency at -c1, same run)", ""]
    out += ["| workload | kvmjs ephemeral / non-ephemeral | kvmjs ephemeral / native deno | QuickJS process / native deno | kvmjs ephemeral / QuickJS process | deno engine ephemeral / native deno | deno engine non-ephemeral / native deno |", "|---|---|---|---|---|---|---|"]
    for w in WORKLOADS:
        out.append(
            f"| {w} | {ratio(w,'kvmjs-ephemeral','kvmjs-nonephemeral')} | {ratio(w,'kvmjs-ephemeral','deno')} | {ratio(w,'quickjs-process','deno')} | {ratio(w,'kvmjs-ephemeral','quickjs-process')} | {ratio(w,'kvmjs-deno-ephemeral','deno')} | {ratio(w,'kvmjs-deno-nonephemeral','deno')} |"
        )
    out += ["", "## Varnish in front (p50 latency at -c1, same run)", ""]
    out += [
        "The same ephemeral QuickJS programs (one config) reached directly (`kvmjs serve`), through Varnish"
        " proxying over HTTP to `kvmjs serve` (vcl/kvmjs.vcl), and inside varnishd as the kvmjs VMOD"
        " (vcl/kvmjs-vmod.vcl, no HTTP hop to kvmjs).",
        "",
        "| workload | direct | Varnish → HTTP → kvmjs | Varnish VMOD | HTTP hop / direct | VMOD / direct | VMOD / HTTP hop |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in WORKLOADS:
        d, h, v = (m(w, c, 1, "p50_us") for c in ("kvmjs-ephemeral", "kvmjs-ephemeral-varnish", "kvmjs-ephemeral-vmod"))
        out.append(
            f"| {w} | {fmt(d,'us')} | {fmt(h,'us')} | {fmt(v,'us')} | {ratio(w,'kvmjs-ephemeral-varnish','kvmjs-ephemeral')} | {ratio(w,'kvmjs-ephemeral-vmod','kvmjs-ephemeral')} | {ratio(w,'kvmjs-ephemeral-vmod','kvmjs-ephemeral-varnish')} |"
        )
    out += ["", "![p50 and p99 latency per comparator and workload](chart.png)", ""]
    with open(a.md, "w") as f:
        f.write("\n".join(out))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(WORKLOADS), figsize=(16, 5.5))
    for ax, w in zip(axes, WORKLOADS):
        comps = [c for c in ORDER if (w, c, 1) in groups]
        p50 = [(m(w, c, 1, "p50_us") or 0) / 1000 for c in comps]
        p99 = [(m(w, c, 1, "p99_us") or 0) / 1000 for c in comps]
        x = range(len(comps))
        ax.bar([i - 0.2 for i in x], p50, 0.4, label="p50")
        ax.bar([i + 0.2 for i in x], p99, 0.4, label="p99")
        ax.set_yscale("log")
        ax.set_title(f"{w} (wrk -c1)")
        ax.set_ylabel("latency, ms (log scale)")
        ax.set_xticks(list(x))
        ax.set_xticklabels([LABELS[c].replace(", ", "\n").replace(" via", "\nvia").replace(" in V", "\nin V") for c in comps], rotation=60, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"kvmjs vs native runtimes — {a.kvm} — {a.date}", fontsize=10)
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)


if __name__ == "__main__":
    main()
