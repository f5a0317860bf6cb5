"""Flood-test child: the gateway as ``serve`` starts it, in a process of its own so that the
parent can read its memory.

Run as ``python head_flood_child.py WORKDIR MAX_CONNECTIONS MAX_HEAD_SIZE``. Prints the port
it listens on, then serves until its stdin is closed. The app behind it is never reached (the
flood sends heads that never end), so it points at a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from gateway.config import build_config
from gateway.runtime.runner import start_gateway

SECRET = "flood-test-secret-key-that-is-long-enough-0123"


async def main(workdir: Path, max_connections: int, max_head_size: int) -> None:
    config = build_config(
        {
            "server": {
                "host": "127.0.0.1",
                "port": 0,
                "max_connections": max_connections,
                "max_head_size": max_head_size,
            },
            "upstream": {"url": "http://127.0.0.1:9"},
            "store": {"path": str(workdir / "gateway.sqlite3")},
            "security": {"secret_key": SECRET, "cookie_secure": False},
        },
        env={},
    )
    gateway = await start_gateway(config)
    sys.stdout.write(f"{gateway.front.port}\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await gateway.stop()


if __name__ == "__main__":
    # A refused connection is logged as a warning; nobody reads this child's stderr.
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
