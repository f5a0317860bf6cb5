"""How a relayed WebSocket's end is passed on: which close codes may be sent, what a received
message means for the relay, and which side is closed first, with what. Pure rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import WSMsgType

Side = Literal["client", "upstream"]
# Who ended the relay: one of the two sockets, or the check that the user may still use it.
Ender = Literal["client", "upstream", "watcher"]

# Gone without a close frame (or closing on our own word): "going away".
GOING_AWAY = (1001, "")
# Why the watcher ends a socket whose user may no longer use it (RFC 6455: policy violation).
SIGNED_OUT = (1008, "sign-in required")

# RFC 6455 §7.4.1: reserved codes that must never be sent in a close frame.
_UNSENDABLE = frozenset({1004, 1005, 1006, 1015})
# A close frame's payload is at most 125 bytes, two of them the code.
_MAX_REASON = 123


@dataclass(frozen=True, kw_only=True)
class Close:
    """Close ``side``'s socket with ``code`` and ``message``."""

    side: Side
    code: int
    message: bytes


def sendable_close(code: int, reason: str) -> tuple[int, bytes]:
    """The close code and reason to send on, for one received: codes that may not be sent
    (reserved, or outside 1000-4999) become 1000, and the reason is cut to fit the frame."""
    if code in _UNSENDABLE or not (1000 <= code < 5000):
        code = 1000
    return code, reason.encode()[:_MAX_REASON]


def close_received(msg_type: WSMsgType, data: Any, extra: Any) -> tuple[int, str] | None:
    """The (code, reason) with which a socket ended, for a message of type ``msg_type``, or
    None when the message ends nothing (pings and pongs, which each side answers itself).

    Only called for what is not data: text and binary messages are relayed, not judged.
    """
    if msg_type is WSMsgType.CLOSE:
        return int(data), str(extra or "")
    if msg_type is WSMsgType.ERROR:
        # aiohttp's WebSocketError carries the close code that fits the fault.
        return int(getattr(data, "code", 1011)), ""
    if msg_type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
        return GOING_AWAY
    return None


def closing_plan(ended_by: Ender, code: int, reason: str) -> tuple[Close, Close]:
    """Both sides' closes, in order, once ``ended_by`` ended the relay with (code, reason).

    A side that closed is answered after the other side has been told, with its own code;
    a user who may no longer use the socket gets ``code`` and the app is told the client
    went away.
    """
    sent_code, message = sendable_close(code, reason)
    if ended_by == "watcher":
        return (
            Close(side="client", code=sent_code, message=message),
            Close(side="upstream", code=1001, message=b"client signed out"),
        )
    first: Side = "upstream" if ended_by == "client" else "client"
    return (
        Close(side=first, code=sent_code, message=message),
        Close(side=ended_by, code=sent_code, message=message),
    )
