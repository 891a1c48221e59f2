#!/usr/bin/env python3
"""Serves N scrape targets from one process for scripts/bench-scrape-vs-peers.sh.

Target i listens on its own 127.0.0.1 port (so every scraper sees N distinct instances) and
answers /metrics with the node_exporter body from ../shared/fixtures/exposition, every value
moved on each request: counters (`_total`, `_count`, `_sum`, `_bucket`, `_seconds`) grow by a
per-series step, everything else swings around its recorded value. So no scraper can skip work
because a value did not change. One more port takes remote write POSTs and drops them (vmagent
needs somewhere to forward to).

Usage: scrape-targets.py FIXTURE N PORTFILE [SERIES]
With SERIES, each body has that many series: the fixture's, then copies of them told apart by a
`rep` label, cut at SERIES. Writes "sink_port port_1 ... port_N" to PORTFILE once every socket listens, then serves until
killed. Standard library only.
"""
import http.server
import math
import os
import socketserver
import sys
import threading


def load(path):
    """(prefix, base value, is counter) per sample line of an exposition body."""
    series = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            prefix, _, value = line.rstrip("\n").rpartition(" ")
            try:
                base = float(value)
            except ValueError:
                continue
            name = prefix.split("{", 1)[0]
            counter = name.endswith(("_total", "_count", "_sum", "_bucket", "_seconds"))
            series.append((prefix, base, counter))
    return series


class Target:
    """One target's body, regenerated per request with moved values."""

    def __init__(self, series, seed):
        self.series = series
        self.seed = seed
        self.n = 0
        self.lock = threading.Lock()

    def body(self):
        with self.lock:
            self.n += 1
            n = self.n
        out = []
        for k, (prefix, base, counter) in enumerate(self.series):
            step = 1 + (k * 7 + self.seed) % 13
            if counter:
                v = base + n * step
            else:
                v = base * (1 + 0.01 * math.sin(n * 0.1 + k)) + step
            out.append(f"{prefix} {v:.6g}")
        out.append("")
        return "\n".join(out).encode()


def widen(series, want):
    """`want` series: the fixture's, then copies carrying rep="1", rep="2", ..."""
    out = list(series)
    rep = 0
    while len(out) < want:
        rep += 1
        for prefix, base, counter in series:
            name, brace, rest = prefix.partition("{")
            label = f'rep="{rep}"'
            out.append((f"{name}{{{label},{rest}" if brace else f"{name}{{{label}}}", base, counter))
    return out[:want]


def handler_for(target):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = target.body()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    fixture, n, portfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    series = load(fixture)
    if len(sys.argv) > 4:
        series = widen(series, int(sys.argv[4]))
    servers = [Server(("127.0.0.1", 0), handler_for(Target(series, 0)))]
    servers += [Server(("127.0.0.1", 0), handler_for(Target(series, i + 1))) for i in range(n)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    with open(portfile + ".tmp", "w") as f:
        f.write(" ".join(str(s.server_address[1]) for s in servers))
    os.replace(portfile + ".tmp", portfile)
    threading.Event().wait()


if __name__ == "__main__":
    main()
