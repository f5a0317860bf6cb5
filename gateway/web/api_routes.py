"""How a route of the user JSON API is declared: its handler, the operation the OpenAPI document
describes, the replies every such call may get, and its registration behind the API's checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from aiohttp import web
from pydantic import BaseModel

from gateway.schema.openapi import PROBLEM, Operation, Param, Reply
from gateway.schema.problem import Problem
from gateway.web.api_guard import CSRF_HEADER, ME_PATH, UserHandler, api
from gateway.web.context import add_get, add_route


def problem_reply(description: str) -> Reply:
    return Reply(description=description, model=Problem, media_type=PROBLEM)


CSRF_PARAM = Param(
    name=CSRF_HEADER,
    where="header",
    required=True,
    description=f"The session's CSRF token (csrf_token from GET {ME_PATH}).",
)
UNAUTHENTICATED = problem_reply("Not signed in, or the session is over (unauthenticated).")
REFUSED = problem_reply(
    "Cross-site: Sec-Fetch-Site or Origin is not the gateway's own (cross-site); or the"
    f" {CSRF_HEADER} header is missing or wrong (csrf-failed)."
)
CHANGE_REPLIES: dict[str, Reply | str] = {
    "401": UNAUTHENTICATED,
    "403": REFUSED,
}
BODY_REPLIES: dict[str, Reply | str] = {
    "400": problem_reply("The body is not a JSON object (invalid-json)."),
    "413": problem_reply("The body is over 64 KiB (body-too-large)."),
    "415": problem_reply("The body is not sent as application/json (unsupported-media-type)."),
    "422": problem_reply(
        "The body does not fit its schema (invalid-body); errors lists every one."
    ),
}
STEP_REFUSED = problem_reply(
    "The step is out of order, ran out, or done already (step-missing, step-expired,"
    " already-enrolled); detail says what to do."
)
CODE_REFUSED = problem_reply(
    "The code was not accepted (code-refused): wrong, reused, malformed, or too many failed"
    " attempts. Always the same message."
)
SENT_CODE_REFUSED = problem_reply(
    "The code was not accepted (code-refused): wrong, or too many failed attempts (the same"
    " message), expired or used already (detail says to send a new one), or none was sent."
)
BAD_DESTINATION = problem_reply(
    "Codes cannot be sent there (bad-destination): a malformed, premium-rate or non-mobile"
    " number, the primary phone given as the backup, or a malformed email address; detail"
    " says why. Nothing was sent."
)
SEND_REFUSED: dict[str, Reply | str] = {
    "429": problem_reply(
        "Too many codes sent to this user or number, or by text message in all"
        " (send-limited); detail and Retry-After say when to try again. Nothing was spent."
    ),
    "503": problem_reply(
        "The code could not be sent (send-failed: try again; nothing was spent), or this"
        " gateway cannot send text messages (send-unavailable)."
    ),
}
TAG = "user"


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserRoute:
    handler: UserHandler
    operation: Operation
    changes: bool
    body: bool


def _add_replies(replies: dict[str, Reply | str], shared: dict[str, Reply | str]) -> None:
    """Add the replies every such call may get; where the route describes problems under the
    same status (400 for a refused code and for a malformed body), both descriptions stay."""
    for status, reply in shared.items():
        own = replies.get(status)
        if isinstance(own, Reply) and isinstance(reply, Reply) and own.media_type == PROBLEM:
            replies[status] = problem_reply(f"{own.description} Or: {reply.description}")
        else:
            replies[status] = reply


def user_route(
    handler: UserHandler,
    method: str,
    path: str,
    operation_id: str,
    summary: str,
    replies: dict[str, Reply | str],
    *,
    body: type[BaseModel] | None = None,
    csrf: bool = True,
    description: str | None = None,
    parameters: tuple[Param, ...] = (),
) -> UserRoute:
    changes = method != "GET"
    all_replies = dict(replies)
    if changes:
        _add_replies(all_replies, CHANGE_REPLIES)
    if body is not None:
        _add_replies(all_replies, BODY_REPLIES)
    return UserRoute(
        handler=handler,
        changes=changes,
        body=body is not None,
        operation=Operation(
            method=method,
            path=path,
            operation_id=operation_id,
            summary=summary,
            tag=TAG,
            replies=all_replies,
            parameters=(*parameters, *((CSRF_PARAM,) if changes and csrf else ())),
            body=body,
            description=description,
        ),
    )


def add_user_routes(app: web.Application, routes: Sequence[UserRoute]) -> None:
    """Register ``routes`` behind the API's checks; before the /_gateway/ catch-all."""
    for route in routes:
        handler = api(route.handler, changes=route.changes, body=route.body)
        method, path = route.operation.method, route.operation.path
        if method == "GET":
            add_get(app, path, handler)
        else:
            add_route(app, method, path, handler)
