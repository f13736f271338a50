#!/usr/bin/env python3
"""Cold start of QuickJS apps: boot from scratch vs restore from a snapshot file.

For each app (hello, and the React SSR renderer when its bundle is built), each run starts
a fresh `kvmjs serve` (one program, concurrency 1) and sends one request as soon as the
port accepts connections; the two modes alternate run by run so drift affects both alike.
Per run it records:

- exec_to_response: from spawning `kvmjs serve` to the first response's last byte (process
  start, host probe, config, listening, the pool start, the request);
- first_request: from sending the first request to its response (the pool start the
  request waits for, plus the request itself);
- cold_start: kvmjs_cold_start_seconds_sum from /metrics: the pool start alone (boot or
  restore of worker 0, until it serves).

The "file" mode's snapshot file is written once with `kvmjs snapshot` before the runs and
every run must report kvmjs_snapshot_file_total{result="hit"} 1 (else the run fails).
Usage: coldstart.py KVMJS GUEST OUTDIR RUNS
"""
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

kvmjs, guest, runs = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), int(sys.argv[4])
out = os.path.abspath(sys.argv[3])
repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
os.makedirs(out, exist_ok=True)
apps = [("hello", "js/hello.js", b"Hello, World!\n")]
if os.path.exists(os.path.join(repo, "js/renderer.js")):  # built by js/renderer/build.sh
    apps.append(("renderer", "js/renderer.js", b"</html>"))


def configure(name, app):
    snap = os.path.join(out, f"{name}.snap")
    configs = {}
    for mode in ("boot", "file"):
        entry = {"filename": os.path.join(repo, app), "concurrency": 1, "max_request_time": 10}
        if mode == "file":
            entry["snapshot_file"] = snap
        path = os.path.join(out, f"tinykvm-{name}-{mode}.json")
        with open(path, "w") as f:
            json.dump({name: entry}, f)
        configs[mode] = path
    if os.path.exists(snap):
        os.remove(snap)
    subprocess.run([kvmjs, "snapshot", "--config", configs["file"], "--guest", guest],
                   check=True, stdout=sys.stderr, stderr=subprocess.DEVNULL)
    return snap, configs


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get_on(s, path):
    """Sends GET `path` on connected socket `s` and reads the answer to its end."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data


def http(port, path):
    return get_on(socket.create_connection(("127.0.0.1", port)), path)


def one(name, tail, configs, mode):
    port = free_port()
    log = open(os.path.join(out, f"serve-{name}-{mode}.log"), "w")
    t0 = time.perf_counter()
    p = subprocess.Popen([kvmjs, "serve", "--config", configs[mode], "--guest", guest,
                          "--listen", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=log)
    try:
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if p.poll() is not None or time.perf_counter() - t0 > 20:
                    raise RuntimeError(f"kvmjs serve did not listen (see {log.name})")
                time.sleep(0.0005)
        t1 = time.perf_counter()
        data = get_on(s, f"/{name}/")
        t2 = time.perf_counter()
        if b" 200 " not in data.split(b"\r\n", 1)[0] or not data.rstrip().endswith(tail.rstrip()):
            raise RuntimeError(f"unexpected response {data[:200]!r}")
        metrics = http(port, "/metrics").decode()
        cold = hit = None
        for line in metrics.splitlines():
            if line.startswith(f'kvmjs_cold_start_seconds_sum{{program="{name}"}}'):
                cold = float(line.split()[-1])
            if line.startswith(f'kvmjs_snapshot_file_total{{program="{name}",result="hit"}}'):
                hit = float(line.split()[-1])
        if mode == "file" and hit != 1:
            raise RuntimeError(f"the file was not restored (see {log.name})")
        if mode == "boot" and hit:
            raise RuntimeError("boot mode restored a file")
        return {"exec_to_response": (t2 - t0) * 1e3, "first_request": (t2 - t1) * 1e3,
                "cold_start": cold * 1e3}
    finally:
        p.kill()
        p.wait()
        log.close()


load0 = f"{os.getloadavg()[0]:.2f}"
results, sizes = {}, {}
for name, app, tail in apps:
    snap, configs = configure(name, app)
    sizes[name] = os.path.getsize(snap)
    r = results[name] = {"boot": [], "file": []}
    for i in range(runs):
        for mode in ("boot", "file") if i % 2 == 0 else ("file", "boot"):
            r[mode].append(one(name, tail, configs, mode))


def pct(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
probe = subprocess.run([kvmjs, "probe"], capture_output=True, text=True).stdout.splitlines()
kvm = next((l for l in probe if "kvm=" in l), "")
lines = [
    "# Cold start: boot vs snapshot file (QuickJS apps)",
    "",
    f"- date: {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}; runs: {runs} per mode, alternating",
    f"- CPU: {cpu} x {os.cpu_count()}; kernel {platform.release()}",
    f"- host probe: {kvm.split('host probe:', 1)[-1].strip()}" if kvm else "- host probe: (not printed)",
    "- snapshot files: " + ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in sizes.items())
    + f"; load average before/after: {load0} / {os.getloadavg()[0]:.2f}",
    "- method: bench/snapshot/coldstart.py (docstring): a fresh `kvmjs serve` per run, one",
    "  program at concurrency 1, the first request sent as soon as the port accepts.",
    "",
    "| app | mode | metric | p50 | p99 | min | max |",
    "|---|---|---|---|---|---|---|",
]
for name in results:
    for mode, label in (("boot", "boot from scratch"), ("file", "snapshot file")):
        for key, what in (("cold_start", "pool start (kvmjs_cold_start_seconds)"),
                          ("first_request", "first request, sent to answered"),
                          ("exec_to_response", "`kvmjs serve` exec to first response")):
            xs = [r[key] for r in results[name][mode]]
            lines.append(f"| {name} | {label} | {what} | {pct(xs, .5):.2f} ms | "
                         f"{pct(xs, .99):.2f} ms | {min(xs):.2f} ms | {max(xs):.2f} ms |")
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
print(text)
