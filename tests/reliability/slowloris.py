"""A slowloris flood against 127.0.0.1, run as its own process by tests/reliability/test_faults.py.

Each client opens a TLS connection, sends the start of a request head and then one more
header byte per second, never finishing it; when the server closes the connection, it opens
a new one at once. Run in a process of its own so that its TLS handshakes do not delay the
test's normal client, whose latency is what is measured.

    python -m tests.reliability.slowloris PORT CA_FILE CLIENTS MAX_SECONDS [SOURCE]

Prints ``ready`` once CLIENTS connections have been opened, and a JSON object of counters
when its standard input closes (the test is done) or after MAX_SECONDS, whichever is first.
SOURCE is the local address the connections come from (default 127.0.0.1; another loopback
address such as 127.0.0.2 makes the flood a client of its own). Talks only to 127.0.0.1
and stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import sys
from collections import Counter

LOOPBACK = "127.0.0.1"
HEAD = b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


async def client(
    port: int, source: str, context: ssl.SSLContext, state: Counter[str], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection(
                    LOOPBACK,
                    port,
                    ssl=context,
                    server_hostname=LOOPBACK,
                    local_addr=(source, 0),
                )
        except (OSError, TimeoutError):
            state["connect-failed"] += 1
            await asyncio.sleep(0.1)
            continue
        state["connections"] += 1
        try:
            writer.write(HEAD)
            while not stop.is_set():
                writer.write(b"a")
                state["bytes"] += 1
                try:
                    async with asyncio.timeout(1.0):
                        data = await reader.read(64)
                except TimeoutError:
                    continue
                state["answered" if data else "closed-by-server"] += 1
                break
        except OSError:
            state["closed-by-server"] += 1
        finally:
            writer.transport.abort()


async def main(
    port: int, ca_file: str, clients: int, max_seconds: float, source: str
) -> Counter[str]:
    context = ssl.create_default_context(cafile=ca_file)
    state: Counter[str] = Counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # readable at EOF: the test is done
    loop.call_later(max_seconds, stop.set)
    tasks = [
        asyncio.create_task(client(port, source, context, state, stop)) for _ in range(clients)
    ]
    while state["connections"] < clients and not stop.is_set():
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await stop.wait()
    await asyncio.gather(*tasks)
    return state


if __name__ == "__main__":
    port, ca_file, clients, max_seconds = sys.argv[1:5]
    source = sys.argv[5] if len(sys.argv) > 5 else LOOPBACK
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counters = asyncio.run(main(int(port), ca_file, int(clients), float(max_seconds), source))
    print(json.dumps(dict(counters)), flush=True)
