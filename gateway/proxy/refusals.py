"""What the proxy refuses before anything reaches the upstream: pure rules over the request
line and its framing headers, one answer each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """The answer to a request that must not be forwarded (a problem document's parts)."""

    status: int
    slug: str
    title: str
    detail: str


# TRACE echoes the request back, identity headers and cookies included, to whoever can make
# the browser send it (cross-site tracing); nginx refuses it too.
_TRACE = frozenset({"TRACE", "TRACK"})
# Absolute-form or asterisk-form targets, and a raw "#" (which the client library would
# silently drop), cannot be forwarded byte for byte.
BAD_TARGET = Refusal(
    status=400,
    slug="bad-request-target",
    title="Bad request target",
    detail="The request target must be a path starting with '/'.",
)
# RFC 9112 §6.1: chunked must be the only (final) coding accepted, and HTTP/1.0 messages
# with Transfer-Encoding have faulty framing. Anything else is how request smuggling
# starts, and the upstream would see a body the gateway never decoded.
BAD_TRANSFER_ENCODING = Refusal(
    status=400,
    slug="bad-transfer-encoding",
    title="Unsupported transfer encoding",
    detail="Only 'Transfer-Encoding: chunked' is accepted, on HTTP/1.1.",
)


def too_large(max_body_size: int) -> Refusal:
    """The answer to a body over ``max_body_size`` bytes, declared or found while streaming."""
    return Refusal(
        status=413,
        slug="body-too-large",
        title="Request body too large",
        detail=f"The request body may be at most {max_body_size} bytes.",
    )


def refuse(
    method: str,
    target: str,
    transfer_encodings: Sequence[str],
    version: tuple[int, int],
    content_length: int | None,
    max_body_size: int,
) -> Refusal | None:
    """Why a request must not reach the upstream at all, or None to forward it.

    ``target`` is the raw request target, ``transfer_encodings`` every Transfer-Encoding
    header value as received (usually none), ``version`` the HTTP version as (major,
    minor), ``content_length`` the declared body length, if any.
    """
    if method in _TRACE:
        return Refusal(
            status=405,
            slug="method-not-allowed",
            title="Method not allowed",
            detail=f"{method} is not passed to the app.",
        )
    if not target.startswith("/") or "#" in target:
        return BAD_TARGET
    if transfer_encodings:
        codings = [t.strip().lower() for v in transfer_encodings for t in v.split(",")]
        if codings != ["chunked"] or version < (1, 1):
            return BAD_TRANSFER_ENCODING
    if content_length is not None and content_length > max_body_size:
        return too_large(max_body_size)
    return None
