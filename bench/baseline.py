"""The designs the benchmark compares the exporter with, each run as its own process.

    .venv/bin/python bench/baseline.py serve --mode per-scrape --files DIR --port P
    .venv/bin/python bench/baseline.py serve --mode cached --files DIR --port P --render-every 2
    .venv/bin/python bench/baseline.py serve --mode raw --files DIR --port P
    .venv/bin/python bench/baseline.py poll-window --endpoint URL --instance-id I --access-key-id K

``serve`` exposes the same samples the exporter served (``DIR`` holds its four bodies):

- ``per-scrape``: prometheus_client's own HTTP server rendering on every scrape (gzip as it does it);
- ``cached``: prometheus_client rendering both formats and compressing them once per poll interval,
  serving cached bytes from a threading HTTP server: what a careful developer would build;
- ``raw``: a bare socket server sending the exporter's own bytes, unchanged: the physical limit.

``GET /stats`` on the cached server reports its renders and their CPU seconds.
``poll-window`` is the naive poller: it re-reads the whole 24 h window, as a poller without a cursor
must every poll, and prints the calls and CPU seconds that took.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BODIES = {
    # (openmetrics, gzip) -> file the benchmark wrote from the exporter's answers
    (False, False): "text",
    (False, True): "text.gz",
    (True, False): "openmetrics",
    (True, True): "openmetrics.gz",
}
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
GZIP_LEVEL = 1  # the cheapest level, so the cached baseline's per-poll cost is not overstated


def families_of(text: str) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return list(text_string_to_metric_families(text))


class _Fixed:
    """A prometheus_client collector returning the parsed families."""

    def __init__(self, families: Iterable[Any]) -> None:
        self.families = list(families)

    def collect(self) -> Any:
        return iter(self.families)


def registry_of(files: Path) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families_of((files / "text").read_text())))
    return registry


def serve_per_scrape(files: Path, port: int) -> None:
    from prometheus_client import start_http_server

    start_http_server(port, addr="127.0.0.1", registry=registry_of(files))
    print("ready", flush=True)
    threading.Event().wait()


class _Cached:
    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.bodies: dict[tuple[bool, bool], bytes] = {}
        self.renders = 0
        self.render_cpu = 0.0

    def render(self) -> None:
        from prometheus_client import generate_latest
        from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

        started = time.thread_time()
        text = generate_latest(self.registry)
        openmetrics = generate_openmetrics(self.registry)
        self.bodies = {
            (False, False): text,
            (False, True): gzip.compress(text, GZIP_LEVEL),
            (True, False): openmetrics,
            (True, True): gzip.compress(openmetrics, GZIP_LEVEL),
        }
        self.render_cpu += time.thread_time() - started
        self.renders += 1


def serve_cached(files: Path, port: int, render_every: float) -> None:
    cached = _Cached(registry_of(files))
    cached.render()

    def rerender() -> None:
        while True:
            time.sleep(render_every)
            cached.render()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes; without this, a small gzip body waits
            # for the client's delayed ACK (40 ms) and the baseline would look slow for nothing.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            if self.path == "/stats":
                body = json.dumps({"renders": cached.renders, "render_cpu_seconds": cached.render_cpu}).encode()
                headers = {"Content-Type": "application/json"}
            else:
                openmetrics = "application/openmetrics-text" in self.headers.get("Accept", "")
                compressed = "gzip" in self.headers.get("Accept-Encoding", "")
                body = cached.bodies[openmetrics, compressed]
                headers = {"Content-Type": OPENMETRICS_TYPE if openmetrics else TEXT_TYPE}
                if compressed:
                    headers["Content-Encoding"] = "gzip"
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    threading.Thread(target=rerender, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


def serve_raw(files: Path, port: int) -> None:
    """Pre-built responses written with one ``sendall``: what the exporter's bytes cost to move."""
    responses = {}
    for (openmetrics, compressed), name in BODIES.items():
        body = (files / name).read_bytes()
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"Content-Type: {OPENMETRICS_TYPE if openmetrics else TEXT_TYPE}\r\n"
            + ("Content-Encoding: gzip\r\n" if compressed else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        responses[openmetrics, compressed] = head.encode() + body

    def connection(conn: socket.socket) -> None:
        with conn:
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                request, pending = pending.split(b"\r\n\r\n", 1)
                lowered = request.decode("latin-1").lower()
                key = ("application/openmetrics-text" in lowered, "accept-encoding: gzip" in lowered)
                conn.sendall(responses[key])

    listener = socket.create_server(("127.0.0.1", port), backlog=64)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=connection, args=(conn,), daemon=True).start()


async def poll_window(endpoint: str, instance_id: str, access_key_id: str, now_ms: int) -> dict[str, Any]:
    from pydantic import SecretStr

    from idaas_sync_exporter.api.client import ClientOptions, EiamClient, JobFilter
    from idaas_sync_exporter.api.credentials import StaticCredentialsProvider
    from idaas_sync_exporter.api.endpoint import resolve_endpoint

    calls = 0

    def observe(instance_id: str, action: str, code: str, duration_seconds: float) -> None:
        nonlocal calls
        calls += 1

    client = EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", endpoint),
        credentials=StaticCredentialsProvider(access_key_id, SecretStr(os.environ["BENCH_ACCESS_KEY_SECRET"])),
        options=ClientOptions(requests_per_second=1000, burst=1000),
        observer=observe,
    )
    started_cpu = time.process_time()
    started = time.monotonic()
    jobs = 0
    window = JobFilter(start_ms=now_ms - 86_400_000, end_ms=now_ms)
    async with client:
        async for page in client.list_synchronization_job_pages(instance_id, window, max_results=100):
            jobs += len(page.jobs)
    return {
        "calls": calls,
        "jobs": jobs,
        "cpu_seconds": time.process_time() - started_cpu,
        "seconds": time.monotonic() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--mode", choices=("per-scrape", "cached", "raw"), required=True)
    serve.add_argument("--files", type=Path, required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--render-every", type=float, default=2.0)
    poll = commands.add_parser("poll-window")
    poll.add_argument("--endpoint", required=True)
    poll.add_argument("--instance-id", required=True)
    poll.add_argument("--access-key-id", required=True)
    poll.add_argument("--now-ms", type=int, required=True, help="the simulated time the window ends at")
    args = parser.parse_args()
    if args.command == "poll-window":
        print(json.dumps(asyncio.run(poll_window(args.endpoint, args.instance_id, args.access_key_id, args.now_ms))))
        return 0
    if args.mode == "per-scrape":
        serve_per_scrape(args.files, args.port)
    elif args.mode == "cached":
        serve_cached(args.files, args.port, args.render_every)
    else:
        serve_raw(args.files, args.port)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
