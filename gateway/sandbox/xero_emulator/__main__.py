"""``python -m gateway.sandbox.xero_emulator --port N``: the emulator on its own, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import json

from gateway.runtime.runner import wait_for_stop_signal
from gateway.sandbox.xero_emulator.fixtures import DEMO_CLIENT, EmulatedClient
from gateway.sandbox.xero_emulator.server import XeroEmulator


async def _run(host: str, port: int, redirect_uri: str | None) -> None:
    client = DEMO_CLIENT
    if redirect_uri:
        client = EmulatedClient(
            client_id=DEMO_CLIENT.client_id,
            client_secret=DEMO_CLIENT.client_secret,
            redirect_uris=(redirect_uri,),
        )
    async with XeroEmulator(host=host, port=port, clients=(client,)) as xero:
        print(json.dumps({"url": xero.url, "xero": xero.xero_settings(client)}), flush=True)
        await wait_for_stop_signal()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.sandbox.xero_emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--redirect-uri", help="the gateway's callback URL to accept")
    args = parser.parse_args()
    asyncio.run(_run(args.host, args.port, args.redirect_uri))


if __name__ == "__main__":
    main()
