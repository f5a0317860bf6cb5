"""The "next" target after sign-in: only same-origin paths survive, everything else is "/"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.http.redirects import MAX_NEXT_LENGTH, safe_next


@pytest.mark.parametrize(
    "value",
    [
        "//evil",
        "//evil.com/path",
        "///evil",
        "/\\evil",
        "\\\\evil",
        "\\/evil",
        "https:evil",
        "http://evil",
        "https://evil.com",
        "HTTPS://evil.com",
        "/%09/evil",
        "/%0a/evil",
        "/%0d/evil",
        "/%00/evil",
        "%2f%2fevil",
        "/%2f/evil",
        "/%2F%2Fevil",
        "/%5cevil",
        "/\t/evil",
        "/\n/evil",
        "/ /evil",
        "/a%20b",  # whitespace after decoding, as the rule says
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,x",
        "  /x",
        "/x ",
        "",
        None,
        "evil.com",
        "/_gateway/login",
        "/_gateway/login?next=/x",
        "/_gateway",
        "/./_gateway/login",
        "/%5fgateway/login",
        "/x/../_gateway/login",
        "/caf\u00e9",
        '/x"onmouseover=1',
        "/x<script>",
        "/%zz",
        "/" + "a" * MAX_NEXT_LENGTH,
        "/..",
    ],
)
def test_refused_values_give_the_default(value: str | None) -> None:
    assert safe_next(value) == "/"
    assert safe_next(value, default="/home") == "/home"


@pytest.mark.parametrize(
    "value",
    [
        "/",
        "/ok?x=1",
        "/ok?x=1&next=//evil",
        "/a/b/c",
        "/reports#section-2",
        "/_gatewayish",
        "/x?q=%2F%2F",
    ],
)
def test_safe_paths_come_back_unchanged(value: str) -> None:
    assert safe_next(value) == value


@given(st.one_of(st.none(), st.text(max_size=60), st.from_regex(r"\A[/\\%0-9a-fA-F:.?#]{0,20}\Z")))
def test_every_answer_is_a_same_origin_path(value: str | None) -> None:
    out = safe_next(value)
    assert out.startswith("/")
    assert not out.startswith("//")
    assert not out.startswith("/\\")
    assert "\\" not in out


@pytest.mark.parametrize(
    "value",
    [
        "/_gateway/mfa/team",
        "/_gateway/mfa/team?reset=usr_1",
        "/_gateway/mfa/settings",
        "/_gateway/mfa/settings?change=backup",
    ],
)
def test_the_team_and_settings_pages_are_gateway_pages_a_step_up_returns_to(value: str) -> None:
    assert safe_next(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "/_gateway/mfa/teams",
        "/_gateway/mfa/./team",
        "/_gateway/mfa/team/../../login",
        "/_gateway/mfa/%74eam",
        "/_GATEWAY/mfa/team",
        "/_gateway/login?next=/_gateway/mfa/team",
    ],
)
def test_only_the_team_page_spelt_exactly_is_returned_to(value: str) -> None:
    assert safe_next(value) == "/"
