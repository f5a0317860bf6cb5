"""The admin API's plumbing: the bearer-token guard, JSON in and out, If-Match, and problems."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from gateway.admin.console import CROSS_SITE, signed_in_admin
from gateway.admin.tokens import ADMIN, actor, allows, authenticate
from gateway.errors import StoreError
from gateway.http.problems import problem_response
from gateway.http.requests import CLIENT_ADDR, OUTCOME, REQUEST_ID
from gateway.schema.bodies import BodyError, validate
from gateway.services import SERVICES, Services
from gateway.store import Admin, AdminSession, AdminToken, AuditEntry
from gateway.web.context import body_deadline

log = logging.getLogger("gateway.admin")

ADMIN_PREFIX = "/_gateway/admin/api"
MAX_QUERY = 320  # free text to search by: at most an email address
DEFAULT_PAGE = 25
MAX_PAGE = 100
MAX_OFFSET = 1_000_000
MAX_BODY = 64 * 1024  # a policy document is about 2 KiB; anything near this is a mistake
REALM = "gateway-admin"
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

_dumps = partial(json.dumps, ensure_ascii=False)
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e]*"'
_IF_MATCH = re.compile(rf"\s*{_ENTITY_TAG}\s*(?:,\s*{_ENTITY_TAG}\s*)*")
_STRONG_VERSION = re.compile(r'(W/)?"([0-9]{1,18})"')
# A "+" in a query string is read as a space; undo that for the offset of a date-time.
_SPACED_OFFSET = re.compile(r"(T[0-9:.]+) ([0-9]{2}(?::?[0-9]{2})?)$")


class ApiProblem(Exception):
    """An RFC 9457 problem to answer with; raised by handlers, rendered by the guard."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self, request: web.BaseRequest) -> web.Response:
        return problem_response(
            request,
            status=self.status,
            slug=self.slug,
            title=self.title,
            detail=self.detail,
            headers=self.headers,
            **self.extra,
        )


def bad_parameter(name: str, detail: str) -> ApiProblem:
    return ApiProblem(400, "invalid-parameter", "Invalid parameter", f"{name}: {detail}")


def unprocessable(slug: str, title: str, noun: str) -> Callable[[list[str]], ApiProblem]:
    """The 422 problem for an invalid ``noun``, listing every problem found in ``errors``."""

    def problem(errors: list[str]) -> ApiProblem:
        detail = f"The {noun} has {len(errors)} problem(s); see errors."
        return ApiProblem(422, slug, title, detail, errors=errors)

    return problem


def not_found(slug: str, detail: str) -> ApiProblem:
    return ApiProblem(404, slug, "Not found", detail)


@dataclass(frozen=True, kw_only=True)
class Call:
    """One authenticated admin request: who made it, the gateway's parts, and one ``now``."""

    request: web.Request
    services: Services
    token: AdminToken
    now: float

    @property
    def actor(self) -> str:
        return actor(self.token)

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def policy_now(self) -> float:
        """The time policies are decided at (the demo's ``--at`` moves it; else ``now``):
        what lint warnings and days left are judged by, as enforcement judges."""
        return self.services.policy_clock()

    @property
    def audit(self) -> AuditEntry:
        """Who is asking, for the audit event the store writes with a change this call makes."""
        return AuditEntry(
            actor=self.actor,
            client_addr=self.request[CLIENT_ADDR],
            detail={"request_id": self.request[REQUEST_ID]},
        )

    async def refresh(self) -> None:
        """Make a committed change count from the next request on.

        A failure here is logged, not returned: the change is stored, and the book's own
        refresher picks it up within seconds, so telling the caller it failed would be false.
        """
        try:
            await self.services.decider.book.refresh()
        except StoreError:
            log.exception("could not refresh policies after an admin change; the refresher will")


AdminHandler = Callable[[Call], Awaitable[web.StreamResponse]]


def _unauthenticated(detail: str, *, invalid: bool) -> ApiProblem:
    challenge = f'Bearer realm="{REALM}"'
    if invalid:
        challenge += ', error="invalid_token"'  # RFC 6750: a token was given but is no good
    return ApiProblem(
        401,
        "admin-unauthenticated",
        "Admin token required",
        detail,
        headers={"WWW-Authenticate": challenge},
    )


def _bearer(request: web.Request) -> str | None:
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return None
    scheme, _, credentials = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


async def _console_reader(request: web.Request) -> AdminToken | None:
    """For a read (GET or HEAD) from the admin console's own pages without a token: the
    signed-in gateway admin, standing in as a token with every scope; None otherwise.

    Reads change nothing, so a forged request could do no harm, and the admin cookie is
    SameSite=Strict and no CORS headers are sent, so no other site can read the answer; a
    request that says it comes from another site is not served this way all the same.
    Anything that changes state still needs a bearer token.
    """
    if request.method not in ("GET", "HEAD") or "Authorization" in request.headers:
        return None
    if request.headers.get("Sec-Fetch-Site", "").strip().lower() in CROSS_SITE:
        return None
    found = await signed_in_admin(request)
    if found is None:
        return None
    return session_token(*found)


def session_token(session: AdminSession, admin: Admin) -> AdminToken:
    """A signed-in gateway admin as a token with every scope: how the console's pages act
    through the same functions as the API, and how the audit trail names them."""
    return AdminToken(
        id=admin.id,
        name=admin.email,
        scopes=frozenset({ADMIN}),
        created_at=session.created_at,
        expires_at=session.expires_at,
        created_by="admin-session",
        revoked_at=None,
        last_used_at=None,
    )


async def _authenticated(request: web.Request, services: Services, now: float) -> AdminToken:
    # The Authorization header counts, and for reads only, a gateway admin's console session
    # (see _console_reader). The app users' session cookie is never read here, so a signed-in
    # app user has no admin powers, and since a browser never attaches this header to a
    # cross-site request on its own (and no CORS headers are sent), CSRF cannot reach the
    # API's changes: no CSRF token is needed.
    console = await _console_reader(request)
    if console is not None:
        return console
    raw = _bearer(request)
    if raw is None:
        raise _unauthenticated("Send an admin token: Authorization: Bearer xgw_…", invalid=False)
    token = await authenticate(services.store, raw, now)
    if token is None:
        log.warning(
            "admin API: unknown, expired or revoked token",
            extra={"request_id": request[REQUEST_ID], "client": request[CLIENT_ADDR]},
        )
        raise _unauthenticated("The admin token is unknown, expired or revoked.", invalid=True)
    return token


def guard(handler: AdminHandler, scopes: Collection[str]) -> Handler:
    """``handler`` behind the admin token check: it runs only for a token with one of ``scopes``."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        now = services.clock()
        try:
            token = await _authenticated(request, services, now)
            if not allows(token, scopes):
                needed = " or ".join(sorted(scopes))
                raise ApiProblem(
                    403,
                    "admin-forbidden",
                    "Not allowed with this token",
                    f"This needs an admin token with scope {needed}.",
                    headers={
                        "WWW-Authenticate": (
                            f'Bearer realm="{REALM}", error="insufficient_scope",'
                            f' scope="{" ".join(sorted(scopes))}"'
                        )
                    },
                )
            response = await handler(Call(request=request, services=services, token=token, now=now))
        except ApiProblem as problem:
            if problem.status in (401, 403):
                request[OUTCOME] = "rejected"
            return problem.response(request)
        response.headers.update(JSON_HEADERS)
        return response

    return guarded


def json_response(
    body: BaseModel,
    *,
    status: int = 200,
    version: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """``body`` as JSON, never cached; ``version`` becomes the ETag (a policy's store version).

    Only the fields the handler gave are written: an optional one it left out stays absent.
    """
    all_headers = {**JSON_HEADERS, **(headers or {})}
    if version is not None:
        all_headers["ETag"] = etag(version)
    data = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return web.json_response(data, status=status, headers=all_headers, dumps=_dumps)


def etag(version: int) -> str:
    return f'"{version}"'


def if_match(request: web.Request) -> frozenset[int]:
    """The versions If-Match names (as strong entity tags); 428 if it is missing or ``*``.

    Weak tags and tags that are not versions are kept out: they can never match (RFC 9110
    compares If-Match strongly), so a write naming only those fails with 412.
    """
    values = request.headers.getall("If-Match", [])
    text = ",".join(values).strip()
    if not text or text == "*":
        # "*" would mean "whatever is there now", which is exactly the lost update to prevent.
        raise ApiProblem(
            428,
            "precondition-required",
            "If-Match required",
            'Send If-Match with the ETag you read, e.g. If-Match: "3", so that a change made '
            "by someone else since is not overwritten.",
        )
    if not _IF_MATCH.fullmatch(text):
        raise bad_parameter("If-Match", 'must be entity tags such as "3"')
    return frozenset(
        int(match[2])
        for match in _STRONG_VERSION.finditer(text)
        if match[1] is None  # weak tags never match strongly
    )


def precondition_failed(policy_id: str, current: int) -> ApiProblem:
    return ApiProblem(
        412,
        "precondition-failed",
        "The policy has changed",
        f"Policy {policy_id!r} is at version {current}, not the one If-Match names; "
        "read it again and reapply your change.",
        current_version=current,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _invalid_json(detail: str) -> ApiProblem:
    return ApiProblem(400, "invalid-json", "Invalid JSON body", detail)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, read up to MAX_BODY bytes; a problem otherwise."""
    if "Content-Type" in request.headers:
        kind = request.content_type
        if kind != "application/json" and not kind.endswith("+json"):
            raise ApiProblem(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                f"Send the body as application/json, not {kind}.",
            )
    too_large = ApiProblem(
        413,
        "body-too-large",
        "Body too large",
        f"The body may be at most {MAX_BODY} bytes.",
    )
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async with body_deadline(request):
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY:
                raise too_large
            chunks.append(chunk)
    try:
        data = json.loads(
            b"".join(chunks).decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError:
        raise _invalid_json("The body is not UTF-8.") from None
    except RecursionError:
        raise _invalid_json("The body is nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError, and our own refusals above
        raise _invalid_json(f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _invalid_json(f"The body must be a JSON object, not {type(data).__name__}.")
    return data


Model = TypeVar("Model", bound=BaseModel)


async def read_body(
    request: web.Request, model: type[Model], invalid: Callable[[list[str]], ApiProblem]
) -> Model:
    """The request body as ``model``; a problem if it is no JSON object, ``invalid(problems)``
    (a 422 listing every problem) if it does not fit the model."""
    data = await read_json_object(request)
    try:
        return validate(model, data)
    except BodyError as exc:
        raise invalid(exc.problems) from None


def instant(value: float) -> str:
    """A stored timestamp as an ISO 8601 date-time in UTC."""
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def instant_param(request: web.Request, name: str, default: float) -> dt.datetime:
    """An ISO date or date-time query parameter as an aware datetime (``default`` if absent)."""
    value = optional_instant_param(request, name)
    return value if value is not None else dt.datetime.fromtimestamp(default, dt.UTC)


def optional_instant_param(request: web.Request, name: str) -> dt.datetime | None:
    """An ISO date or date-time query parameter as an aware datetime, None if absent.

    As on the command line, a plain date means its midnight in UTC and a date-time without an
    offset is read as UTC.
    """
    raw = request.query.get(name)
    if raw is None or not raw.strip():
        return None
    text = _SPACED_OFFSET.sub(r"\1+\2", raw.strip())
    try:
        value = dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        # In UTC from here on; near year 1 or 9999 this overflows, which is a bad parameter too.
        return value.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise bad_parameter(
            name, "must be an ISO date or date-time, e.g. 2027-01-05 or 2026-12-24T09:00:00Z"
        ) from None


def int_param(request: web.Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """A whole-number query parameter within bounds (``default`` if absent); 400 otherwise."""
    raw = request.query.get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    # The length check first: int() of thousands of digits is slow, then refused by Python.
    if not (text.isascii() and text.isdigit() and len(text) <= 18) or not (
        minimum <= int(text) <= maximum
    ):
        raise bad_parameter(name, f"must be a whole number from {minimum} to {maximum}")
    return int(text)


def query_text(request: web.Request, name: str, limit: int = MAX_QUERY) -> str:
    """A free-text query parameter, trimmed ("" if absent); a 400 problem if too long."""
    value = request.query.get(name, "").strip()
    if len(value) > limit or not value.isprintable():
        raise bad_parameter(name, f"must be at most {limit} printable characters")
    return value


def page_params(request: web.Request) -> tuple[int, int]:
    """(limit, offset) of a page of results from the query; a 400 problem if out of bounds."""
    limit = int_param(request, "limit", default=DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    offset = int_param(request, "offset", default=0, minimum=0, maximum=MAX_OFFSET)
    return limit, offset


async def fallback(request: web.Request) -> web.StreamResponse:
    """Unknown admin API paths: 405 with Allow for a known path, 404 otherwise.

    The router's own 405 never happens here, as the gateway's catch-all matches every path.
    """
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        canonical = resource.canonical
        if canonical.startswith(ADMIN_PREFIX + "/") and "{tail" not in canonical:
            match, methods = await resource.resolve(request)
            if match is None:
                allowed |= methods
    if allowed:
        return problem_response(
            request,
            status=405,
            slug="method-not-allowed",
            title="Method not allowed",
            detail=f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}.",
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    return problem_response(
        request,
        status=404,
        slug="not-found",
        title="Not found",
        detail="There is no admin API endpoint at this address; see /_gateway/api/openapi.json.",
    )
