"""The console's policy pages over real HTTP: a real gateway on loopback, a real SQLite file,
admins signed in with password and TOTP on the injected clock."""

from __future__ import annotations

import html
import re
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.admin.policy_pages import MAX_TEXT
from gateway.admin.policy_text import check_text, numbered
from gateway.enforcement.policy_files import load_policy_file
from gateway.mfa.totp import code_at
from gateway.policy import parse_policy_text, policy_to_document
from gateway.policy.writer import write_toml
from gateway.signin.admins import disable_admin
from tests.conftest import CSRF_FIELD, SHIPPED_POLICY, START, GatewayFactory, RunningGateway
from tests.conftest import sign_in as user_sign_in
from tests.test_admin_console import EMAIL, add, admin_sign_in
from tests.test_admin_support import API, AU_MEMBER, AU_POLICY, HTML, bearer, mint

PAGES = "/_gateway/admin/policies"
AU = f"{PAGES}/{AU_POLICY}"
SHIPPED_DEADLINE = "deadline = 2026-12-31T23:59:59.999999+11:00"
PAST_DEADLINE = "deadline = 2026-12-20"  # before START (23 December 2026)


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True)
    return running


async def signed_in(
    gateway: RunningGateway, http: aiohttp.ClientSession, email: str = EMAIL
) -> None:
    seed = await add(gateway, email)
    done = await admin_sign_in(http, code_at(seed, gateway.clock()), email=email)
    assert done.status == 303


async def editor(http: aiohttp.ClientSession, path: str = f"{AU}/edit") -> dict[str, str]:
    """The editor's form as the page gives it: csrf, version and the TOML text."""
    response = await http.get(path)
    assert response.status == 200
    page = await response.text()
    csrf = CSRF_FIELD.search(page)
    version = re.search(r'name="version" value="([^"]*)"', page)
    text = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.DOTALL)
    assert csrf
    assert version
    assert text
    # As a browser reads it: the one newline right after <textarea> is not part of the text.
    toml = html.unescape(text[1]).removeprefix("\n")
    return {"csrf": csrf[1], "version": version[1], "toml": toml}


async def edited(http: aiohttp.ClientSession, old: str, new: str) -> dict[str, str]:
    """The editor's form with ``old`` replaced by ``new`` in its text, as an admin types."""
    form = await editor(http)
    assert old in form["toml"]
    return {**form, "toml": form["toml"].replace(old, new)}


def line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def notes_on(page: str, number: int) -> str:
    """The text of the listing's row for line ``number``."""
    match = re.search(rf'<tr id="line-{number}".*?</tr>', page, re.DOTALL)
    assert match, f"no line {number} in the listing"
    return html.unescape(match[0])


async def policy_events(gateway: RunningGateway) -> list[Any]:
    events = await gateway.services.store.audit.list()
    return [e for e in events if e.kind.startswith("policy.") and e.actor != "demo"]


async def version(gateway: RunningGateway) -> int:
    return (await gateway.services.store.policies.get(AU_POLICY)).version


def test_the_written_toml_reads_back_as_the_same_policy() -> None:
    policy = load_policy_file(SHIPPED_POLICY)
    document = policy_to_document(policy)
    document["description"] = 'Quotes " and \\ and a tab\t, a newline\n and \x7f: all kept.'
    document["prompt"] = {"max_dismissals": 3}
    again = parse_policy_text(write_toml(document), "written")
    assert policy_to_document(again) == document


def test_problems_and_warnings_land_on_the_lines_they_name() -> None:
    text = write_toml(policy_to_document(load_policy_file(SHIPPED_POLICY)))
    text = text.replace(SHIPPED_DEADLINE, PAST_DEADLINE).replace('"23h"', '"30d"')
    checked = check_text(text, AU_POLICY, START)
    assert checked.policy is not None
    lines = {n.line: n.message for n in checked.notes}
    assert "has passed" in lines[line_of(text, "deadline =")]
    assert "under 24 hours" in lines[line_of(text, "remember_device =")]
    broken = text.replace("max_failed = 5", "max_failed = ")
    checked = check_text(broken, AU_POLICY, START)
    assert checked.policy is None
    (error,) = checked.errors
    assert error.line == line_of(broken, "max_failed =")
    assert "not valid TOML" in error.message
    listed = numbered(broken, checked.notes)
    assert [line.number for line in listed if line.notes] == [error.line]
    other = check_text(text.replace(f'id = "{AU_POLICY}"', 'id = "other"'), AU_POLICY, START)
    assert [(n.line, n.severity) for n in other.notes] == [(line_of(text, "id ="), "error")]


async def test_the_list_and_one_policy_show_what_it_decides(gateway: RunningGateway) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        home = await (await http.get("/_gateway/admin/")).text()
        assert f'href="{PAGES}"' in home
        listing = await http.get(PAGES)
        text = html.unescape(await listing.text())
        assert listing.status == 200
        assert listing.headers["Cache-Control"] == "no-store"
        row = re.search(rf'<tr data-policy="{AU_POLICY}">.*?</tr>', text, re.DOTALL)
        assert row
        assert ">AU<" in row[0]
        assert "2026-12-31T23:59:59.999999+11:00" in row[0]
        assert "sms, totp" in row[0]
        view = await http.get(AU)
        page = html.unescape(await view.text())
    assert view.status == 200
    assert "What it decides" in page
    assert "the role member or principal in organisations with an active Xero connection" in page
    assert "(9 days left)" in page
    assert SHIPPED_DEADLINE in page
    assert f'action="{AU}/disable"' in page
    assert CSRF_FIELD.search(page)


async def test_preview_shows_warnings_on_their_lines_and_the_diff_and_saves_nothing(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        form = await editor(http)
        assert form["version"] == "1"
        assert SHIPPED_DEADLINE in form["toml"]
        form["toml"] = form["toml"].replace(SHIPPED_DEADLINE, PAST_DEADLINE)
        preview = await http.post(f"{AU}/edit", data={**form, "action": "preview"})
        page = await preview.text()
    assert preview.status == 200
    assert "has passed" in notes_on(page, line_of(form["toml"], "deadline ="))
    change = re.search(r'<tr data-path="schedule.deadline".*?</tr>', page, re.DOTALL)
    assert change
    assert "2026-12-31T23:59:59.999999+11:00" in change[0]
    assert "2026-12-20T23:59:59.999999+11:00" in change[0]
    assert PAST_DEADLINE in html.unescape(page)  # the text stays as typed
    assert await version(gateway) == 1
    assert await policy_events(gateway) == []


async def test_a_save_is_audited_and_blocks_a_prompted_user_on_their_next_request(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as user, gateway.client() as http:
        await user_sign_in(user, email=AU_MEMBER)
        prompted = await user.get("/", headers=HTML, allow_redirects=False)
        assert URL(prompted.headers["Location"]).path == "/_gateway/mfa/prompt"
        await signed_in(gateway, http)
        form = await edited(http, SHIPPED_DEADLINE, PAST_DEADLINE)
        saved = await http.post(
            f"{AU}/edit", data={**form, "action": "save"}, allow_redirects=False
        )
        assert saved.status == 303
        assert saved.headers["Location"] == f"{AU}?done=saved"
        shown = await (await http.get(saved.headers["Location"])).text()
        assert "Saved." in shown
        assert "has passed" in shown  # the policy's lint warnings, as it now stands
        blocked = await user.get("/", headers=HTML, allow_redirects=False)
    assert URL(blocked.headers["Location"]).path == "/_gateway/mfa/blocked"
    stored = await gateway.services.store.policies.get(AU_POLICY)
    assert stored.version == 2
    assert stored.document["schedule"]["deadline"] == "2026-12-20T23:59:59.999999+11:00"
    assert EMAIL in stored.updated_by
    (event,) = await policy_events(gateway)
    assert event.kind == "policy.replaced"
    assert EMAIL in (event.actor or "")


async def test_the_text_comes_back_as_typed_blank_first_line_included(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        form = await editor(http)
        typed = "\n\n" + form["toml"].replace(SHIPPED_DEADLINE, PAST_DEADLINE)
        preview = await http.post(f"{AU}/edit", data={**form, "toml": typed, "action": "x"})
        page = await preview.text()
    text = re.search(r"<textarea[^>]*>\n(.*?)</textarea>", page, re.DOTALL)
    assert text
    assert html.unescape(text[1]) == typed
    assert "has passed" in notes_on(page, line_of(typed, "deadline ="))


async def test_a_syntax_error_shows_its_line_and_nothing_is_saved(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        form = await edited(http, SHIPPED_DEADLINE, "deadline = 2026-12-")
        for action in ("preview", "save"):
            answer = await http.post(f"{AU}/edit", data={**form, "action": action})
            page = await answer.text()
            assert answer.status == 422
            assert "nothing was saved" in page
            assert "not valid TOML" in notes_on(page, line_of(form["toml"], "deadline ="))
        form["toml"] = form["toml"].replace("deadline = 2026-12-", PAST_DEADLINE)
        form["toml"] = form["toml"].replace('"23h"', '"ever"')
        answer = await http.post(f"{AU}/edit", data={**form, "action": "save"})
        page = await answer.text()
    assert answer.status == 422
    on_its_line = notes_on(page, line_of(form["toml"], "remember_device ="))
    assert "windows.remember_device: use a number and a unit" in on_its_line
    assert await version(gateway) == 1
    assert await policy_events(gateway) == []


async def test_a_stale_version_is_told_with_the_diff_and_nothing_is_overwritten(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as first, gateway.client() as second:
        await signed_in(gateway, first)
        await signed_in(gateway, second, "rhea@gw.example")
        mine, theirs = await editor(first), await editor(second)
        mine["toml"] = mine["toml"].replace('"23h"', '"12h"')
        done = await first.post(
            f"{AU}/edit", data={**mine, "action": "save"}, allow_redirects=False
        )
        assert done.status == 303
        theirs["toml"] = theirs["toml"].replace(SHIPPED_DEADLINE, PAST_DEADLINE)
        for action in ("save", "preview"):
            told = await second.post(f"{AU}/edit", data={**theirs, "action": action})
            page = html.unescape(await told.text())
            assert told.status == 409
            assert "changed since you opened it, by" in page
            assert EMAIL in page
            assert "now version 2" in page
            assert '<tr data-path="windows.remember_device"' in page
            assert PAST_DEADLINE in page  # their text, kept to copy from
            assert 'name="version" value="1"' in page  # still the version they started from
    stored = await gateway.services.store.policies.get(AU_POLICY)
    assert stored.version == 2
    assert stored.document["windows"]["remember_device"] == "12h"
    assert stored.document["schedule"]["deadline"] == "2026-12-31T23:59:59.999999+11:00"
    assert len(await policy_events(gateway)) == 1


async def test_enable_and_disable_name_the_version_seen(gateway: RunningGateway) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        page = await (await http.get(AU)).text()
        csrf = CSRF_FIELD.search(page)
        assert csrf
        off = await http.post(
            f"{AU}/disable", data={"csrf": csrf[1], "version": "1"}, allow_redirects=False
        )
        assert off.headers["Location"] == f"{AU}?done=disabled"
        stale = await http.post(f"{AU}/enable", data={"csrf": csrf[1], "version": "1"})
        assert stale.status == 409
        assert "changed since you opened it" in await stale.text()
        garbled = await http.post(f"{AU}/enable", data={"csrf": csrf[1], "version": "two"})
        assert garbled.status == 400
        assert not (await gateway.services.store.policies.get(AU_POLICY)).enabled
        on = await http.post(
            f"{AU}/enable", data={"csrf": csrf[1], "version": "2"}, allow_redirects=False
        )
        assert on.headers["Location"] == f"{AU}?done=enabled"
    assert [e.kind for e in await policy_events(gateway)] == ["policy.disabled", "policy.enabled"]


async def test_history_any_version_and_the_diff_of_any_two(gateway: RunningGateway) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        form = await edited(http, '"23h"', '"12h"')
        await http.post(f"{AU}/edit", data={**form, "action": "save"})
        csrf = CSRF_FIELD.search(await (await http.get(AU)).text())
        assert csrf
        await http.post(f"{AU}/disable", data={"csrf": csrf[1], "version": "2"})
        history = await (await http.get(f"{AU}/history")).text()
        first = await (await http.get(f"{AU}/versions/1")).text()
        both = await http.get(f"{AU}/diff", params={"from": "1", "to": "3"})
        both_page = await both.text()
        refused = {
            path: (await http.get(path, headers=HTML)).status
            for path in (
                f"{AU}/versions/9",
                f"{AU}/versions/abc",
                f"{AU}/diff?from=x",
                f"{AU}/diff?from=1&to=99",
                f"{PAGES}/no-such-policy",
                f"{PAGES}/no-such-policy/history",
                f"{PAGES}/no-such-policy/edit",
            )
        }
    assert [int(v) for v in re.findall(r'<tr data-version="(\d+)"', history)] == [3, 2, 1]
    assert 'href="/_gateway/admin/policies/au-ato-2fa/diff?from=2&amp;to=3"' in history
    assert 'remember_device = "23h"' in html.unescape(first)
    assert both.status == 200
    assert re.findall(r'<tr data-path="([^"]+)"', both_page) == [
        "enabled",
        "windows.remember_device",
    ]
    assert refused == {
        f"{AU}/versions/9": 404,
        f"{AU}/versions/abc": 404,
        f"{AU}/diff?from=x": 400,
        f"{AU}/diff?from=1&to=99": 404,
        f"{PAGES}/no-such-policy": 404,
        f"{PAGES}/no-such-policy/history": 404,
        f"{PAGES}/no-such-policy/edit": 404,
    }


async def test_forms_without_their_token_or_from_another_site_are_refused(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        form = await edited(http, '"23h"', '"12h"')
        for data in ({**form, "csrf": ""}, {k: v for k, v in form.items() if k != "csrf"}):
            missing = await http.post(f"{AU}/edit", data={**data, "action": "save"})
            assert missing.status == 403
        forged = await http.post(f"{AU}/disable", data={"csrf": "forged", "version": "1"})
        assert forged.status == 403
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
            cross = await http.post(f"{AU}/edit", data={**form, "action": "save"}, headers=headers)
            assert cross.status == 403
    assert await version(gateway) == 1
    assert await policy_events(gateway) == []


async def test_an_app_users_session_opens_no_policy_page(gateway: RunningGateway) -> None:
    async with gateway.client() as http:
        assert (await user_sign_in(http, email="ava@harbour.example")).status == 303
        page = await http.get(PAGES, allow_redirects=False)
        assert page.status == 303
        assert page.headers["Location"] == "/_gateway/admin/"
        user_cookie = http.cookie_jar.filter_cookies(gateway.url)["gw-session"].value
        posted = await http.post(f"{AU}/disable", data={"csrf": "x", "version": "1"}, headers=HTML)
        assert posted.status == 401
        assert "Sign in again" in await posted.text()
    async with aiohttp.ClientSession(
        base_url=gateway.url, cookies={"gw-admin": user_cookie}
    ) as forged:
        assert (await forged.get(AU, allow_redirects=False)).status == 303
    assert await version(gateway) == 1


async def test_a_disabled_admins_session_is_refused_at_once_mid_edit(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        form = await edited(http, '"23h"', '"12h"')
        await disable_admin(gateway.services.store, EMAIL, gateway.clock())
        saved = await http.post(f"{AU}/edit", data={**form, "action": "save"}, headers=HTML)
        assert saved.status == 401
        assert "nothing was changed" in await saved.text()
        assert (await http.get(f"{AU}/edit", allow_redirects=False)).status == 303
    assert await version(gateway) == 1
    assert await policy_events(gateway) == []


async def test_odd_forms_get_clear_answers_and_change_nothing(gateway: RunningGateway) -> None:
    async with gateway.client() as http:
        await signed_in(gateway, http)
        form = await edited(http, '"23h"', '"12h"')
        answers = {}
        for name, data in {
            "no version": {**form, "version": ""},
            "a version to come": {**form, "version": "7"},
            "a huge version": {**form, "version": "9" * 40},
            "no text": {"csrf": form["csrf"], "version": "1"},
            "another action": {**form, "action": "publish"},
        }.items():
            response = await http.post(f"{AU}/edit", data={"action": "save", **data})
            answers[name] = response.status
        too_big = await http.post(
            f"{AU}/edit", data={**form, "toml": "#" * (MAX_TEXT + 1), "action": "save"}
        )
    assert answers == {
        "no version": 400,
        "a version to come": 400,
        "a huge version": 400,
        "no text": 422,
        "another action": 200,  # shown as a preview
    }
    assert too_big.status == 413
    assert await version(gateway) == 1


async def test_the_lint_route_previews_a_document_without_saving(
    gateway: RunningGateway,
) -> None:
    token = await mint(gateway, "policies:read")
    document = policy_to_document(load_policy_file(SHIPPED_POLICY))
    document["schedule"]["deadline"] = "2026-12-20"
    lint = f"{API}/policies/{AU_POLICY}/lint"
    async with gateway.client() as http:
        answer = await http.post(lint, json=document, headers=bearer(token))
        body = await answer.json()
        invalid = await http.post(lint, json={**document, "id": "x"}, headers=bearer(token))
        unknown = await http.post(f"{API}/policies/nope/lint", json=document, headers=bearer(token))
        await signed_in(gateway, http)
        by_session = await http.post(lint, json=document)  # a console session may only read
    assert answer.status == 200
    assert answer.headers["ETag"] == '"1"'
    assert [w["field"] for w in body["warnings"]] == ["schedule.deadline"]
    assert body["changes"] == [
        {
            "path": "schedule.deadline",
            "kind": "changed",
            "before": "2026-12-31T23:59:59.999999+11:00",
            "after": "2026-12-20T23:59:59.999999+11:00",
        }
    ]
    assert invalid.status == 422
    assert any("id" in e for e in (await invalid.json())["errors"])
    assert unknown.status == 404
    assert by_session.status == 401
    assert await version(gateway) == 1
