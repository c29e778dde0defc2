"""Scrapes one /metrics endpoint the way Prometheus does (one kept-alive connection), timing each.

    .venv/bin/python bench/scrape.py PORT --count 200 [--openmetrics] [--gzip]  # prints a JSON list of seconds
    .venv/bin/python bench/scrape.py PORT --gzip --out FILE --pause 0.05         # until terminated, a line per scrape

Run as its own process, so the benchmark's own work (it also runs the simulator) never
delays the scraper and passes for server latency.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, help="scrapes to make; without it, scrape until terminated")
    parser.add_argument("--openmetrics", action="store_true")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--out", help="append [wall start, seconds] per scrape to this file")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between scrapes")
    args = parser.parse_args()
    headers = {
        "Accept": "application/openmetrics-text; version=1.0.0" if args.openmetrics else "text/plain",
        "Accept-Encoding": "gzip" if args.gzip else "identity",
    }
    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=120)
    out = open(args.out, "a") if args.out else None  # noqa: SIM115 - kept open for the whole run
    durations: list[float] = []
    while args.count is None or len(durations) < args.count:
        started_wall = time.time()
        started = time.perf_counter()
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200 or not body:
            print(f"scrape: HTTP {response.status}, {len(body)} bytes", file=sys.stderr)
            return 1
        durations.append(elapsed)
        if out is not None:
            out.write(json.dumps([started_wall, elapsed]) + "\n")
            out.flush()
        if args.pause:
            time.sleep(args.pause)
    print(json.dumps(durations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
