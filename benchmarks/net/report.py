#!/usr/bin/env python3
"""Turns benchmarks/out/net-results.jsonl (one JSON line per run) into medians: a table on
stdout, the "network benchmark" section of benchmarks/RESULTS.md, the headline table of
benchmarks/README.md (between their markers; the rest of each file is kept) and a PNG chart."""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
from collections import defaultdict

SERVER_NAMES = {
    "herald": "herald (WebSocket)",
    "wspp": "websocketpp, naive",
    "ws": "Node ws",
    "uws": "uWebSockets (pub/sub)",
    "herald-lp": "herald (long-poll)",
    "socketio": "Socket.IO (polling)",
}
BEGIN, END = "<!-- net-benchmark: begin (written by benchmarks/run.sh) -->", "<!-- net-benchmark: end -->"


def load(path):
    runs = defaultdict(list)
    order = []
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        key = (r["label"], r["server"])
        if r["label"] not in order:
            order.append(r["label"])
        runs[key].append(r)
    return runs, order


def med(rs, field):
    vals = [r[field] for r in rs if field in r and r.get("exit", 0) == 0]
    return statistics.median(vals) if vals else None


def integrity(rs):
    lost = sum(r.get("gaps", 0) for r in rs)
    undelivered = sum(r.get("missing", 0) for r in rs)
    late = sum(r.get("late", 0) for r in rs)
    bad = sum(r.get("wrong_channel", 0) + r.get("malformed", 0) for r in rs)
    failed = sum(1 for r in rs if r.get("exit", 0) != 0) + sum(r.get("failed", 0) for r in rs)
    return f"{lost} / {undelivered} / {late} / {bad} / {failed}"


def fmt_rate(v):
    if v is None:
        return "—"
    return f"{v / 1e6:.2f} M" if v >= 1e5 else f"{v / 1e3:.1f} k"


def ratio(v, base):
    return f"{v / base:.2f}×" if v and base else ""


def fmt_ms(v):
    return "—" if v is None else (f"{v / 1000:.1f}" if v >= 10000 else f"{v / 1000:.2f}")


def cmd(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def versions(uws_version=None):
    pkg = {}
    lock = os.path.join(os.path.dirname(__file__), "peers", "package-lock.json")
    try:
        data = json.load(open(lock))
        for name in ("ws", "socket.io"):
            pkg[name] = data["packages"].get(f"node_modules/{name}", {}).get("version", "?")
    except Exception:
        pass
    wspp = "?"
    try:
        text = open("/usr/include/websocketpp/version.hpp").read()
        parts = [re.search(rf"{k} = (\d+)", text).group(1) for k in ("major_version", "minor_version", "patch_version")]
        wspp = ".".join(parts)
    except Exception:
        pass
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
        "compiler": cmd(["c++", "--version"]).splitlines()[0] if cmd(["c++", "--version"]) else "?",
        "node": cmd(["node", "--version"]), "ws": pkg.get("ws", "?"), "socket.io": pkg.get("socket.io", "?"),
        "websocketpp": wspp, "herald": cmd(["git", "describe", "--always", "--dirty"]), "uws": uws_version,
    }


def build_tables(runs, order, reps):
    servers_of = defaultdict(list)
    for (label, server) in runs:
        if server not in servers_of[label]:
            servers_of[label].append(server)
    # The uWebSockets columns (each server against it: herald / uws) only when it ran.
    uws = any(s == "uws" for (_, s) in runs)
    vs_uws = lambda l, s, field: (f" {ratio(med(runs[(l, s)], field), med(runs.get((l, 'uws'), []), field))} |"
                                  if uws else "")
    lines = []
    # Throughput scenarios.
    thr = [l for l in order if l.startswith(("fanout", "channels", "longpoll"))]
    if thr:
        lines += ["| scenario | server | deliveries/s (median) |" + (" vs uWebSockets |" if uws else "") +
                  " vs websocketpp | vs Node ws | per server CPU-second | p50 / p99 ms | server CPU | load-gen CPU | lost / undelivered / late / bad / failed |",
                  "|---|---|---:|" + ("---:|" if uws else "") + "---:|---:|---:|---:|---:|---:|---|"]
        for l in thr:
            base_wspp = med(runs.get((l, "wspp"), []), "deliveries_per_s")
            base_ws = med(runs.get((l, "ws"), []), "deliveries_per_s")
            base_sio = med(runs.get((l, "socketio"), []), "deliveries_per_s")
            for s in servers_of[l]:
                rs = runs[(l, s)]
                v = med(rs, "deliveries_per_s")
                r1 = ratio(v, base_wspp)
                r2 = ratio(v, base_ws) if v and base_ws else (f"{v / base_sio:.2f}× Socket.IO" if v and base_sio and s != "socketio" else "")
                checks = integrity(rs)
                eff = med([dict(r, eff=r["deliveries_per_s"] / r["server_cpu"]) for r in rs
                           if r.get("server_cpu", 0) > 0 and "deliveries_per_s" in r], "eff")
                lines.append(f"| {l} | {SERVER_NAMES.get(s, s)} | {fmt_rate(v)} |{vs_uws(l, s, 'deliveries_per_s')} {r1} | {r2} | {fmt_rate(eff)} | "
                             f"{fmt_ms(med(rs, 'lat_p50_us'))} / {fmt_ms(med(rs, 'lat_p99_us'))} | "
                             f"{med(rs, 'server_cpu') or 0:.2f} | {med(rs, 'loadgen_cpu') or 0:.2f} | {checks} |")
        lines.append("")
    lat = [l for l in order if l.startswith("latency")]
    if lat:
        lines += ["| scenario | server | p50 ms | p99 ms |" + (" p99 vs uWebSockets |" if uws else "") +
                  " p99.9 ms | max ms | deliveries/s | server CPU | load-gen CPU | lost / undelivered / late / bad / failed |",
                  "|---|---|---:|---:|" + ("---:|" if uws else "") + "---:|---:|---:|---:|---:|---|"]
        for l in lat:
            for s in servers_of[l]:
                rs = runs[(l, s)]
                checks = integrity(rs)
                lines.append(f"| {l} | {SERVER_NAMES.get(s, s)} | {fmt_ms(med(rs, 'lat_p50_us'))} | {fmt_ms(med(rs, 'lat_p99_us'))} |{vs_uws(l, s, 'lat_p99_us')} "
                             f"{fmt_ms(med(rs, 'lat_p999_us'))} | {fmt_ms(med(rs, 'lat_max_us'))} | {fmt_rate(med(rs, 'deliveries_per_s'))} | "
                             f"{med(rs, 'server_cpu') or 0:.2f} | {med(rs, 'loadgen_cpu') or 0:.2f} | {checks} |")
        lines.append("")
    idle = [l for l in order if l.startswith("idle")]
    if idle:
        lines += ["| scenario | server | user-space bytes per idle connection (RSS delta / connections) |" +
                  (" vs uWebSockets |" if uws else "") + " connections ready |",
                  "|---|---|---:|" + ("---:|" if uws else "") + "---:|"]
        for l in idle:
            for s in servers_of[l]:
                rs = runs[(l, s)]
                v = med(rs, "bytes_per_conn")
                ready = min((r.get("ready", 0) for r in rs), default=0)
                lines.append(f"| {l} | {SERVER_NAMES.get(s, s)} | {'—' if v is None else f'{v:,.0f} B ({v / 1024:.2f} KiB)'} |{vs_uws(l, s, 'bytes_per_conn')} {ready} |")
        lines.append("")
    return lines


def headline(runs):
    def g(l, s, f):
        return med(runs.get((l, s), []), f)
    # With uWebSockets in the run: its column and herald / uWebSockets after herald's.
    peers = (["uws"] if any(s == "uws" for (_, s) in runs) else []) + ["wspp", "ws"]
    head = {"uws": "uWebSockets", "wspp": "websocketpp (naive)", "ws": "Node ws"}
    rows = ["| | herald |" + (" herald / uWebSockets |" if "uws" in peers else "") +
            "".join(f" {head[p]} |" for p in peers),
            "|---|---:|" + "---:|" * (len(peers) + ("uws" in peers))]

    def row(name, l, field, fmt):
        cells = [fmt(g(l, "herald", field))]
        if "uws" in peers:
            cells.append(ratio(g(l, "herald", field), g(l, "uws", field)))
        cells += [fmt(g(l, p, field)) for p in peers]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")

    for l, name in (("fanout-1000-paced", "fan-out to 1000, paced (deliveries/s)"),
                    ("fanout-1000-bursty", "fan-out to 1000, bursty (deliveries/s)"),
                    ("channels-10000", "10k connections, personal + group channels (deliveries/s)")):
        if (l, "herald") in runs:
            row(name, l, "deliveries_per_s", fmt_rate)
    l = "latency-1000-at-1000"
    if (l, "herald") in runs:
        row("1000 msg/s to 1000 subscribers, p99 (ms)", l, "lat_p99_us", fmt_ms)
    l = "idle-10000"
    if (l, "herald") in runs:
        row("memory per idle connection (10k, subscribed)", l, "bytes_per_conn",
            lambda v: "—" if v is None else f"{v / 1024:.1f} KiB")
    l = "longpoll-1000"
    if (l, "herald-lp") in runs:
        rows.append(f"| long-poll, 1000 pollers (deliveries/s; Socket.IO polling in the last column) | {fmt_rate(g(l, 'herald-lp', 'deliveries_per_s'))} |"
                    + " |" * (len(peers) - 1 + ("uws" in peers)) + f" {fmt_rate(g(l, 'socketio', 'deliveries_per_s'))} |")
    return rows


def chart(runs, order, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"herald": "#2b6cb0", "herald-lp": "#2b6cb0", "uws": "#c53030", "wspp": "#dd6b20", "ws": "#38a169", "socketio": "#805ad5"}
    thr = [l for l in order if l.startswith(("fanout", "channels", "longpoll"))]
    lat = [l for l in order if l.startswith("latency")]
    idle = [l for l in order if l.startswith("idle")]
    panels = [p for p in (thr, lat, idle) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 + 4.5 * len(panels), 4.8),
                             gridspec_kw={"width_ratios": [max(2, len(p)) for p in panels]})
    if len(panels) == 1:
        axes = [axes]
    for ax, labels in zip(axes, panels):
        servers = []
        for l in labels:
            for (ll, s) in runs:
                if ll == l and s not in servers:
                    servers.append(s)
        width = 0.8 / max(1, len(servers))
        for i, s in enumerate(servers):
            xs, ys = [], []
            for j, l in enumerate(labels):
                field = "bytes_per_conn" if l.startswith("idle") else "lat_p99_us" if l.startswith("latency") else "deliveries_per_s"
                v = med(runs.get((l, s), []), field)
                if v is None:
                    continue
                xs.append(j + i * width - 0.4 + width / 2)
                ys.append(v / (1e6 if field == "deliveries_per_s" else 1000 if field == "lat_p99_us" else 1024))
            ax.bar(xs, ys, width, label=SERVER_NAMES.get(s, s), color=colors.get(s, "#888"))
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        first = labels[0]
        ax.set_ylabel("M deliveries/s, log scale (higher is better)" if first.startswith(("fanout", "channels", "longpoll"))
                      else "p99 latency, ms, log scale (lower is better)" if first.startswith("latency") else "KiB per idle connection (lower is better)")
        # Log scales: paced, channel and long-poll figures are a tenth of the bursty ones.
        if first.startswith(("latency", "fanout", "channels", "longpoll")):
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("herald vs peers, same run, medians (benchmarks/run.sh)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def replace_section(path, body, title):
    text = open(path).read() if os.path.exists(path) else f"# {title}\n\n"
    block = BEGIN + "\n" + body.rstrip() + "\n" + END
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--quick", type=int, default=0)
    ap.add_argument("--results-md")
    ap.add_argument("--readme")
    ap.add_argument("--chart")
    ap.add_argument("--uws-version", help="uWebSockets/uSockets sources used (run.sh: their commits when git checkouts)")
    a = ap.parse_args()
    runs, order = load(a.results)
    tables = build_tables(runs, order, a.reps)
    print("\n".join(tables))
    v = versions(a.uws_version)
    load_avg = open("/proc/loadavg").read().split()[:3]
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = [
        "## Network benchmark: herald against its peers",
        "",
        f"`benchmarks/run.sh{' --quick' if a.quick else ''}` on {when}: {v['cores']} cores ({v['cpu']}), Linux {v['kernel']}, "
        f"{v['compiler']}; Node {v['node']}, ws {v['ws']}, Socket.IO {v['socket.io']}, websocketpp {v['websocketpp']}; "
        f"{'uWebSockets ' + v['uws'] + '; ' if v['uws'] else ''}"
        f"herald {v['herald']}. Load average at the end: {' '.join(load_avg)} (the machine is shared: compare "
        f"servers within one run, not across runs).",
        "",
        f"Medians of {a.reps} run{'s' if a.reps > 1 else ''} per server and scenario, servers interleaved. Each server pinned "
        "to core 0, the load generator to core 1, over 127.0.0.1. `lost` counts sequence numbers a subscriber "
        "skipped (a later one came first), `undelivered` those still not delivered when the run ended (publishing "
        "stops, then the load generator waits up to 5 s: a server that fell behind shows here), `late` duplicates or "
        "out-of-order ones, `bad` frames on the wrong channel or unreadable, "
        "`failed` connections that failed and runs that did not finish: summed over all runs, never dropped. "
        "Server and load-generator CPU are in cores (1.00 = one core busy for the whole measured window): a load "
        "generator near 1.00 would mean it, not the server, was the limit. Other engineers compile on this machine: "
        "a process pinned to a core gets the share of it the scheduler leaves, so `per server CPU-second` "
        "(deliveries/s divided by the server's CPU) is given beside the raw rate: it is what each server does with "
        "the CPU it got.",
        "",
        *tables,
        "![herald vs peers](results/net.png)" if a.chart else "",
    ]
    if a.results_md:
        replace_section(a.results_md, "\n".join(body), "herald benchmark results")
    if a.readme:
        replace_section(a.readme, "\n".join(["Headline (medians, same run; details in RESULTS.md):", "", *headline(runs)]),
                        "herald benchmarks")
    if a.chart:
        chart(runs, order, a.chart)
        print(f"chart: {a.chart}")


if __name__ == "__main__":
    main()
