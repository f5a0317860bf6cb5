"""Header filtering both ways, forwarding headers, and finding the real client address."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

import gateway.http.headers as headers_module
from gateway.http.headers import (
    HOP_BY_HOP,
    OTHER_PROXIES_HEADERS,
    IPNetwork,
    claimed_hosts,
    client_address,
    request_cookies,
    request_headers_for_upstream,
    response_headers_for_client,
    simple_cookies,
)

IDENTITY = {"X-Gateway-User-Id": "u-1", "X-Gateway-Role": "admin"}


def upstream(
    headers: Mapping[str, str],
    *,
    trusted: bool = False,
    identity: Mapping[str, str] = IDENTITY,
    real_ip: str | None = None,
) -> CIMultiDict[str]:
    return request_headers_for_upstream(
        headers,
        client_addr="203.0.113.9",
        scheme="https",
        host="gw.example.com",
        trusted_proxy=trusted,
        identity=identity,
        request_id="req-1",
        real_ip=real_ip,
    )


def multi(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_hop_by_hop_set_is_the_documented_one() -> None:
    assert {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
    } == HOP_BY_HOP


def test_hop_by_hop_and_connection_named_headers_are_removed() -> None:
    out = upstream(
        multi(
            ("Connection", "close, X-Foo"),
            ("Connection", "x-bar"),
            ("X-Foo", "1"),
            ("X-Bar", "2"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Connection", "keep-alive"),
            ("Trailer", "X-Sum"),
            ("Expect", "100-continue"),
            ("Host", "gw.example.com"),
            ("X-Kept", "yes"),
        )
    )
    for gone in (
        "Connection",
        "X-Foo",
        "X-Bar",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Connection",
        "Trailer",
        "Expect",
        "Host",
    ):
        assert gone not in out, gone
    assert out["X-Kept"] == "yes"


def test_client_gateway_headers_are_stripped_in_every_spelling() -> None:
    out = upstream(
        multi(
            ("X-Gateway-User-Id", "forged"),
            ("x-gateway-user-id", "forged"),
            ("X_Gateway_User_Id", "forged"),
            ("X-GATEWAY-ROLE", "forged"),
            ("X-Gateway_Role", "forged"),
            ("X-Gateway-Org-Id", "forged"),
        )
    )
    assert out.getall("X-Gateway-User-Id") == ["u-1"]
    assert out.getall("X-Gateway-Role") == ["admin"]
    assert not [k for k in out if k.lower().replace("_", "-") == "x-gateway-org-id"]
    assert not [v for v in out.values() if v == "forged"]


def test_identity_names_outside_the_namespace_are_protected_too() -> None:
    out = upstream(
        multi(("Remote-User", "forged"), ("Remote_User", "forged")),
        identity={"Remote-User": "alice"},
    )
    assert out.getall("Remote-User") == ["alice"]
    assert "Remote_User" not in out


@pytest.mark.parametrize("drop_underscores", [True, False])
@pytest.mark.parametrize(
    "name",
    ["X-Gateway.User.Id", "HTTP_X_GATEWAY_USER_ID", "http-x-gateway-user-id", "x.gateway_role"],
)
def test_names_that_fold_onto_identity_headers_never_pass(
    name: str, drop_underscores: bool
) -> None:
    out = request_headers_for_upstream(
        {name: "forged"},
        client_addr="203.0.113.9",
        scheme="https",
        host="gw",
        trusted_proxy=False,
        identity=IDENTITY,
        request_id="r",
        drop_underscores=drop_underscores,
    )
    assert "forged" not in out.values()


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize(
    "name",
    [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Original-URI",
        "X-HTTP-Method-Override",
        "X-Http-Method",
        "x-method-override",
        "X-Remote-User",
        "Remote-User",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "x-forwarded-preferred-username",
        "X-WEBAUTH-USER",
        "X-Ms-Client-Principal-Name",
        "X-Goog-Authenticated-User-Email",
        "X-Amzn-Oidc-Identity",
        "Cf-Access-Authenticated-User-Email",
        "X-Original.URL",
    ],
)
def test_other_proxies_identity_and_rewrite_headers_never_pass(name: str, trusted: bool) -> None:
    out = upstream({name: "/admin", "X-Custom": "kept"}, trusted=trusted)
    assert "/admin" not in out.values()
    assert out["X-Custom"] == "kept"


def test_names_with_underscores_are_dropped_unless_configured() -> None:
    headers = {"X_Custom_Thing": "1", "X-Custom-Thing": "2"}
    assert list(upstream(headers, identity={}).getall("X-Custom-Thing")) == ["2"]
    assert "X_Custom_Thing" not in upstream(headers, identity={})
    kept = request_headers_for_upstream(
        headers,
        client_addr="",
        scheme="http",
        host="gw",
        trusted_proxy=False,
        identity={},
        request_id="r",
        drop_underscores=False,
    )
    assert kept["X_Custom_Thing"] == "1"


@pytest.mark.parametrize("drop_underscores", [True, False])
def test_framing_headers_are_not_passed_on_as_they_came(drop_underscores: bool) -> None:
    out = request_headers_for_upstream(
        multi(
            ("Transfer_Encoding", "chunked"),
            ("Content.Length", "1"),
            ("HTTP_HOST", "evil.example"),
            ("Content-Length", "007"),
        ),
        client_addr="",
        scheme="http",
        host="gw",
        trusted_proxy=False,
        identity={},
        request_id="r",
        drop_underscores=drop_underscores,
    )
    assert list(out.items()) == [
        ("Content-Length", "7"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "gw"),
        ("X-Request-Id", "r"),
    ]


@pytest.mark.parametrize("bad", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b"])
def test_identity_values_with_line_breaks_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="'X-Gateway-User-Email' has a control character"):
        upstream({}, identity={"X-Gateway-User-Id": "u", "X-Gateway-User-Email": bad})


def test_request_id_replaces_the_clients() -> None:
    out = upstream(multi(("X-Request-Id", "client"), ("X_Request_Id", "client")))
    assert out.getall("X-Request-Id") == ["req-1"]
    assert "X_Request_Id" not in out


def test_multi_valued_headers_keep_every_value_in_order() -> None:
    out = upstream(multi(("Cookie", "a=1"), ("Accept", "text/html"), ("Cookie", "b=2")))
    assert out.getall("Cookie") == ["a=1", "b=2"]
    assert out.getall("Accept") == ["text/html"]


def test_plain_mapping_input_is_accepted() -> None:
    out = upstream({"accept": "*/*", "connection": "x-y", "x-y": "1", "host": "h"})
    assert out["Accept"] == "*/*"
    assert "x-y" not in out
    assert "Host" not in out


UNTRUSTED_CLAIMS = (
    ("X-Forwarded-For", "1.2.3.4"),
    ("X_Forwarded_For", "1.2.3.4"),
    ("X-Forwarded-Proto", "http"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Uri", "/admin"),
    ("X-Forwarded-Port", "1"),
    ("Forwarded", "for=1.2.3.4;host=evil.example"),
    ("X-Real-IP", "1.2.3.4"),
    ("X-Client-IP", "1.2.3.4"),
    ("True-Client-IP", "1.2.3.4"),
)


def test_untrusted_peer_forwarding_claims_are_replaced_by_this_hop() -> None:
    out = upstream(multi(*UNTRUSTED_CLAIMS))
    assert out.getall("X-Forwarded-For") == ["203.0.113.9"]
    assert out.getall("X-Forwarded-Proto") == ["https"]
    assert out.getall("X-Forwarded-Host") == ["gw.example.com"]
    assert out.getall("X-Real-IP") == ["203.0.113.9"]
    for gone in (
        "X_Forwarded_For",
        "X-Forwarded-Uri",
        "X-Forwarded-Port",
        "X-Client-IP",
        "Forwarded",
    ):
        assert gone not in out
    assert "True-Client-IP" not in out
    assert "1.2.3.4" not in " ".join(out.values())


def test_trusted_peer_chain_is_kept_and_extended() -> None:
    out = upstream(
        multi(
            ("X-Forwarded-For", "198.51.100.7, 10.0.0.2"),
            ("X-Forwarded-For", "10.0.0.3"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.example.com"),
            ("Forwarded", 'for="198.51.100.7"'),
            ("X-Real-IP", "6.6.6.6"),
        ),
        trusted=True,
        real_ip="198.51.100.7",
    )
    assert out.getall("X-Forwarded-For") == ["198.51.100.7, 10.0.0.2, 10.0.0.3, 203.0.113.9"]
    assert out.getall("X-Forwarded-Proto") == ["https"]
    assert out.getall("X-Forwarded-Host") == ["app.example.com"]
    assert out.getall("X-Real-IP") == ["198.51.100.7"]
    # One family of forwarding headers: a Forwarded chain, even a trusted one, is not
    # passed on, as the gateway does not extend it.
    assert "Forwarded" not in out
    assert "6.6.6.6" not in " ".join(out.values())


def test_trusted_peer_without_forwarding_headers_gets_this_hops() -> None:
    out = upstream({}, trusted=True)
    assert out["X-Forwarded-For"] == "203.0.113.9"
    assert out["X-Forwarded-Proto"] == "https"
    assert out["X-Forwarded-Host"] == "gw.example.com"


def test_response_headers_drop_hop_by_hop_and_keep_the_rest() -> None:
    out = response_headers_for_client(
        multi(
            ("Connection", "keep-alive, X-Internal"),
            ("X-Internal", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Proxy-Authenticate", "Basic"),
            ("Upgrade", "h2c"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; Path=/"),
            ("Content-Length", "42"),
            ("Content-Encoding", "gzip"),
            ("Content-Type", "text/plain"),
        )
    )
    assert out.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert out["Content-Length"] == "42"
    assert out["Content-Encoding"] == "gzip"
    for gone in (
        "Connection",
        "X-Internal",
        "Keep-Alive",
        "Transfer-Encoding",
        "Proxy-Authenticate",
        "Upgrade",
    ):
        assert gone not in out


NETS: list[IPNetwork] = [
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("127.0.0.1/32"),
    ipaddress.ip_network("fd00::/8"),
]


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", ["1.2.3.4"], ("203.0.113.9", False)),  # untrusted peer: header ignored
        ("10.0.0.1", [], ("10.0.0.1", True)),
        ("10.0.0.1", ["198.51.100.7"], ("198.51.100.7", True)),
        ("10.0.0.1", ["6.6.6.6, 198.51.100.7"], ("198.51.100.7", True)),  # left is a claim
        ("10.0.0.1", ["6.6.6.6, 198.51.100.7, 10.0.0.2"], ("198.51.100.7", True)),
        ("10.0.0.1", ["6.6.6.6, 198.51.100.7", "10.0.0.2"], ("198.51.100.7", True)),
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], ("10.0.0.3", True)),  # all trusted: leftmost
        ("10.0.0.1", ["6.6.6.6, garbage"], ("10.0.0.1", True)),  # bad entry: stop at peer
        ("10.0.0.1", ["6.6.6.6, garbage, 10.0.0.2"], ("10.0.0.2", True)),
        ("10.0.0.1", ["198.51.100.7:4711"], ("198.51.100.7", True)),
        ("10.0.0.1", ["[2001:db8::5]:443"], ("2001:db8::5", True)),
        ("10.0.0.1", ["2001:db8::5"], ("2001:db8::5", True)),
        ("::ffff:10.0.0.1", ["198.51.100.7"], ("198.51.100.7", True)),
        ("::ffff:203.0.113.9", [], ("203.0.113.9", False)),
        ("fd00::1", ["198.51.100.7"], ("198.51.100.7", True)),
        (None, ["1.2.3.4"], ("", False)),
        ("not-an-ip", ["1.2.3.4"], ("not-an-ip", False)),
    ],
)
def test_client_address(peer: str | None, xff: list[str], expected: tuple[str, bool]) -> None:
    headers = multi(*(("X-Forwarded-For", v) for v in xff))
    assert client_address(peer, headers, NETS) == expected


def test_private_cookies_are_taken_out_of_the_request_and_the_rest_kept() -> None:
    out = request_headers_for_upstream(
        CIMultiDict([("Cookie", "gw-session=secret; theme=dark"), ("Cookie", "gw-login=n")]),
        client_addr="127.0.0.1",
        scheme="http",
        host="gw",
        trusted_proxy=False,
        identity={},
        request_id="r",
        private_cookies=frozenset({"gw-session", "gw-login"}),
    )
    assert out.getall("Cookie") == ["theme=dark"]


def test_app_cannot_set_the_gateways_own_cookies() -> None:
    out = response_headers_for_client(
        CIMultiDict([("Set-Cookie", "gw-session=forged; Path=/"), ("Set-Cookie", "app=1; Path=/")]),
        frozenset({"gw-session"}),
    )
    assert out.getall("Set-Cookie") == ["app=1; Path=/"]


# -- the rewrite against a plain reading of the rules --------------------------------------
# A straightforward implementation of request_headers_for_upstream, as it was before the
# hot path classified header names once: the fast one must give exactly the same headers,
# in the same order, for any input.


def _reference_canonical(name: str) -> str:
    folded = name.strip().lower().replace("_", "-").replace(".", "-")
    return folded.removeprefix("http-")


def _reference_connection_tokens(headers: Mapping[str, str]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers.items():
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _reference_without_cookies(value: str, names: frozenset[str]) -> str:
    return "; ".join(
        part.strip()
        for part in value.split(";")
        if part.strip() and part.split("=", 1)[0].strip() not in names
    )


_REFERENCE_FORWARDING = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-original-forwarded-for",
    }
)


def reference_request_headers(
    headers: Mapping[str, str],
    *,
    client_addr: str,
    scheme: str,
    host: str,
    trusted_proxy: bool,
    identity: Mapping[str, str],
    request_id: str,
    real_ip: str | None = None,
    private_cookies: frozenset[str] = frozenset(),
    drop_underscores: bool = True,
) -> CIMultiDict[str]:
    connection_named = _reference_connection_tokens(headers)
    identity_names = {_reference_canonical(n) for n in identity}
    out: CIMultiDict[str] = CIMultiDict()
    incoming_xff: list[str] = []
    kept_forwarding: list[tuple[str, str]] = []
    for name, value in headers.items():
        lower = name.lower()
        canonical = _reference_canonical(name)
        if lower in HOP_BY_HOP or lower in connection_named or lower in ("host", "expect"):
            continue
        if drop_underscores and "_" in name:
            continue
        special = HOP_BY_HOP | {"host", "expect", "content-length", "cookie"}
        if lower != canonical and canonical in special:
            continue
        if canonical.startswith("x-gateway-") or canonical in identity_names:
            continue
        if canonical == "x-request-id" or canonical in OTHER_PROXIES_HEADERS:
            continue
        if lower == "content-length":
            if value.isascii() and value.isdigit():
                out.add(name, str(int(value)))
            continue
        if lower == "cookie" and private_cookies:
            kept = _reference_without_cookies(value, private_cookies)
            if kept:
                out.add(name, kept)
            continue
        if canonical in _REFERENCE_FORWARDING or canonical.startswith("x-forwarded-"):
            if trusted_proxy and lower == canonical and lower != "forwarded":
                if lower == "x-forwarded-for":
                    incoming_xff.append(value)
                else:
                    kept_forwarding.append((name, value))
            continue
        out.add(name, value)
    for name, value in kept_forwarding:
        out.add(name, value)
    chain = [part.strip() for v in incoming_xff for part in v.split(",") if part.strip()]
    if client_addr:
        chain.append(client_addr)
    if chain:
        out["X-Forwarded-For"] = ", ".join(chain)
    if "X-Forwarded-Proto" not in out:
        out["X-Forwarded-Proto"] = scheme
    if "X-Forwarded-Host" not in out and host:
        out["X-Forwarded-Host"] = host
    out.popall("X-Real-IP", None)
    real = real_ip if real_ip is not None else client_addr
    if real:
        out["X-Real-IP"] = real
    out["X-Request-Id"] = request_id
    for name, value in identity.items():
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} has a control character in its value")
        out[name] = value
    return out


_BASE_NAMES = [
    "Accept",
    "Accept-Encoding",
    "Cookie",
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "TE",
    "Upgrade",
    "Host",
    "Expect",
    "X-Request-Id",
    "X-Gateway-User-Id",
    "X-Gateway-Role",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "Forwarded",
    "X-Real-IP",
    "True-Client-IP",
    "X-App-Role",
    "X-Custom",
    "Authorization",
    "Content-Length",
    "X-Original-URL",
    "Remote-User",
    "X-Forwarded-User",
]


@st.composite
def _spelling(draw: st.DrawFn) -> str:
    """One of the interesting header names, in any case, maybe with '_' for '-'."""
    base = draw(st.sampled_from(_BASE_NAMES))
    separator = draw(st.sampled_from(["-"] * 6 + ["_", "."]))
    prefix = draw(st.sampled_from([""] * 6 + ["HTTP_", "http-"]))
    chars = [c.upper() if draw(st.booleans()) else c.lower() for c in base.replace("-", separator)]
    return prefix + "".join(chars)


_VALUES = st.sampled_from(
    [
        "",
        "1",
        "198.51.100.7",
        "6.6.6.6, 10.0.0.2",
        "keep-alive, X-Custom",
        "close, cookie, x-forwarded-for",
        "upgrade, X_App_Role, forwarded",
        "gw-session=secret; theme=dark",
        " gw-login=n ;gw-session=x; a=1",
        "gw-session=only",
        'for="10.0.0.9";proto=https',
        "https",
        "007",
    ]
)

_IDENTITIES = st.sampled_from(
    [
        {},
        {"X-Gateway-User-Id": "u-1", "X-Gateway-Role": "admin"},
        {"X-Gateway-User-Id": "u-1", "X-App-Role": "admin"},
        {"x_app_role": "a", "X-Gateway-Mfa": "grace"},
    ]
)


@given(
    pairs=st.lists(st.tuples(_spelling(), _VALUES), max_size=12),
    connection=st.sampled_from(
        [None, "keep-alive, X-Custom", "close, cookie, x-forwarded-for", "x-real-ip, forwarded"]
    ),
    trusted=st.booleans(),
    identity=_IDENTITIES,
    client_addr=st.sampled_from(["203.0.113.9", "2001:db8::1", ""]),
    real_ip=st.sampled_from([None, "198.51.100.7", ""]),
    private=st.sampled_from([frozenset(), frozenset({"gw-session", "gw-login"})]),
    drop_underscores=st.booleans(),
)
@settings(max_examples=400)
def test_the_rewrite_matches_the_reference_reading(
    pairs: list[tuple[str, str]],
    connection: str | None,
    trusted: bool,
    identity: dict[str, str],
    client_addr: str,
    real_ip: str | None,
    private: frozenset[str],
    drop_underscores: bool,
) -> None:
    kwargs = {
        "client_addr": client_addr,
        "scheme": "https",
        "host": "gw.example.com",
        "trusted_proxy": trusted,
        "identity": identity,
        "request_id": "req-1",
        "real_ip": real_ip,
        "private_cookies": private,
        "drop_underscores": drop_underscores,
    }
    if connection is not None:
        pairs = [*pairs, ("Connection", connection)]
    headers = multi(*pairs)
    expected = reference_request_headers(headers, **kwargs)  # type: ignore[arg-type]
    got = request_headers_for_upstream(headers, **kwargs)  # type: ignore[arg-type]
    assert list(got.items()) == list(expected.items())


# -- reading the session cookie without aiohttp's full cookie parser -------------------------

_COOKIE_NAMES = st.sampled_from(
    ["gw-session", "__Host-gw-session", "theme", "_ga", "a", "path", "expires", "secure", "x.y"]
)
_PLAIN_VALUES = st.one_of(
    st.sampled_from(["", "dark", "GA1.2.3", "abc==", "a/b+c", "%7B%7D", "1:2"]),
    st.text(alphabet="abcXYZ09-_.=/+%:", max_size=8),
)
_ODD_VALUES = st.one_of(
    _PLAIN_VALUES,
    st.sampled_from(['"q"', "a b", "1,", '"x;gw-session=y"']),
    st.text(alphabet="abcXYZ09-_.=/+%:;,\"'\\ \t!#$&*()[]{}<>?@^`|~", max_size=8),
)
_ODD_SEPARATORS = st.sampled_from(["; ", ";", " ; ", "; ; ", ", ", ",", " ", "\t"])


@given(st.lists(st.tuples(_COOKIE_NAMES, _PLAIN_VALUES), max_size=5))
@settings(max_examples=300)
def test_simple_cookies_reads_plain_headers_as_aiohttp_does(pairs: list[tuple[str, str]]) -> None:
    header = "; ".join(f"{name}={value}" for name, value in pairs)
    fast = simple_cookies(header)
    assert fast is not None  # every generated header is plain: the comparison is reached
    request = make_mocked_request("GET", "/", headers={"Cookie": header} if header else {})
    assert fast == dict(request.cookies)


@st.composite
def _odd_cookie_header(draw: st.DrawFn) -> str:
    """A Cookie header as a hostile client might write one: any separators, any values."""
    pairs = draw(st.lists(st.tuples(_COOKIE_NAMES, _ODD_VALUES, _ODD_SEPARATORS), max_size=5))
    header = "".join(
        f"{sep if i else ''}{name}={value}" for i, (name, value, sep) in enumerate(pairs)
    )
    return header + (draw(st.sampled_from(["", " ", ";", ","])) if pairs else "")


@given(_odd_cookie_header())
@settings(max_examples=300)
def test_cookies_are_read_as_aiohttp_reads_them_whatever_the_separators(header: str) -> None:
    request = make_mocked_request("GET", "/", headers={"Cookie": header} if header else {})
    assert request_cookies(header) == dict(request.cookies)


PRIVATE = frozenset({"gw-session", "__Host-gw-session"})


def _forwarded_cookie(header: str) -> str:
    out = request_headers_for_upstream(
        {"Cookie": header},
        client_addr="127.0.0.1",
        scheme="http",
        host="gw",
        trusted_proxy=False,
        identity={},
        request_id="r",
        private_cookies=PRIVATE,
    )
    return out.get("Cookie", "")


@given(_odd_cookie_header())
@settings(max_examples=400)
def test_a_session_the_gateway_recognises_never_reaches_the_app(header: str) -> None:
    forwarded = _forwarded_cookie(header)
    assert PRIVATE.isdisjoint(request_cookies(forwarded))
    if simple_cookies(header) is not None:  # a plain header keeps every other cookie
        others = {k: v for k, v in request_cookies(header).items() if k not in PRIVATE}
        assert request_cookies(forwarded) == others


@pytest.mark.parametrize(
    "header",
    [
        "app=1, gw-session=SECRET",
        "app=1 gw-session=SECRET",
        "app=1,gw-session=SECRET",
        "gw-session=SECRET, app=1",
        "app=1\tgw-session=SECRET",
        "app=1; theme=dark gw-session=SECRET; b=2",
    ],
)
def test_the_session_cookie_is_taken_out_whatever_the_separators(header: str) -> None:
    assert "SECRET" not in _forwarded_cookie(header)


@pytest.mark.parametrize("header", ["app=1, gw-session=SECRET", "app=1 gw-session=SECRET"])
def test_odd_separators_are_read_as_a_session_and_kept_from_the_app(header: str) -> None:
    assert request_cookies(header)["gw-session"] == "SECRET"  # recognised as the session
    assert _forwarded_cookie(header) == ""  # so the part that carries it never goes on


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", {}),
        ("gw-session=abc", {"gw-session": "abc"}),
        ("a=1; gw-session=abc; b=x==", {"a": "1", "gw-session": "abc", "b": "x=="}),
        ("gw-session=1; gw-session=2", {"gw-session": "2"}),
        ("a=1;b=2", None),
        ('a="1"', None),
        ('a=1; b="q"', None),
        ("a=1; b=x y", None),
        ("a=1; b", None),
        ("a=1; b=2 ", None),
    ],
)
def test_simple_cookies(header: str, expected: dict[str, str] | None) -> None:
    assert simple_cookies(header) == expected


def test_cookie_filter_keeps_the_others_as_they_were() -> None:
    out = upstream({"Cookie": " a=1 ;gw-session=x;; b = 2;c"}, identity={})
    assert out["Cookie"] == " a=1 ;gw-session=x;; b = 2;c"  # no private names: untouched
    filtered = request_headers_for_upstream(
        {"Cookie": " a=1 ;gw-session=x;; b = 2;c; gw-login =y"},
        client_addr="127.0.0.1",
        scheme="http",
        host="gw",
        trusted_proxy=False,
        identity={},
        request_id="r",
        private_cookies=frozenset({"gw-session", "gw-login"}),
    )
    assert filtered["Cookie"] == "a=1; b = 2; c"


def reference_response_headers(
    headers: Mapping[str, str], private_cookies: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    connection_named = _reference_connection_tokens(headers)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in connection_named or lower == "server":
            continue
        if lower == "set-cookie" and value.split("=", 1)[0].strip() in private_cookies:
            continue
        out.add(name, value)
    return out


_RESPONSE_NAMES = st.sampled_from(
    [
        "Content-Type",
        "Content-Length",
        "content-encoding",
        "Set-Cookie",
        "set-cookie",
        "Connection",
        "connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Upgrade",
        "X-Internal",
        "x-internal",
        "Cache-Control",
        "Server",
    ]
)
_RESPONSE_VALUES = st.sampled_from(
    [
        "",
        "1",
        "text/plain",
        "keep-alive, X-Internal",
        "close, set-cookie",
        "Cache-Control",
        "gw-session=forged; Path=/",
        " gw-login = x",
        "app=1; Path=/",
    ]
)


@given(
    pairs=st.lists(st.tuples(_RESPONSE_NAMES, _RESPONSE_VALUES), max_size=10),
    private=st.sampled_from([frozenset(), frozenset({"gw-session", "gw-login"})]),
)
@settings(max_examples=300)
def test_response_filter_matches_the_reference_reading(
    pairs: list[tuple[str, str]], private: frozenset[str]
) -> None:
    headers = multi(*pairs)
    expected = reference_response_headers(headers, private)
    assert list(response_headers_for_client(headers, private).items()) == list(expected.items())


@pytest.mark.parametrize(
    ("headers", "trusted", "hosts"),
    [
        ({"Host": "App.Example.com"}, False, ["app.example.com"]),
        ({"Host": "a", "X-Forwarded-Host": "evil.example"}, False, ["a"]),
        ({"Host": "a", "X-Forwarded-Host": "evil.example, b"}, True, ["a", "evil.example", "b"]),
        (
            {"Host": "a", "Forwarded": 'for=1.2.3.4;host="Evil.example"'},
            True,
            ["a", "evil.example"],
        ),
        ({"Host": "a", "Forwarded": "proto=https;host=b, host=c"}, True, ["a", "b", "c"]),
        ({}, False, [""]),
    ],
)
def test_claimed_hosts(headers: dict[str, str], trusted: bool, hosts: list[str]) -> None:
    assert claimed_hosts(CIMultiDict(headers), trusted_proxy=trusted) == hosts


def test_header_name_tables_do_not_remember_long_names() -> None:
    long_name = "X-" + "a" * 200
    before = (len(headers_module._KINDS), len(headers_module._RESPONSE_KINDS))
    out = upstream({long_name: "1"}, identity={})
    assert out[long_name] == "1"
    assert response_headers_for_client({long_name: "2"})[long_name] == "2"
    assert (len(headers_module._KINDS), len(headers_module._RESPONSE_KINDS)) == before
