#!/usr/bin/env python3
"""Turns the keep-alive simulator's JSON into bench/keepalive/results.md and chart.png.

    python3 bench/keepalive/report.py SIM.json TRACE_STATS.json RESULTS.md CHART.png
        [--date ..] [--cpu ..] [--command ..] [--trace-args ..]

SIM.json is `kvmjs keepalive-sim --trace TRACE.csv --json`:
    {"policies": [{"name", "invocations", "cold_starts", "cold_start_pct",
                   "app_cold_pct": {"p50", "p75", "p90", "p99", "zero_fraction"},
                   "wasted_gb_s", "wasted_vs_fixed"}, ...]}
TRACE_STATS.json is gen_trace.py --stats (the trace's characterization).

Before writing anything the JSON is checked against the trace and itself (every policy saw
every invocation of the trace, cold starts <= invocations, percentages agree with the
counts, per-app percentiles ordered and within 0..100, the fixed policy is the memory
baseline); a mismatch exits non-zero with what disagreed, so a wrong simulator or a stale
trace never becomes a table. Works with any number of policies; "fixed-10min" must be one.

With --trace, the fixed policy is also recomputed here from the trace, independently of the
simulator, and must agree: cold starts (each app's first, plus each idle time of 10 minutes
or more; invocations take --exec-time-s, 0 by default as in the simulator), the per-app
cold-start % after the first invocation over apps with two or more (nearest-rank
percentiles), and the wasted memory-time (each idle time up to 10 minutes, the last one up to
the trace's end, times --memory-mb).
"""
import argparse
import json
import math
import os
import sys

BASELINE = "fixed-10min"
QUANTILES = [("p50", 0.50), ("p75", 0.75), ("p90", 0.90), ("p99", 0.99)]
LABELS = {"fixed-10min": "fixed 10-minute keep-alive", "hybrid": "hybrid histogram (ATC'20)"}


def check(sim, stats):
    """Every inconsistency between the simulator's JSON and the trace, as messages."""
    errs = []
    pols = sim.get("policies")
    if not isinstance(pols, list) or not pols:
        return ["no \"policies\" list in the simulator's JSON"]
    names = [p.get("name") for p in pols]
    if BASELINE not in names:
        errs.append(f"no {BASELINE!r} policy (got {names})")
    for p in pols:
        n, c = p.get("name"), p
        try:
            inv, cold, pct = c["invocations"], c["cold_starts"], c["cold_start_pct"]
            app, wasted = c["app_cold_pct"], c["wasted_gb_s"]
            c["wasted_vs_fixed"]  # null only when the baseline wasted nothing
            # null when no app has two invocations: nothing to order then.
            qs = [app[k] for k, _ in QUANTILES] if app is not None else []
            zero = app["zero_fraction"] if app is not None else 0.0
        except (KeyError, TypeError) as e:
            errs.append(f"{n}: missing field {e}")
            continue
        if inv != stats["rows"]:
            errs.append(f"{n}: {inv} invocations, the trace has {stats['rows']} rows")
        if not 0 <= cold <= inv:
            errs.append(f"{n}: {cold} cold starts for {inv} invocations")
        if cold < stats["apps"]:
            errs.append(f"{n}: {cold} cold starts, fewer than the trace's {stats['apps']} apps (each app's first invocation is cold)")
        if inv and not math.isclose(pct, 100.0 * cold / inv, rel_tol=1e-3, abs_tol=1e-3):
            errs.append(f"{n}: cold_start_pct {pct} but 100*{cold}/{inv} = {100.0 * cold / inv:.4f}")
        if any(not 0 <= q <= 100 for q in qs) or qs != sorted(qs):
            errs.append(f"{n}: per-app percentiles not ordered within 0..100: {qs}")
        if not 0 <= zero <= 1:
            errs.append(f"{n}: zero_fraction {zero} outside 0..1")
        elif qs and zero > 0.5 and qs[0] != 0:
            errs.append(f"{n}: {zero:.3f} of apps have no cold start but the median app has {qs[0]}%")
        if wasted < 0:
            errs.append(f"{n}: negative wasted memory-time {wasted}")
    base = next((p for p in pols if p.get("name") == BASELINE), None)
    if base and not errs:
        if base["wasted_gb_s"] > 0 and not math.isclose(base["wasted_vs_fixed"], 1.0, abs_tol=1e-9):
            errs.append(f"{BASELINE}: wasted_vs_fixed {base['wasted_vs_fixed']}, expected 1.0")
        for p in pols:
            if base["wasted_gb_s"] > 0 and not math.isclose(p["wasted_vs_fixed"] or 0.0, p["wasted_gb_s"] / base["wasted_gb_s"], rel_tol=1e-3):
                errs.append(f"{p['name']}: wasted_vs_fixed {p['wasted_vs_fixed']} but {p['wasted_gb_s']}/{base['wasted_gb_s']}")
    return errs


def nearest_rank(sorted_vals, p):
    return sorted_vals[min(max(math.ceil(p * len(sorted_vals)), 1), len(sorted_vals)) - 1]


def reference_fixed(trace, keep_s, exec_s, memory_mb):
    """The fixed keep-alive policy recomputed from the trace (one instance per app)."""
    last_end, cold, count = {}, {}, {}
    wasted_s = 0.0
    # Idle times within a microsecond of the keep-alive: float rounding may put them on
    # either side, so they bound how far the cold-start counts may differ.
    ambiguous = 0
    horizon = 0.0
    with open(trace) as f:
        next(f)
        for line in f:
            app, _, ts = line.rstrip("\n").rpartition(",")
            t = float(ts)
            horizon = t
            end = last_end.get(app)
            if end is None:
                cold[app], count[app], last_end[app] = 1, 1, t + exec_s
                continue
            count[app] += 1
            if t > end:
                gap = t - end
                if abs(gap - keep_s) < 1e-6:
                    ambiguous += 1
                if gap >= keep_s:
                    cold[app] += 1
                wasted_s += min(gap, keep_s)
            last_end[app] = max(end, t + exec_s)
    horizon += exec_s
    wasted_s += sum(min(max(horizon - e, 0.0), keep_s) for e in last_end.values())
    pcts = sorted(100.0 * (cold[a] - 1) / (count[a] - 1) for a in count if count[a] >= 2)
    dist = None
    if pcts:
        dist = {k: nearest_rank(pcts, q) for k, q in QUANTILES}
        dist["zero_fraction"] = sum(1 for x in pcts if x == 0.0) / len(pcts)
    return {"cold_starts": sum(cold.values()), "invocations": sum(count.values()), "app_cold_pct": dist, "wasted_gb_s": wasted_s * memory_mb / 1024.0, "ambiguous": ambiguous}


def check_reference(sim, ref):
    """Disagreements between the simulator's fixed policy and the reference."""
    base = next((p for p in sim["policies"] if p.get("name") == BASELINE), None)
    if base is None:
        return []
    errs = []
    if base["invocations"] != ref["invocations"]:
        errs.append(f"reference: {ref['invocations']} invocations, the simulator {base['invocations']}")
    if abs(base["cold_starts"] - ref["cold_starts"]) > ref["ambiguous"]:
        errs.append(f"reference: {BASELINE} has {ref['cold_starts']} cold starts (±{ref['ambiguous']} idle times at the boundary), the simulator {base['cold_starts']}")
    if not math.isclose(base["wasted_gb_s"], ref["wasted_gb_s"], rel_tol=1e-6, abs_tol=1e-9):
        errs.append(f"reference: {BASELINE} wastes {ref['wasted_gb_s']:.6f} GB·s, the simulator {base['wasted_gb_s']:.6f} (same --memory-mb and --exec-time-s?)")
    if ref["ambiguous"] == 0:
        a, b = ref["app_cold_pct"], base["app_cold_pct"]
        if (a is None) != (b is None) or (a and any(not math.isclose(a[k], b[k], abs_tol=1e-9) for k in a)):
            errs.append(f"reference: {BASELINE} per-app cold-start % {a}, the simulator {b}")
    return errs


def pct(x, digits=1):
    return f"{x:.{digits}f}%"


def table(sim):
    out = [
        "| policy | invocations | cold starts | cold-start % | per-app cold-start % p50 | p75 | p90 | p99 | apps with no cold start after the first | wasted memory-time (GB·s) | wasted vs fixed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in sim["policies"]:
        a = p["app_cold_pct"]
        dist = " | ".join(pct(a[k]) for k, _ in QUANTILES) + f" | {pct(100 * a['zero_fraction'])}" if a else " | ".join(["–"] * 5)
        rel = "–" if p["wasted_vs_fixed"] is None else f"{p['wasted_vs_fixed']:.3f}×"
        out.append(
            f"| {LABELS.get(p['name'], p['name'])} | {p['invocations']:,} | {p['cold_starts']:,} | {pct(p['cold_start_pct'], 3)} | "
            + dist
            + f" | {p['wasted_gb_s']:,.1f} | {rel} |"
        )
    return out


def pattern_table(by_pattern, stats):
    pols = [p["name"] for p in by_pattern[0][1]["policies"]]
    short = {"fixed-10min": "fixed", "hybrid": "hybrid"}
    sh = [short.get(n, n) for n in pols]
    head = "| pattern | apps | invocations | " + " | ".join(f"cold starts {n}" for n in sh) + " | " + " | ".join(f"per-app p75 {n}" for n in sh)
    head += " | " + " | ".join(f"wasted GB·s {n}" for n in sh) + " | " + " | ".join(f"wasted {n} / fixed" for n in sh[1:]) + " |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, psim in by_pattern:
        ps = psim["policies"]
        p75 = ["–" if p["app_cold_pct"] is None else pct(p["app_cold_pct"]["p75"]) for p in ps]
        rel = ["–" if p["wasted_vs_fixed"] is None else f"{p['wasted_vs_fixed']:.2f}×" for p in ps[1:]]
        apps = stats["patterns"].get(name, {}).get("apps", "?")
        out.append(
            f"| {name} | {apps} | {ps[0]['invocations']:,} | " + " | ".join(f"{p['cold_starts']:,}" for p in ps) + " | " + " | ".join(p75)
            + " | " + " | ".join(f"{p['wasted_gb_s']:,.0f}" for p in ps) + " | " + " | ".join(rel) + " |"
        )
    return out


def characterization(s):
    f = lambda x: pct(100 * x)
    r = s["nominal_rate_per_min"]
    out = [
        "| trace property | value | paper (Azure, ATC'20 §3) |",
        "|---|---|---|",
        f"| apps | {s['apps']:,} | — |",
        f"| invocations (rows) | {s['rows']:,} over {s['duration_s'] / 86400:g} days | — |",
        f"| nominal average rate per app | {r['min']:.2g} … {r['max']:.2g} per minute ({r['decades']:.1f} decades) | 8 orders of magnitude (Fig. 5a) |",
        f"| apps invoked ≤ 1/hour on average | {f(s['frac_le_1_per_hour']['realized'])} (nominal {f(s['frac_le_1_per_hour']['nominal'])}) | 45% |",
        f"| apps invoked ≤ 1/minute on average | {f(s['frac_le_1_per_min']['realized'])} (nominal {f(s['frac_le_1_per_min']['nominal'])}) | 81% |",
        f"| invocation share of the top 18.6% of apps (nominal rates) | {pct(100 * s['top_18_6pct_invocation_share']['nominal'], 2)} | 99.6% (Fig. 5b) |",
        f"| apps generated at the rate cap ({s['max_rate_per_min']:g}/min) | {s['capped_apps']} (nominal total {s['nominal_invocations']:.3g} invocations) | — |",
        f"| apps whose median idle time exceeds 4 h (out of the histogram's range) | {f(s['frac_apps_median_idle_over_4h'])} | — |",
        f"| apps invoked once | {f(s['frac_apps_single_invocation'])} | — |",
    ]
    mix = ", ".join(
        f"{name} {v['apps']} (median IAT CV {'n/a' if v['median_iat_cv'] is None else format(v['median_iat_cv'], '.2f')})" for name, v in s["patterns"].items()
    )
    out += [f"| idle-time patterns (apps) | {mix} | CV ≈ 0 timers, ≈ 1 Poisson, > 1 bursty (Fig. 6) |"]
    return out


def cdf_points(a):
    """(cold-start %, fraction of apps) points of the per-app CDF that the quantiles pin down."""
    zero = a["zero_fraction"]
    pts = [(0.0, zero)]
    for k, q in QUANTILES:
        if q > zero:
            pts.append((a[k], q))
    pts.append((100.0, 1.0))
    return pts


def chart(sim, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pols = sim["policies"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    ax = axes[0]
    for p in (p for p in pols if p["app_cold_pct"]):
        xs, ys = zip(*cdf_points(p["app_cold_pct"]))
        ax.plot(xs, ys, marker="o", label=LABELS.get(p["name"], p["name"]))
    ax.set_xlabel("per-app cold-start % (after each app's first invocation)")
    ax.set_ylabel("fraction of apps (CDF)")
    ax.set_title("Per-app cold starts (cf. paper Fig. 14/16)\nmarkers: reported quantiles and no-cold-start share", fontsize=9)
    ax.set_xlim(-2, 102)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1]
    dots = [(p, p["wasted_vs_fixed"] or 0.0, p["app_cold_pct"]["p75"]) for p in pols if p["app_cold_pct"]]
    xmax = max([1.0] + [x for _, x, _ in dots]) * 1.15
    ymax = max([1.0] + [y for _, _, y in dots]) * 1.2
    for p, x, y in dots:
        ax.scatter(x, y, s=60)
        # Labels point inwards so the right-most policy's name stays inside the axes.
        right = x > xmax / 2
        ax.annotate(LABELS.get(p["name"], p["name"]), (x, y), textcoords="offset points", xytext=(-8 if right else 8, 6), ha="right" if right else "left", fontsize=8)
    ax.set_xlabel("wasted memory-time, normalised to fixed 10 min")
    ax.set_ylabel("3rd-quartile per-app cold-start %")
    ax.set_title("Cold starts vs wasted memory (cf. paper Fig. 15)", fontsize=9)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, ymax)
    ax.grid(alpha=0.3)

    ax = axes[2]
    names = [LABELS.get(p["name"], p["name"]).replace(" (", "\n(") for p in pols]
    rel = [p["wasted_vs_fixed"] or 0.0 for p in pols]
    cold = [p["cold_start_pct"] for p in pols]
    x = range(len(pols))
    bars = ax.bar([i - 0.2 for i in x], rel, 0.4, label="wasted memory-time / fixed", color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_ylabel("wasted memory-time / fixed 10 min")
    ax2 = ax.twinx()
    bars = ax2.bar([i + 0.2 for i in x], cold, 0.4, label="cold-start % (all invocations)", color="tab:orange")
    ax2.bar_label(bars, fmt="%.2f%%", fontsize=8)
    ax2.set_ylabel("cold-start % of all invocations")
    # Both axes start at zero with the same headroom, so bar heights compare within a series.
    ax.set_ylim(0, max(rel + [1e-9]) * 1.4)
    ax2.set_ylim(0, max(cold + [1e-9]) * 1.4)
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_title("Memory and cold starts per policy", fontsize=9)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sim")
    ap.add_argument("stats")
    ap.add_argument("md")
    ap.add_argument("png")
    for k in ["date", "cpu", "command", "trace-args"]:
        ap.add_argument(f"--{k}", default="")
    ap.add_argument("--trace", help="the trace CSV: recompute the fixed policy from it and compare")
    ap.add_argument("--memory-mb", type=float, default=3.0, help="as passed to the simulator (its default: 3)")
    ap.add_argument("--exec-time-s", type=float, default=0.0, help="as passed to the simulator (its default: 0)")
    ap.add_argument("--pattern", action="append", default=[], metavar="NAME=SIM.json=TRACE.csv", help="the simulator on the sub-trace of one idle-time pattern's apps")
    a = ap.parse_args()
    sim = json.load(open(a.sim))
    stats = json.load(open(a.stats))
    errs = check(sim, stats)
    ref = None
    if a.trace and not errs:
        ref = reference_fixed(a.trace, 600.0, a.exec_time_s, a.memory_mb)
        errs = check_reference(sim, ref)
    by_pattern = []
    for spec in a.pattern:
        name, psim_path, ptrace = spec.split("=", 2)
        psim = json.load(open(psim_path))
        pref = reference_fixed(ptrace, 600.0, a.exec_time_s, a.memory_mb)
        perrs = check_reference(psim, pref)
        names = [p.get("name") for p in psim.get("policies", [])]
        if names != [p["name"] for p in sim["policies"]]:
            perrs.append(f"policies {names}, the full run has {[p['name'] for p in sim['policies']]}")
        errs += [f"pattern {name}: {e}" for e in perrs]
        by_pattern.append((name, psim))
    if errs:
        print("report.py: the simulator's output does not match the trace:", file=sys.stderr)
        for e in errs:
            print("  - " + e, file=sys.stderr)
        sys.exit(1)
    pols = {p["name"]: p for p in sim["policies"]}
    out = ["# Keep-alive policies on a synthetic Azure-Functions-shaped trace", ""]
    out += [
        f"- date: {a.date}; machine: {a.cpu}",
        f"- trace: `bench/keepalive/gen_trace.py {a.trace_args}` (seed {stats['seed']}, rows sha256 `{stats['sha256_rows'][:16]}…`)",
        f"- simulator: `{a.command}`; {a.memory_mb:g} MB per loaded app, invocations run {a.exec_time_s:g} s, one instance per app",
        "- cold-start %: cold starts / invocations over the whole trace, each app's first (compulsory) one included."
        " Per-app cold-start %: each app's cold starts after its first invocation, over apps invoked at least twice,"
        " then nearest-rank percentiles over those apps (the paper's metric, Figs. 14–16; the generator's rate cap"
        " changes the overall % through its denominator, the per-app figures hardly). \"apps with no cold start\" is"
        " the share of those apps with 0% after their first invocation.",
        "- wasted memory-time: GB·s an app stayed loaded without running an invocation, summed over apps, up to the"
        " trace's last start (memory per app × time).",
        "",
        "## Results",
        "",
    ]
    out += table(sim)
    if ref is not None:
        out += [
            "",
            f"The {BASELINE} row agrees with an independent recomputation from the trace (report.py: cold starts"
            f" {ref['cold_starts']:,}, per-app percentiles, wasted {ref['wasted_gb_s']:,.1f} GB·s).",
        ]
    if "hybrid" in pols and BASELINE in pols and pols["hybrid"]["app_cold_pct"] and pols[BASELINE]["app_cold_pct"]:
        h, f = pols["hybrid"], pols[BASELINE]
        out += [
            "",
            f"Hybrid vs fixed: 3rd-quartile per-app cold-start % {f['app_cold_pct']['p75']:.1f}% → {h['app_cold_pct']['p75']:.1f}%,"
            f" cold starts {f['cold_starts']:,} → {h['cold_starts']:,},"
            f" wasted memory-time {f['wasted_gb_s']:,.1f} → {h['wasted_gb_s']:,.1f} GB·s ({h['wasted_vs_fixed'] or 0:.2f}× of fixed).",
        ]
    if by_pattern:
        out += ["", "## By idle-time pattern", ""]
        out += [
            "The same simulator on the sub-trace of each pattern's apps (apps are independent in the simulation;"
            " only the end of the last idle period moves to the sub-trace's last start). The fixed policy of every"
            " sub-trace is recomputed independently as well.",
            "",
        ]
        order = list(stats["patterns"])
        by_pattern.sort(key=lambda x: order.index(x[0]) if x[0] in order else len(order))
        out += pattern_table(by_pattern, stats)
    out += ["", "## Trace characterization", ""]
    out += characterization(stats)
    rel_png = os.path.relpath(a.png, os.path.dirname(os.path.abspath(a.md)) or ".")
    out += ["", f"![per-app cold-start CDF, trade-off and wasted memory per policy]({rel_png})", ""]
    with open(a.md, "w") as f:
        f.write("\n".join(out))
    chart(sim, a.png, f"Keep-alive simulation — {stats['apps']} apps, {stats['rows']:,} invocations, {stats['duration_s'] / 86400:g} days — {a.date}")


if __name__ == "__main__":
    main()
