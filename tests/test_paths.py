"""Path normalisation and public-path rules: what the gateway treats as public, and what not."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.http.paths import PathRules, _normalise_slowly, normalise_path

RULES = PathRules(["/public/", "/favicon.ico", "/assets/app-*"])


@pytest.mark.parametrize(
    ("raw", "public"),
    [
        ("/public/x", True),
        ("/public/", True),
        ("/public/a/b/c.css", True),
        ("/public/x?y=1", False),  # the caller hands over the path without its query
        ("/public/./x", False),  # not in normal form: the app may read it otherwise
        ("/public//x", False),  # not in normal form: the app may read it otherwise
        ("/public/x;jsessionid=1", False),  # not in normal form: the app may read it otherwise
        ("/public/%78", False),  # "x" escaped: not in normal form
        ("/favicon.ico", True),
        ("/assets/app-1234.js", True),
        ("/assets/app-/deep/x.js", True),
        ("/public", False),  # the directory itself is outside the subtree
        ("/admin?x=/public", False),
        ("/admin?/public/x", False),
        ("/public/../admin", False),
        ("/public/%2e%2e/admin", False),
        ("/public/%2E%2E/admin", False),
        ("/public/.%2e/admin", False),
        ("/public/..;/admin", False),
        ("/PUBLIC/x", False),
        ("/Public/x", False),
        ("//admin", False),
        ("/admin;x", False),
        ("/public;x/../admin", False),
        ("/public%2f..%2fadmin", False),
        ("/public%2F..%2Fadmin", False),
        ("/public/%252e%252e/admin", False),  # double encoding refused
        ("/public\\..\\admin", False),
        ("/public/%5c..%5cadmin", False),
        ("/public/x%00", False),
        ("/public/x%0a", False),
        ("/public/x#frag", False),
        ("/public/x%23/../../admin", False),
        ("/public/x%3f/../../admin", False),
        ("/public/%3b/../admin", False),
        ("/public/\uff0e\uff0e/admin", False),
        ("/public/%ef%bc%8f..%ef%bc%8fadmin", False),  # fullwidth solidus
        ("/public/%ff", False),  # not UTF-8
        ("/public/%zz", False),
        ("/public/%", False),
        ("public/x", False),
        ("http://host/public/x", False),
        ("*", False),
        ("", False),
        ("/favicon.ico/x", False),
        ("/favicon.icox", False),
        ("/assets/app", False),
        ("/../public/x", False),
    ],
)
def test_is_public(raw: str, public: bool) -> None:
    assert RULES.is_public(raw, normalise_path(raw)) is public


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("//", "/"),
        ("/a//b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/../", "/a/"),
        ("/a/.", "/a/"),
        ("/a/b/../../c", "/c"),
        ("/a;x=1/b;y", "/a/b"),
        ("/a%20b", None),  # whitespace after decoding
        ("/caf%C3%A9", "/caf\u00e9"),
        ("/a?x=../../..", "/a"),
        ("/..", None),
        ("/a/../..", None),
        ("/a/%2e%2e/%2e%2e", None),
        ("/a%2fb", None),
        ("/a%5cb", None),
        ("/a%25b", None),
        ("/a\x00b", None),
        ("/a\tb", None),
        ("/caf\u00e9", None),  # raw non-ASCII is not valid on the wire
    ],
)
def test_normalise_path(raw: str, expected: str | None) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize("bad", ["public/", "/a/*/b", "/a/../b/", "/a//b", "/a;x", "/a%2f"])
def test_rules_refuse_patterns_that_are_not_plain_paths(bad: str) -> None:
    with pytest.raises(ValueError, match="public path"):
        PathRules([bad])


def test_no_rules_means_nothing_is_public() -> None:
    assert not PathRules([]).is_public("/", "/")


_PIECES = st.sampled_from(
    [
        "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", ";", ";x=1", "%3b",
        "public", "PUBLIC", "admin", "%", "%25", "?", "?x=/public/", "#", "%00", "%23",
        "%3f", "x", "%70ublic", "\uff0f", "%ef%bc%8f", " ", "\t",
    ]
)  # fmt: skip
_PATHS = st.one_of(
    st.lists(_PIECES, max_size=12).map("".join),
    st.lists(_PIECES, max_size=12).map(lambda p: "/" + "".join(p)),
    st.text(max_size=40),
)


@given(_PATHS | st.lists(_PIECES, max_size=8).map(lambda p: "/public/" + "".join(p)))
@example("/public/%2e%2e/admin")
@example("/public;/../admin")
@example("/public/x")
def test_public_means_already_normal_and_under_a_public_prefix(raw: str) -> None:
    rules = PathRules(["/public/"])
    path = normalise_path(raw)
    public = rules.is_public(raw, path)
    assert public == (path == raw and raw.startswith("/public/"))
    if public:
        assert "/../" not in raw + "/"
        assert "/./" not in raw + "/"


@given(_PATHS)
def test_normalised_paths_are_stable(raw: str) -> None:
    path = normalise_path(raw)
    if path is not None and path.isascii():
        assert path.startswith("/")
        assert "//" not in path
        assert normalise_path(path) == path


# Paths made of the characters the plain-path shortcut has to judge: every printable ASCII
# character, space, DEL, a control, and a non-ASCII letter, with separators and dots often.
_PLAIN_ISH = st.lists(
    st.one_of(
        st.sampled_from(["/", "/", "/", ".", "..", "/.", "//", "%", "%2e", ";", "?", "#"]),
        st.characters(min_codepoint=0x20, max_codepoint=0x7F),
        st.sampled_from([" ", "\t", "\0", "\x7f", "é", "\uff0f"]),
        st.text(alphabet="abcXYZ019-_~", min_size=1, max_size=6),
    ),
    max_size=16,
).map("".join)


@given(st.one_of(_PLAIN_ISH, _PLAIN_ISH.map(lambda p: "/" + p), _PATHS))
@example("/")
@example("/bench")
@example("/a/")
@example("/a/b.css")
@example("/a/.b")
@example("/.well-known/x")
@example("/a/..")
@example("/a//")
@example("")
@settings(max_examples=1000)
def test_the_plain_path_shortcut_agrees_with_the_full_normalisation(raw: str) -> None:
    assert normalise_path(raw) == _normalise_slowly(raw.split("?", 1)[0])


@pytest.mark.parametrize("char", [chr(c) for c in range(0x100)] + ["\u2028", "\uff0f"])
def test_the_plain_path_shortcut_agrees_for_every_single_character(char: str) -> None:
    for raw in (f"/{char}", f"/a{char}b", f"/a/{char}/b", f"/a/{char}", f"{char}/a"):
        assert normalise_path(raw) == _normalise_slowly(raw.split("?", 1)[0]), raw
