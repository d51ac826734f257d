"""Benchmark: SMTP intake throughput and time-to-250, against a bare aiosmtpd server.

    .venv/bin/python bench/intake.py [--messages 3000] [--clients 20] [--database URL]

Both servers run as separate processes; the same 20 client threads drive each in turn. The
bare server's handler only answers 250; ours answers 250 only after the message is durable
(SQLite with synchronous=FULL by default), with the intake worker routing in the same process.
The headline is the ratio of the two throughputs.
"""

from __future__ import annotations

import argparse
import os
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BARE_SERVER = """
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

async def main():
    loop = asyncio.get_running_loop()
    port = int(sys.argv[1])
    await loop.create_server(lambda: SMTP(Handler(), hostname="bench"), "127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def message(run: str, i: int) -> bytes:
    body = "您好，请删除我在贵公司保存的全部个人信息，并注销我的账号。谢谢。\r\n" * 8
    return (
        f"From: user{i}@example.com\r\nTo: privacy@localhost\r\nSubject: request {i}\r\n"
        f"Message-ID: <{run}-{i}@bench.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + body
    ).encode()


def drive(port: int, total: int, clients: int) -> tuple[float, list[float]]:
    """Send `total` messages from `clients` threads, one connection each; time every 250."""
    run = f"{port}-{time.time_ns()}"
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = total // clients

    def client(index: int) -> None:
        mine: list[float] = []
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            for n in range(per_client):
                raw = message(run, index * per_client + n)
                started = time.perf_counter()
                smtp.sendmail("bench@example.com", ["privacy@localhost"], raw)
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


def report(name: str, elapsed: float, latencies: list[float]) -> float:
    rate = len(latencies) / elapsed
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    print(f"{name:<28} {rate:8.0f} msg/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--database", help="database URL (default: SQLite in a temp folder)")
    args = parser.parse_args()
    print(f"{args.messages} messages, {args.clients} concurrent SMTP clients")

    bare_port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
    try:
        wait_for_port(bare_port)
        drive(bare_port, args.clients * 5, args.clients)  # warm-up
        bare = report("bare aiosmtpd (250 only)", *drive(bare_port, args.messages, args.clients))
    finally:
        server.terminate()
        server.wait()

    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
        env.update(
            RIGHTSDESK_SMTP__PORT=str(port),
            # The clients stand for many mail servers, all of them on 127.0.0.1.
            RIGHTSDESK_SMTP__MAX_CONNECTIONS_PER_CLIENT=str(max(10, args.clients)),
            RIGHTSDESK_LOGGING__LEVEL="WARNING",
            RIGHTSDESK_DATABASE__URL=args.database
            or f"sqlite+aiosqlite:///{Path(workdir) / 'bench.db'}",
        )
        desk = subprocess.Popen([sys.executable, "-m", "rightsdesk", "run"], cwd=workdir, env=env)
        try:
            wait_for_port(port)
            drive(port, args.clients * 5, args.clients)
            ours = report("rightsdesk (durable 250)", *drive(port, args.messages, args.clients))
        finally:
            desk.send_signal(signal.SIGTERM)
            desk.wait(timeout=30)
    print(f"ratio rightsdesk / bare: {ours / bare:.2f}")


if __name__ == "__main__":
    main()
