"""bench load's client against a minimal HTTP/1.1 server that counts the connections it accepts."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from partnermatch.bench.load import WARMUP_PER_TASK, drive_load

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def _serve_counting(connections: Counter[str]) -> tuple[asyncio.Server, str]:
    """A loopback server answering `{}` to every request, keeping connections open for as long as
    the client does; `connections[path]` counts the connections whose first request was to `path`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = None
        try:
            while True:  # until the client closes the connection
                lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
                if path is None:
                    path = lines[0].split()[1]
                    connections[path] += 1
                sizes = [int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:")]
                await reader.readexactly(sizes[0] if sizes else 0)
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def test_drive_load_opens_a_connection_per_route_request_so_workers_share_them() -> None:
    connections: Counter[str] = Counter()

    async def run() -> dict[str, Any]:
        server, url = await _serve_counting(connections)
        async with server:
            return await drive_load(url, {}, [{"deal": {"deal_id": "crm-1"}}], concurrency=3, seconds=0.3)

    results = asyncio.run(run())
    routed = results["requests_ok"] + 3 * WARMUP_PER_TASK
    # Kept-alive connections would give 3 (one per task), and a multi-worker server would leave them
    # all with the worker that accepted them first.
    assert connections["/route"] == routed
    assert results["errors"] == 0
