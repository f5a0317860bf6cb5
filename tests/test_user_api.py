"""The user JSON API against a real gateway on loopback and a real SQLite file: the whole 2FA
flow over JSON, CSRF and cross-site refusals, bodies of the wrong shape, one message for wrong
codes with the lockout, and every route in the OpenAPI document with its schemas."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.admin.api import openapi_document
from gateway.sandbox.demo import DEMO_PASSWORD
from gateway.web.api_guard import GENERIC_MESSAGE
from gateway.web.user_routes import ROUTES
from tests.conftest import GatewayFactory, RunningGateway

API = "/_gateway/api"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True)
    return running


async def _sign_in(client: aiohttp.ClientSession, email: str) -> dict[str, Any]:
    response = await client.post(f"{API}/session", json={"email": email, "password": DEMO_PASSWORD})
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await response.json()
    return body


async def _me(client: aiohttp.ClientSession) -> dict[str, Any]:
    response = await client.get(f"{API}/me")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def _csrf(token: str) -> dict[str, str]:
    return {"X-CSRF-Token": token}


async def _enrol(
    client: aiohttp.ClientSession, gateway: RunningGateway, csrf: str
) -> tuple[pyotp.TOTP, dict[str, Any]]:
    started = await client.post(f"{API}/mfa/enrol/totp", headers=_csrf(csrf))
    assert started.status == 201, await started.text()
    setup = await started.json()
    assert setup["uri"].startswith("otpauth://totp/")
    assert setup["qr_svg"].lstrip().startswith(("<svg", "<?xml"))
    totp = pyotp.TOTP(setup["key"].replace(" ", ""))
    assert f"secret={totp.secret}" in setup["uri"]
    confirmed = await client.post(
        f"{API}/mfa/enrol/totp/confirm",
        json={"code": totp.at(gateway.clock())},
        headers=_csrf(csrf),
    )
    assert confirmed.status == 200, await confirmed.text()
    assert (await confirmed.json())["next_step"] == f"{API}/mfa/enrol/finish"
    finished = await client.post(f"{API}/mfa/enrol/finish", headers=_csrf(csrf))
    assert finished.status == 201, await finished.text()
    assert finished.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await finished.json()
    return totp, body


async def test_the_whole_flow_over_json(gateway: RunningGateway) -> None:
    clock = gateway.clock
    async with gateway.client() as client:
        signed_in = await _sign_in(client, "max@harbour.example")
        assert signed_in["next"] == "enrolment"
        assert signed_in["mfa_verified"] is False
        first_cookie = client.cookie_jar.filter_cookies(gateway.url)["gw-session"].value
        me = await _me(client)
        assert me["user"]["email"] == "max@harbour.example"
        assert me["organisation"]["name"]
        assert me["role"]
        assert me["mfa"]["enrolled"] is False
        assert "totp" in me["mfa"]["allowed_methods"]
        assert "deadline" in me["mfa"]
        assert me["csrf_token"] == signed_in["csrf_token"]

        totp, finished = await _enrol(client, gateway, me["csrf_token"])
        codes = finished["recovery_codes"]
        assert len(codes) == 10
        assert len(set(codes)) == 10
        assert finished["mfa_verified"] is True
        assert finished["next"] == "none"
        # The session id was rotated, and with it the CSRF token.
        rotated = client.cookie_jar.filter_cookies(gateway.url)["gw-session"].value
        assert rotated != first_cookie
        assert finished["csrf_token"] != me["csrf_token"]
        # The codes are shown once: finishing again is refused and shows none.
        again = await client.post(f"{API}/mfa/enrol/finish", headers=_csrf(finished["csrf_token"]))
        assert again.status == 409
        assert "recovery_codes" not in await again.json()

        me = await _me(client)
        assert me["mfa"]["verified"] is True
        assert me["mfa"]["method"] == "totp"
        assert me["mfa"]["enrolled"] is True
        assert me["mfa"]["methods"] == ["totp"]
        assert me["next"] == "none"
        assert (await client.get("/api/whoami")).status == 200

        signed_out = await client.delete(f"{API}/session", headers=_csrf(me["csrf_token"]))
        assert signed_out.status == 204
        assert (await client.get(f"{API}/me")).status == 401

        clock.advance(30)
        challenged = await _sign_in(client, "max@harbour.example")
        assert challenged["next"] == "challenge"
        passed = await client.post(
            f"{API}/mfa/challenge",
            json={"method": "totp", "code": totp.at(clock()), "remember_device": True},
            headers=_csrf(challenged["csrf_token"]),
        )
        assert passed.status == 200, await passed.text()
        body = await passed.json()
        assert body["mfa_verified"] is True
        assert body["method"] == "totp"
        assert body["remembered_device_expires_at"]
        device = passed.cookies["gw-mfa-device"]
        assert device["httponly"]
        assert device["samesite"] == "Lax"
        assert int(device["max-age"]) == 23 * 3600
        me = await _me(client)
        assert me["mfa"]["verified"] is True
        assert me["mfa"]["remembered_device_expires_at"] == body["remembered_device_expires_at"]

        # Signed out and in again on this device: no code asked for.
        await client.delete(f"{API}/session", headers=_csrf(me["csrf_token"]))
        remembered = await _sign_in(client, "max@harbour.example")
        assert remembered["next"] == "none"
        assert remembered["mfa_verified"] is True
        assert (await _me(client))["mfa"]["method"] == "device"

    # Elsewhere, a recovery code works once.
    async with gateway.client() as other:
        state = await _sign_in(other, "max@harbour.example")
        assert state["next"] == "challenge"
        recovered = await other.post(
            f"{API}/mfa/challenge",
            json={"method": "recovery", "code": codes[0]},
            headers=_csrf(state["csrf_token"]),
        )
        assert recovered.status == 200, await recovered.text()
        assert (await recovered.json())["recovery_codes_left"] == 9
        assert "gw-mfa-device" not in recovered.cookies
    async with gateway.client() as third:
        state = await _sign_in(third, "max@harbour.example")
        reused = await third.post(
            f"{API}/mfa/challenge",
            json={"method": "recovery", "code": codes[0]},
            headers=_csrf(state["csrf_token"]),
        )
        assert reused.status == 400
        assert (await reused.json())["detail"] == GENERIC_MESSAGE
    kinds = [e.kind for e in await gateway.services.store.audit.list()]
    for kind in ("login.succeeded", "mfa.enrolled", "mfa.passed", "mfa.device_remembered"):
        assert kind in kinds, kind
    assert "mfa.recovery_code_used" in kinds


async def test_state_changes_need_the_sessions_csrf_token(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        state = await _sign_in(client, "max@harbour.example")
        for headers in ({}, _csrf("x" * 43), _csrf(state["csrf_token"] + "x")):
            for path in ("mfa/enrol/totp", "mfa/enrol/finish"):
                refused = await client.post(f"{API}/{path}", headers=headers)
                assert refused.status == 403
                assert refused.content_type == "application/problem+json"
                assert (await refused.json())["type"].endswith("/csrf-failed")
            out = await client.delete(f"{API}/session", headers=headers)
            assert out.status == 403
        user = await gateway.services.store.users.find_by_email("max@harbour.example")
        assert user is not None
        assert await gateway.services.store.factors.pending(user.id) is None
        # Another session's token does not count either.
        async with gateway.client() as other:
            foreign = (await _sign_in(other, "ava@harbour.example"))["csrf_token"]
        refused = await client.post(f"{API}/mfa/enrol/totp", headers=_csrf(foreign))
        assert refused.status == 403
        assert (await client.get(f"{API}/me")).status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_cross_site_calls_are_refused(
    gateway: RunningGateway, headers: dict[str, str]
) -> None:
    async with gateway.client() as client:
        body = {"email": "max@harbour.example", "password": DEMO_PASSWORD}
        refused = await client.post(f"{API}/session", json=body, headers=headers)
        assert refused.status == 403
        assert (await refused.json())["type"].endswith("/cross-site")
        assert "gw-session" not in refused.cookies
        state = await _sign_in(client, "max@harbour.example")
        token = _csrf(state["csrf_token"])
        refused = await client.post(f"{API}/mfa/enrol/totp", headers={**token, **headers})
        assert refused.status == 403
        refused = await client.delete(f"{API}/session", headers={**token, **headers})
        assert refused.status == 403
        assert (await client.get(f"{API}/me")).status == 200


async def test_the_gateways_own_origin_is_accepted(gateway: RunningGateway) -> None:
    own = f"http://{gateway.url.host}:{gateway.url.port}"
    async with gateway.client() as client:
        body = {"email": "max@harbour.example", "password": DEMO_PASSWORD}
        headers = {"Origin": own, "Sec-Fetch-Site": "same-origin"}
        signed_in = await client.post(f"{API}/session", json=body, headers=headers)
        assert signed_in.status == 200


async def test_sign_in_takes_only_json(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        body = {"email": "max@harbour.example", "password": DEMO_PASSWORD}
        as_form = await client.post(f"{API}/session", data=body)
        assert as_form.status == 415
        as_text = await client.post(
            f"{API}/session", data='{"email": "a", "password": "b"}', headers={}
        )
        assert as_text.status == 415


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("session", {}, ["email: missing (it is required)", "password: missing (it is required)"]),
        ("session", {"email": 1, "password": True, "extra": 1}, ["email", "password", "extra"]),
        ("session", {"email": "a@b.example", "password": "x" * 2000}, ["password"]),
        ("mfa/enrol/totp/confirm", {"code": 123456}, ["code: must be a string"]),
        ("mfa/challenge", {"code": "1"}, ["method: missing (it is required)"]),
        (
            "mfa/challenge",
            {"method": "email", "code": "1", "remember_device": "yes"},
            ["method", "remember_device: must be true or false"],
        ),
        ("mfa/enrol/sms", {}, ["phone: missing (it is required)"]),
        ("mfa/enrol/sms", {"phone": 412345678, "extra": 1}, ["phone", "extra"]),
        ("mfa/enrol/sms", {"phone": "0" * 65}, ["phone"]),
        ("mfa/enrol/sms/confirm", {"code": ["1"]}, ["code: must be a string"]),
        (
            "mfa/challenge/send",
            {"method": "sms", "again": "please"},
            ["again: must be true or false"],
        ),
    ],
)
async def test_bodies_of_the_wrong_shape_get_422_listing_every_problem(
    gateway: RunningGateway, path: str, body: dict[str, Any], expected: list[str]
) -> None:
    async with gateway.client() as client:
        state = await _sign_in(client, "max@harbour.example")
        response = await client.post(f"{API}/{path}", json=body, headers=_csrf(state["csrf_token"]))
        assert response.status == 422, await response.text()
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        assert len(problem["errors"]) == len(expected)
        for line, start in zip(problem["errors"], expected, strict=True):
            assert line.startswith(start), (line, start)


@pytest.mark.parametrize("raw", [b"", b"[]", b"{", b'{"email": "a", "email": "b"}', b"\xff"])
async def test_bodies_that_are_no_json_object_get_400(gateway: RunningGateway, raw: bytes) -> None:
    async with gateway.client() as client:
        response = await client.post(
            f"{API}/session", data=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        assert (await response.json())["type"].endswith("/invalid-json")


async def test_wrong_sign_in_is_generic_and_throttled(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        answers = []
        for email in ("max@harbour.example", "nobody@harbour.example"):
            wrong = await client.post(
                f"{API}/session", json={"email": email, "password": "wrong password"}
            )
            assert wrong.status == 401
            answers.append((await wrong.json())["detail"])
        assert answers[0] == answers[1]
        statuses = []
        for _ in range(30):
            wrong = await client.post(
                f"{API}/session", json={"email": "max@harbour.example", "password": "nope"}
            )
            statuses.append(wrong.status)
            if wrong.status == 429:
                assert int(wrong.headers["Retry-After"]) > 0
                break
        assert statuses[-1] == 429


async def test_wrong_codes_get_one_message_and_lock_after_the_policys_max(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        state = await _sign_in(client, "max@harbour.example")
        totp, finished = await _enrol(client, gateway, state["csrf_token"])
        token = finished["csrf_token"]
        await client.delete(f"{API}/session", headers=_csrf(token))
        gateway.clock.advance(30)
        state = await _sign_in(client, "max@harbour.example")
        token = state["csrf_token"]
        details = set()
        for code in ("000000", "abc", "", "9" * 64, finished["recovery_codes"][0] + "x"):
            method = "recovery" if code.endswith("x") else "totp"
            wrong = await client.post(
                f"{API}/mfa/challenge", json={"method": method, "code": code}, headers=_csrf(token)
            )
            assert wrong.status == 400
            details.add((await wrong.json())["detail"])
        # Five failures (the policy's max_failed): even the right code is refused now.
        locked = await client.post(
            f"{API}/mfa/challenge",
            json={"method": "totp", "code": totp.at(gateway.clock())},
            headers=_csrf(token),
        )
        assert locked.status == 400
        details.add((await locked.json())["detail"])
        assert details == {GENERIC_MESSAGE}
        kinds = [e.kind for e in await gateway.services.store.audit.list()]
        assert "mfa.locked" in kinds
        assert kinds.count("mfa.failed") >= 5
        # After the lockout the right code works.
        gateway.clock.advance(15 * 60)
        passed = await client.post(
            f"{API}/mfa/challenge",
            json={"method": "totp", "code": totp.at(gateway.clock())},
            headers=_csrf(token),
        )
        assert passed.status == 200, await passed.text()


async def test_steps_out_of_order_say_so(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        state = await _sign_in(client, "max@harbour.example")
        token = _csrf(state["csrf_token"])
        confirm = await client.post(
            f"{API}/mfa/enrol/totp/confirm", json={"code": "123456"}, headers=token
        )
        assert confirm.status == 409
        assert (await confirm.json())["type"].endswith("/step-missing")
        finish = await client.post(f"{API}/mfa/enrol/finish", headers=token)
        assert finish.status == 409
        await client.post(f"{API}/mfa/enrol/totp", headers=token)
        finish = await client.post(f"{API}/mfa/enrol/finish", headers=token)
        assert finish.status == 409
        challenge = await client.post(
            f"{API}/mfa/challenge", json={"method": "totp", "code": "123456"}, headers=token
        )
        assert challenge.status == 409
        assert (await challenge.json())["type"].endswith("/enrolment-required")
        gateway.clock.advance(600)
        late = await client.post(
            f"{API}/mfa/enrol/totp/confirm", json={"code": "123456"}, headers=token
        )
        assert late.status == 409
        problem = await late.json()
        assert problem["type"].endswith("/step-expired")
        # Said for an app over JSON: nothing is "below", and the step is begun again by a call.
        assert problem["detail"].endswith(f"Start setting up again: POST {API}/mfa/enrol/totp.")
        assert "Scan" not in problem["detail"]


async def test_calls_without_a_session_get_401(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        assert (await client.get(f"{API}/me")).status == 401
        for path in ("mfa/enrol/totp", "mfa/enrol/finish"):
            assert (await client.post(f"{API}/{path}")).status == 401
        for path in ("mfa/enrol/sms", "mfa/enrol/sms/confirm", "mfa/challenge/send"):
            assert (await client.post(f"{API}/{path}", json={})).status == 401
        # Signing out without a session is no error.
        assert (await client.delete(f"{API}/session")).status == 204


def test_every_route_is_in_the_openapi_document_with_its_schemas() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    for route in ROUTES:
        operation = route.operation
        described = document["paths"][operation.path][operation.method.lower()]
        assert described["tags"] == ["user"]
        if operation.body is not None:
            ref = described["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[-1] in schemas
            assert {"400", "415", "422"} <= described["responses"].keys()
        if operation.method != "GET":
            assert {"401", "403"} <= described["responses"].keys()
        ok = [s for s in described["responses"] if s.startswith("2")]
        assert ok, operation.path
    paths = {(r.operation.method, r.operation.path) for r in ROUTES}
    assert paths == {
        ("POST", f"{API}/session"),
        ("DELETE", f"{API}/session"),
        ("GET", f"{API}/me"),
        ("POST", f"{API}/mfa/enrol/totp"),
        ("POST", f"{API}/mfa/enrol/totp/confirm"),
        ("POST", f"{API}/mfa/enrol/backup"),
        ("POST", f"{API}/mfa/enrol/backup/confirm"),
        ("POST", f"{API}/mfa/enrol/sms"),
        ("POST", f"{API}/mfa/enrol/sms/confirm"),
        ("POST", f"{API}/mfa/enrol/finish"),
        ("POST", f"{API}/mfa/challenge/send"),
        ("POST", f"{API}/mfa/challenge"),
        ("GET", f"{API}/team"),
        ("POST", f"{API}/team/{{user_id}}/reset-mfa"),
        ("GET", f"{API}/mfa/devices"),
        ("DELETE", f"{API}/mfa/devices"),
        ("DELETE", f"{API}/mfa/devices/{{device_id}}"),
        ("POST", f"{API}/mfa/recovery-codes"),
        ("GET", f"{API}/mfa/sign-ins"),
        ("POST", f"{API}/mfa/primary/totp"),
        ("POST", f"{API}/mfa/primary/totp/confirm"),
        ("POST", f"{API}/mfa/primary/sms"),
        ("POST", f"{API}/mfa/primary/sms/confirm"),
        ("POST", f"{API}/mfa/backup"),
        ("POST", f"{API}/mfa/backup/confirm"),
    }
    me = schemas["Me"]
    assert {"user", "organisation", "role", "mfa", "csrf_token"} <= set(me["required"])
    challenge = schemas["ChallengeBody"]
    assert challenge["properties"]["method"]["enum"] == ["totp", "sms", "backup", "recovery"]


@pytest.mark.skipif(
    importlib.util.find_spec("openapi_spec_validator") is None,
    reason="openapi-spec-validator is not installed",
)
def test_the_document_with_the_user_api_still_validates() -> None:
    validator = importlib.import_module("openapi_spec_validator")
    validator.validate(openapi_document())


_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
_FIELDS = ("email", "password", "code", "method", "remember_device", "kind", "destination")
# Objects with the fields the API knows (and some it does not), of any JSON type: what a
# schema-driven fuzzer sends when it goes negative; and bodies that are not JSON at all.
_BODIES = (
    st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=12), _JSON, max_size=6).map(
        lambda body: json.dumps(body).encode()
    )
    | _JSON.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=64)
)
_BODY_PATHS = [r.operation.path for r in ROUTES if r.body]


def _post(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 (a loopback http URL)
        base + path,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type()


async def test_no_body_of_any_shape_gets_a_500(gateway: RunningGateway) -> None:
    """Schemathesis-style negative checks: any JSON (or none) to every route with a body is
    answered with a 4xx problem (or a success), never a 5xx."""
    async with gateway.client() as client:
        state = await _sign_in(client, "nia@kauri.example")
        cookie = client.cookie_jar.filter_cookies(gateway.url)["gw-session"].value
    headers = {"Cookie": f"gw-session={cookie}", "X-CSRF-Token": state["csrf_token"]}
    base = str(gateway.url).rstrip("/")
    seen: set[int] = set()

    @settings(max_examples=150, deadline=None, database=None)
    @given(path=st.sampled_from(_BODY_PATHS), body=_BODIES)
    def check(path: str, body: bytes) -> None:
        # Signing in would end the session the other calls use: it goes without the cookie.
        sent = {} if path.endswith("/session") else headers
        status, kind = _post(base, path, body, sent)
        seen.add(status)
        assert status < 500, (path, body)
        if status >= 400:
            assert kind == "application/problem+json", (path, body, status)

    await asyncio.to_thread(check)
    assert {400, 422} <= seen
