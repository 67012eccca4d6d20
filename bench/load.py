"""A small asyncio HTTP/1.1 load generator replaying pre-built requests over keep-alive
connections: cheap enough per request that one process can drive the web server hard."""

from __future__ import annotations

import asyncio
import time

# One percentile for the benchmark and the dashboard; bench/ imports it from here.
from pimsync.stats import percentile  # noqa: F401


def build_request(path: str, body: bytes, headers: dict[str, str], host: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def _run(host: str, port: int, requests: list[bytes], concurrency: int, rate: float | None):
    latencies: list[float] = [0.0] * len(requests)
    statuses: list[int] = [0] * len(requests)
    next_index = 0
    start = time.perf_counter()

    async def connection():
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_index < len(requests):
                index = next_index
                next_index += 1
                if rate:  # open loop: request i starts at i / rate
                    delay = start + index / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                sent = time.perf_counter()
                writer.write(requests[index])
                statuses[index] = await _read_response(reader)
                latencies[index] = time.perf_counter() - sent
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, statuses


def run(host: str, port: int, requests: list[bytes], concurrency: int = 32, rate: float | None = None):
    """Send every request; return (seconds, latencies, statuses)."""
    return asyncio.run(_run(host, port, requests, concurrency, rate))
