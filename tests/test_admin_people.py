"""The admin console's people and audit pages, and the admin API routes behind them, over real
HTTP against a real gateway and SQLite file: user search and detail, enrolment over time,
audit filters and export, the support reset form; and every bad input refused clearly."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from gateway.audit import MfaReset
from gateway.mfa.totp import code_at
from gateway.signin.admins import disable_admin
from tests.conftest import CSRF_FIELD, GatewayFactory, RunningGateway, sign_in
from tests.test_admin_console import EMAIL, add, admin_sign_in
from tests.test_admin_support import AU_POLICY, bearer, mint, problem
from tests.test_user_api import _enrol, _sign_in

API = "/_gateway/admin/api"
AVA, MAX, NIA = "ava@harbour.example", "max@harbour.example", "nia@kauri.example"
DAY = 24 * 3600


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True)
    return running


async def _user_id(gateway: RunningGateway, email: str) -> str:
    user = await gateway.services.store.users.find_by_email(email)
    assert user is not None
    return user.id


async def _get(gateway: RunningGateway, token: str, path: str, **query: str) -> Any:
    async with gateway.client() as http:
        response = await http.get(f"{API}{path}", params=query, headers=bearer(token))
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        return await response.json()


async def _refused(
    gateway: RunningGateway, path: str, status: int, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async with gateway.client() as http:
        response = await http.get(path, headers=headers)
        assert response.status == status, await response.text()
        return await problem(response)


async def _enrol_user(gateway: RunningGateway, email: str) -> None:
    async with gateway.client() as http:
        csrf = (await _sign_in(http, email))["csrf_token"]
        await _enrol(http, gateway, csrf)


async def _console(gateway: RunningGateway) -> aiohttp.ClientSession:
    """A client signed in to the console as a fresh admin."""
    seed = await add(gateway)
    http = gateway.client()
    assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
    return http


def _csrf_of(page: str) -> str:
    match = CSRF_FIELD.search(page)
    assert match, "no CSRF field on the page"
    return match[1]


async def test_users_are_searched_by_email_or_name_a_bounded_page_at_a_time(
    gateway: RunningGateway,
) -> None:
    token = await mint(gateway, "reports:read")
    found = await _get(gateway, token, "/users", q="HARBOUR")
    assert [u["email"] for u in found["users"]] == [AVA, MAX]
    assert found["users"][0]["org_name"] == "Harbour Accounting (AU)"
    assert found["users"][0]["enrolled"] is False
    assert found["more"] is False
    first = await _get(gateway, token, "/users", limit="1")
    assert len(first["users"]) == 1
    assert first["more"] is True
    assert first["next_offset"] == 1
    rest = await _get(gateway, token, "/users", offset=str(first["next_offset"]), limit="100")
    assert first["users"][0]["id"] not in {u["id"] for u in rest["users"]}
    assert len(rest["users"]) == 3
    # LIKE's wildcards are matched as typed.
    assert (await _get(gateway, token, "/users", q="%"))["users"] == []
    assert (await _get(gateway, token, "/users", q="_"))["users"] == []
    org = (await gateway.services.store.users.find_by_email(NIA)).org_id  # type: ignore[union-attr]
    only = await _get(gateway, token, "/users", org=org)
    assert {u["email"] for u in only["users"]} == {NIA, "leo@kauri.example"}


async def test_organisations_are_searched_by_name_a_page_at_a_time(
    gateway: RunningGateway,
) -> None:
    token = await mint(gateway, "reports:read")
    found = await _get(gateway, token, "/orgs", q="KAURI")
    assert [o["name"] for o in found["orgs"]] == ["Kauri Design Studio (NZ)"]
    assert found["orgs"][0]["users"] == 2
    assert [t["country_code"] for t in found["orgs"][0]["tenants"]] == ["NZ"]
    first = await _get(gateway, token, "/orgs", limit="1")
    assert (len(first["orgs"]), first["more"], first["next_offset"]) == (1, True, 1)
    rest = await _get(gateway, token, "/orgs", offset="1")
    assert (len(rest["orgs"]), rest["more"]) == (1, False)
    assert rest["orgs"][0]["id"] != first["orgs"][0]["id"]


async def test_one_user_with_tenants_2fa_state_and_last_sign_in(gateway: RunningGateway) -> None:
    token = await mint(gateway, "users:write")
    max_id = await _user_id(gateway, MAX)
    before = await _get(gateway, token, f"/users/{max_id}")
    assert before["mfa"]["enrolled"] is False
    assert before["mfa"]["deadline"] is not None
    assert before["mfa"]["blocked"] is False
    assert before["last_sign_in"] is None
    assert [(t["country_code"], t["source"]) for t in before["tenants"]] == [("AU", "manual")]
    await _enrol_user(gateway, MAX)
    after = await _get(gateway, token, f"/users/{max_id}")
    assert after["mfa"]["enrolled"] is True
    assert after["mfa"]["methods"] == ["totp"]
    assert after["mfa"]["enrolled_at"] is not None
    assert after["last_sign_in"] is not None
    late = await _get(gateway, token, f"/users/{await _user_id(gateway, AVA)}", at="2030-01-01")
    assert late["mfa"]["outcome"] == "enrol"
    assert late["mfa"]["blocked"] is True


async def test_enrolment_over_time_counts_users_in_scope_by_day(gateway: RunningGateway) -> None:
    token = await mint(gateway, "reports:read", ttl=30 * DAY)
    await _enrol_user(gateway, MAX)
    gateway.clock.advance(2 * DAY)
    await _enrol_user(gateway, NIA)  # enrolled, but out of the AU policy's scope
    series = await _get(gateway, token, "/reports/enrolment", policy=AU_POLICY, days="3")
    assert series["policy_id"] == AU_POLICY
    assert series["in_scope"] == 2
    assert [d["enrolled"] for d in series["days"]] == [1, 1, 1]
    assert len({d["date"] for d in series["days"]}) == 3
    # Reset and set up again: counted from the new set-up.
    admin = await mint(gateway, "users:write")
    await _support_reset(gateway, admin, MAX, verified_by="Sam, video call", reason="new phone")
    await _enrol_user(gateway, MAX)
    series = await _get(gateway, token, "/reports/enrolment", policy=AU_POLICY, days="3")
    assert [d["enrolled"] for d in series["days"]] == [0, 0, 1]


@pytest.mark.parametrize(
    ("path", "status", "slug"),
    [
        ("/reports/enrolment", 400, "invalid-parameter"),
        ("/reports/enrolment?policy=nope", 404, "policy-not-found"),
        (f"/reports/enrolment?policy={AU_POLICY}&days=0", 400, "invalid-parameter"),
        (
            f"/reports/enrolment?policy={AU_POLICY}&days=9999999999999999999999",
            400,
            "invalid-parameter",
        ),
        (f"/reports/enrolment?policy={AU_POLICY}&at=yesterday", 400, "invalid-parameter"),
        ("/users?limit=0", 400, "invalid-parameter"),
        ("/orgs?limit=101", 400, "invalid-parameter"),
        ("/orgs?q=%00", 400, "invalid-parameter"),
        ("/users?limit=101", 400, "invalid-parameter"),
        ("/users?offset=-1", 400, "invalid-parameter"),
        ("/users?q=" + "x" * 321, 400, "invalid-parameter"),
        ("/users/usr_nobody", 404, "user-not-found"),
        ("/audit?since=soon", 400, "invalid-parameter"),
        ("/audit?since=2026-12-02&until=2026-12-01", 400, "invalid-parameter"),
        ("/audit?actor=" + "a" * 400, 400, "invalid-parameter"),
        ("/audit/export?format=xml", 400, "invalid-parameter"),
        ("/audit/export?limit=0", 400, "invalid-parameter"),
    ],
)
async def test_bad_input_gets_a_problem_never_a_500(
    gateway: RunningGateway, path: str, status: int, slug: str
) -> None:
    token = await mint(gateway)
    body = await _refused(gateway, f"{API}{path}", status, bearer(token))
    assert body["type"].endswith(f"/{slug}")


async def test_a_token_without_the_scope_or_no_token_is_refused(gateway: RunningGateway) -> None:
    policies_only = await mint(gateway, "policies:read")
    for path in ("/users", "/audit/export", "/reports/enrolment?policy=x"):
        assert (await _refused(gateway, f"{API}{path}", 403, bearer(policies_only)))[
            "status"
        ] == 403
        assert (await _refused(gateway, f"{API}{path}", 401))["status"] == 401
    async with gateway.client() as http:  # an app user's session is no admin's
        assert (await sign_in(http)).status == 303
        assert (await http.get(f"{API}/users")).status == 401
        page = await http.get("/_gateway/admin/users", allow_redirects=False)
        assert page.status == 303
        assert page.headers["Location"] == "/_gateway/admin/"


async def _support_reset(gateway: RunningGateway, token: str, email: str, **body: str) -> None:
    async with gateway.client() as http:
        response = await http.post(
            f"{API}/users/{await _user_id(gateway, email)}/reset-mfa",
            json=body,
            headers=bearer(token),
        )
        assert response.status == 200, await response.text()


async def test_the_audit_trail_filters_and_exports_with_formulas_defused(
    gateway: RunningGateway,
) -> None:
    token = await mint(gateway, name="support-desk")
    await _enrol_user(gateway, MAX)
    await _support_reset(
        gateway, token, MAX, verified_by="=cmd|' /C calc'!A0", reason="+lost phone, video call"
    )
    max_id = await _user_id(gateway, MAX)
    by_subject = await _get(gateway, token, "/audit", subject=MAX, kind=MfaReset.kind)
    assert [e["subject"] for e in by_subject["events"]] == [max_id]
    actor = by_subject["events"][0]["actor"]
    assert "support-desk" in actor
    assert (await _get(gateway, token, "/audit", actor=actor))["events"] == by_subject["events"]
    org = by_subject["events"][0]["org_id"]
    assert {e["org_id"] for e in (await _get(gateway, token, "/audit", org=org))["events"]} == {org}
    assert (await _get(gateway, token, "/audit", actor="nobody"))["events"] == []

    async with gateway.client() as http:
        query = urlencode({"subject": MAX, "kind": MfaReset.kind})
        response = await http.get(f"{API}/audit/export?{query}", headers=bearer(token))
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert response.headers["Cache-Control"] == "no-store"
        assert "attachment" in response.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await response.text())))
        assert len(rows) == 1
        detail = json.loads(rows[0]["detail"])
        assert detail["verified_by"] == "=cmd|' /C calc'!A0"  # kept, inside a JSON cell
        assert rows[0]["subject"] == max_id
        for row in rows:
            assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())

        response = await http.get(f"{API}/audit/export?format=jsonl", headers=bearer(token))
        assert response.status == 200
        assert response.content_type == "application/jsonl"
        lines = (await response.text()).splitlines()
        everything = await gateway.services.store.audit.list(limit=10_000)
        assert len(lines) == len(everything)
        assert [json.loads(line)["id"] for line in lines] == [e.id for e in everything]

        assert response.headers["X-Total-Count"] == str(len(everything))

        response = await http.get(f"{API}/audit/export?format=jsonl&limit=2", headers=bearer(token))
        assert len((await response.text()).splitlines()) == 2
        # Cut at its limit: the headers say so before the body starts.
        assert int(response.headers["X-Total-Count"]) > int(response.headers["X-Export-Limit"]) == 2


async def test_the_console_pages_show_the_dashboard_users_explain_and_audit(
    gateway: RunningGateway,
) -> None:
    await _enrol_user(gateway, MAX)
    async with await _console(gateway) as http:
        home = await (await http.get("/_gateway/admin/")).text()
        assert 'id="admin-identity"' in home
        assert '<svg xmlns="http://www.w3.org/2000/svg"' in home
        assert 'data-table="enrolment"' in home
        assert re.search(r'data-field="days_left">\d+<', home)
        for label in ("Dashboard", "Organisations", "Users", "Audit"):
            assert f">{label}</a>" in home

        orgs = await (await http.get("/_gateway/admin/orgs", params={"q": "kauri"})).text()
        assert "Kauri Design Studio (NZ)" in orgs
        assert "Harbour" not in orgs

        users = await (await http.get("/_gateway/admin/users", params={"q": "max@"})).text()
        assert f'data-user="{MAX}"' in users
        assert AVA not in users
        max_id = await _user_id(gateway, MAX)
        page = await http.get(f"/_gateway/admin/users/{max_id}")
        text = await page.text()
        assert page.status == 200
        assert "authenticator app" in text
        assert "support-reset" in text

        explain = await (await http.get(f"/_gateway/admin/users/{max_id}/explain")).text()
        assert f'data-policy="{AU_POLICY}"' in explain
        assert "linked by hand" in explain  # the scope's tenant, as the demo links it

        audit = await (
            await http.get("/_gateway/admin/audit", params={"kind": "admin.signed_in"})
        ).text()
        assert 'data-kind="admin.signed_in"' in audit
        assert 'data-kind="mfa.enrolled"' not in audit
        assert "/_gateway/admin/api/audit/export?kind=admin.signed_in&amp;format=csv" in audit
        # The console's session may read the export it links to.
        export = await http.get(
            "/_gateway/admin/api/audit/export", params={"kind": "admin.signed_in"}
        )
        assert export.status == 200
        assert "admin.signed_in" in await export.text()


async def test_the_console_refuses_bad_input_clearly(gateway: RunningGateway) -> None:
    async with await _console(gateway) as http:
        for path, status in (
            ("/_gateway/admin/users/usr_nobody", 404),
            ("/_gateway/admin/users/usr_nobody/explain", 404),
            ("/_gateway/admin/users?limit=5000", 400),
            ("/_gateway/admin/audit?since=whenever", 400),
            ("/_gateway/admin/audit?before=0", 400),
            ("/_gateway/admin/?days=0", 400),
        ):
            response = await http.get(path, headers={"Accept": "application/json"})
            assert response.status == status, path
            assert (await problem(response))["status"] == status


async def test_the_support_reset_form(gateway: RunningGateway) -> None:
    await _enrol_user(gateway, MAX)
    max_id = await _user_id(gateway, MAX)
    async with await _console(gateway) as http:
        page = await (await http.get(f"/_gateway/admin/users/{max_id}")).text()
        csrf = _csrf_of(page)
        url = f"/_gateway/admin/users/{max_id}/reset"
        form = {"verified_by": "Sam, video call with photo ID", "reason": "lost phone"}

        missing = await http.post(url, data=form, allow_redirects=False)
        assert missing.status == 403
        forged = await http.post(url, data={**form, "csrf": "x" * 43}, allow_redirects=False)
        assert forged.status == 403
        blank = await http.post(
            url, data={**form, "reason": " ", "csrf": csrf}, allow_redirects=False
        )
        assert blank.status == 422
        text = await blank.text()
        assert 'role="alert"' in text
        assert "Sam, video call with photo ID" in text
        nobody = await http.post(
            "/_gateway/admin/users/usr_nobody/reset", data={**form, "csrf": csrf},
            headers={"Accept": "application/json"}, allow_redirects=False,
        )  # fmt: skip
        assert nobody.status == 404
        assert await gateway.services.store.factors.kinds(max_id) != []
        assert await gateway.services.store.audit.list(kind=MfaReset.kind) == []

        done = await http.post(url, data={**form, "csrf": csrf}, allow_redirects=False)
        assert done.status == 303
        assert done.headers["Location"].startswith(f"/_gateway/admin/users/{max_id}?reset=done")
        assert await gateway.services.store.factors.kinds(max_id) == []
        [event] = await gateway.services.store.audit.list(kind=MfaReset.kind)
        assert event.detail["via"] == "support-console"
        assert event.detail["verified_by"] == form["verified_by"]
        assert event.detail["reason"] == form["reason"]
        assert event.actor is not None
        assert EMAIL in event.actor
        shown = await (await http.get(done.headers["Location"])).text()
        assert 'id="reset-done"' in shown

        cross = await http.post(
            url, data={**form, "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"},
            allow_redirects=False,
        )  # fmt: skip
        assert cross.status == 403


async def test_a_disabled_admins_session_is_refused_at_once(gateway: RunningGateway) -> None:
    ava = await _user_id(gateway, AVA)
    async with await _console(gateway) as http:
        page = await (await http.get(f"/_gateway/admin/users/{ava}")).text()
        csrf = _csrf_of(page)
        await disable_admin(gateway.services.store, EMAIL, gateway.clock())
        for path in (
            "/_gateway/admin/users",
            f"/_gateway/admin/users/{ava}",
            "/_gateway/admin/audit",
        ):
            response = await http.get(path, allow_redirects=False)
            assert response.status == 303
            assert response.headers["Location"] == "/_gateway/admin/"
        assert (await http.get(f"{API}/users")).status == 401
        reset = await http.post(
            f"/_gateway/admin/users/{ava}/reset",
            data={"verified_by": "Sam", "reason": "lost phone", "csrf": csrf},
            headers={"Accept": "application/json"}, allow_redirects=False,
        )  # fmt: skip
        assert reset.status == 401
        assert (await problem(reset))["type"].endswith("/admin-signed-out")
    assert await gateway.services.store.audit.list(kind=MfaReset.kind) == []
