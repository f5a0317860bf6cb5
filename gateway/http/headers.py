"""Which headers cross the gateway in each direction, and who the client really is."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias, TypeVar

from aiohttp._cookie_helpers import parse_cookie_header
from multidict import CIMultiDict, istr

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_T = TypeVar("_T")

# RFC 9110 §7.6.1 plus the de-facto ones (Keep-Alive, Proxy-Connection): they describe one
# connection, never the message, so they must not be relayed to the next hop.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

IDENTITY_HEADER_PREFIX = "x-gateway-"

# The names the gateway writes on every proxied request, as multidict ``istr``: a
# case-insensitive multidict keeps an istr's folded form instead of working it out again at
# each insertion, and the client library copies the headers twice more on the way out.
X_FORWARDED_FOR = istr("X-Forwarded-For")
X_FORWARDED_PROTO = istr("X-Forwarded-Proto")
X_FORWARDED_HOST = istr("X-Forwarded-Host")
X_REAL_IP = istr("X-Real-IP")
X_REQUEST_ID = istr("X-Request-Id")
X_GATEWAY_USER_ID = istr("X-Gateway-User-Id")
X_GATEWAY_USER_EMAIL = istr("X-Gateway-User-Email")
X_GATEWAY_ORG_ID = istr("X-Gateway-Org-Id")
X_GATEWAY_ROLE = istr("X-Gateway-Role")
X_GATEWAY_MFA = istr("X-Gateway-Mfa")
X_GATEWAY_MFA_METHOD = istr("X-Gateway-Mfa-Method")
X_GATEWAY_MFA_AT = istr("X-Gateway-Mfa-At")
X_GATEWAY_TOKEN = istr("X-Gateway-Token")

# Headers that claim to say who the client is or how it reached us. From an untrusted peer
# they are lies by default: an app that believes a client-sent X-Real-IP can be fooled.
_FORWARDING_EXACT: frozenset[str] = frozenset(
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
_FORWARDING_PREFIX = "x-forwarded-"

# Handled by this hop: the gateway's own server answers ``Expect: 100-continue`` to the
# client, and passing it on would make the upstream send an interim 100 that nobody wants.
_HANDLED_HERE: frozenset[str] = frozenset({"host", "expect"})

# Headers that other proxies and identity-aware front ends set to tell an app who the user
# is or which URL was "really" asked for (nginx, oauth2-proxy, Authelia, Grafana, Kong,
# Azure App Service, Google IAP, AWS ALB, Cloudflare Access, IIS URL rewrite). Behind this
# gateway they can only come from the client, so they never reach the app, from any peer,
# in any spelling. The README lists them.
OTHER_PROXIES_HEADERS: frozenset[str] = frozenset(
    {
        "x-original-url",
        "x-original-uri",
        "x-rewrite-url",
        # Method overrides: a framework would run the request as the method named, one the
        # gateway may refuse on its own (TRACE) or never have judged.
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-remote-user",
        "x-remote-email",
        "x-remote-groups",
        "x-remote-name",
        "remote-user",
        "remote-email",
        "remote-groups",
        "remote-name",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
        "x-auth-request-access-token",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
        "x-forwarded-access-token",
        "x-webauth-user",
        "x-authenticated-user",
        "x-authenticated-userid",
        "x-ms-client-principal",
        "x-ms-client-principal-id",
        "x-ms-client-principal-name",
        "x-ms-client-principal-idp",
        "x-goog-authenticated-user-email",
        "x-goog-authenticated-user-id",
        "x-goog-iap-jwt-assertion",
        "x-amzn-oidc-identity",
        "x-amzn-oidc-data",
        "x-amzn-oidc-accesstoken",
        "cf-access-authenticated-user-email",
        "cf-access-jwt-assertion",
    }
)

# Names whose meaning the gateway relies on: spelled any other way (``Transfer_Encoding``,
# ``HTTP_COOKIE``, ``Content.Length``) they are dropped, so an app that folds the spelling
# cannot be handed a framing, host or cookie header the gateway never checked.
_FOLDED_AWAY: frozenset[str] = HOP_BY_HOP | _HANDLED_HERE | {"content-length", "cookie"}

_CGI_PREFIX = "http-"
_DIGITS = re.compile(r"[0-9]+")


def _canonical(name: str) -> str:
    """The name a CGI/WSGI-style app or framework could fold ``name`` onto: case, ``_`` and
    ``.`` for ``-``, and the ``HTTP_`` prefix of a CGI environment all ignored."""
    canonical = name.strip().lower().replace("_", "-").replace(".", "-")
    if canonical.startswith(_CGI_PREFIX):
        canonical = canonical[len(_CGI_PREFIX) :]
    return canonical


def _is_forwarding(canonical: str) -> bool:
    return canonical in _FORWARDING_EXACT or canonical.startswith(_FORWARDING_PREFIX)


def _connection_tokens(headers: Mapping[str, str]) -> set[str]:
    """Every header name listed in any Connection header (RFC 9110 §7.6.1), lower-cased."""
    tokens: set[str] = set()
    for name, value in headers.items():
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _values(headers: Mapping[str, str], lower_name: str) -> list[str]:
    # items() rather than getall(): works for plain mappings and keeps multi-valued order.
    return [v for k, v in headers.items() if k.lower() == lower_name]


# What the request rewrite does with a header, by the name's exact spelling. Client header
# names come from a small set, so each spelling is classified once and then looked up.
_DROP = 0  # hop-by-hop, handled here, the gateway's namespace, X-Request-Id, other proxies'
_PASS = 1
_COOKIE = 2
_FORWARDING = 3  # kept from a trusted peer in the real spelling only
# Never kept: an underscore (or padded) spelling of a forwarding header, or RFC 7239
# Forwarded. The gateway speaks the X-Forwarded-* family only: passing on a Forwarded chain
# it does not extend would give the app two accounts of the hops that disagree.
_FORWARDING_ALIAS = 4
_XFF = 5  # X-Forwarded-For itself, from a trusted peer joined into the chain
_LENGTH = 6  # Content-Length, passed on as the number it is (no leading zeros)

# (what to do, lower-cased name, canonical name, whether the name has an underscore)
_Kind: TypeAlias = tuple[int, str, str, bool]
_KINDS: dict[str, _Kind] = {}
# Past this many spellings, or for a longer name, classify without remembering: the tables
# stay small (at most 4096 names of 64 characters) whatever names clients and the app send.
_KINDS_MAX = 4096
_KIND_NAME_MAX = 64


def _remember(table: dict[str, _T], name: str, kind: _T) -> _T:
    """Keep ``kind`` for ``name`` in a classification table, within the bounds above."""
    if len(table) < _KINDS_MAX and len(name) <= _KIND_NAME_MAX:
        table[name] = kind
    return kind


def _classify(name: str) -> _Kind:
    lower = name.lower()
    canonical = _canonical(name)
    dropped = (
        lower in HOP_BY_HOP
        or lower in _HANDLED_HERE
        or (lower != canonical and canonical in _FOLDED_AWAY)
        or canonical in OTHER_PROXIES_HEADERS
    )
    if dropped or canonical.startswith(IDENTITY_HEADER_PREFIX) or canonical == "x-request-id":
        kind = _DROP
    elif lower == "content-length":
        kind = _LENGTH
    elif lower == "cookie":
        kind = _COOKIE
    elif _is_forwarding(canonical):
        if lower != canonical or lower == "forwarded":
            kind = _FORWARDING_ALIAS
        elif lower == "x-forwarded-for":
            kind = _XFF
        else:
            kind = _FORWARDING
    else:
        kind = _PASS
    return _remember(_KINDS, name, (kind, lower, canonical, "_" in name))


# The canonical names of an identity mapping's keys that the gateway prefix does not cover
# already, by the keys' spellings (gate.py always sends the same few).
_IDENTITY_EXTRA: dict[tuple[str, ...], frozenset[str]] = {}


def _identity_extra(identity: Mapping[str, str]) -> frozenset[str]:
    if not identity:
        return frozenset()
    key = tuple(identity)
    extra = _IDENTITY_EXTRA.get(key)
    if extra is None:
        extra = frozenset(
            c for c in (_canonical(n) for n in identity) if not c.startswith(IDENTITY_HEADER_PREFIX)
        )
        if len(_IDENTITY_EXTRA) < 64:
            _IDENTITY_EXTRA[key] = extra
    return extra


def request_headers_for_upstream(
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
    forwarding: bool = True,
    drop_underscores: bool = True,
) -> CIMultiDict[str]:
    """The headers to send upstream for a client request that arrived with ``headers``.

    ``client_addr`` is the address of the peer that connected to the gateway (appended to
    X-Forwarded-For, as every proxy hop does); ``real_ip`` is the end client found by
    :func:`client_address` (sent as X-Real-IP; defaults to ``client_addr``). ``host`` and
    ``scheme`` are what the client used to reach the gateway. Cookies named in
    ``private_cookies`` (the gateway's own session) are taken out of Cookie headers. With
    ``drop_underscores`` no header whose name has an underscore is passed on (nginx's
    default): apps and frameworks fold ``_`` onto ``-``. Other proxies' identity and
    rewrite headers (:data:`OTHER_PROXIES_HEADERS`) are never passed on.

    Host is not forwarded: the HTTP client sends the upstream's own host, and the original
    one travels in X-Forwarded-Host (nginx's default, ``Host $proxy_host``). The app then
    sees one stable host whatever name the client used, and builds links from the header.

    Without ``forwarding`` none of X-Forwarded-For, -Proto, -Host or X-Real-IP is added,
    and no forwarding header a client sent is kept, whatever ``trusted_proxy`` says: for an
    upstream that has no business knowing who the client is.
    """
    # A client could otherwise get the gateway's identity headers trusted by naming them
    # anything the app folds to the same key; strip every spelling of those names too. The
    # gateway's own prefix is stripped whatever the identity, so only other names are left.
    identity_extra = _identity_extra(identity)
    connection_named: set[str] | None = None
    pairs: list[tuple[str, str]] = []
    incoming_xff: list[str] = []
    kept_forwarding: list[tuple[str, str]] = []
    kinds = _KINDS
    for name, value in headers.items():
        found = kinds.get(name)
        if found is None:
            found = _classify(name)
        kind = found[0]
        if kind == _DROP:
            if found[1] == "connection" and connection_named is None:
                connection_named = _connection_tokens(headers)
            continue
        if (identity_extra and found[2] in identity_extra) or (drop_underscores and found[3]):
            continue
        if kind == _PASS:
            pairs.append((name, value))
        elif kind == _LENGTH:
            # The parser accepted it as a number; the app gets that number, not "007".
            if _DIGITS.fullmatch(value):
                pairs.append((name, str(int(value))))
        elif kind == _COOKIE:
            if private_cookies:
                kept = _without_cookies(value, private_cookies)
                if kept:
                    pairs.append((name, kept))
            else:
                pairs.append((name, value))
        elif trusted_proxy:
            # Underscore spellings come from no real proxy, only from someone hoping the app
            # folds them onto the real header: never pass them, even from a trusted peer.
            if kind == _XFF:
                incoming_xff.append(value)
            elif kind == _FORWARDING:
                kept_forwarding.append((name, value))
    if connection_named:
        pairs = [(n, v) for n, v in pairs if n.lower() not in connection_named]
        kept_forwarding = [(n, v) for n, v in kept_forwarding if n.lower() not in connection_named]
        if "x-forwarded-for" in connection_named:
            incoming_xff = []

    out: CIMultiDict[str] = CIMultiDict(pairs)
    if forwarding:
        _add_forwarding(
            out, incoming_xff, kept_forwarding, client_addr, real_ip, scheme=scheme, host=host
        )
    out[X_REQUEST_ID] = request_id
    for name, value in identity.items():
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name!r} has a control character in its value")
        out[name] = value
    return out


def _add_forwarding(
    out: CIMultiDict[str],
    incoming_xff: list[str],
    kept_forwarding: list[tuple[str, str]],
    client_addr: str,
    real_ip: str | None,
    *,
    scheme: str,
    host: str,
) -> None:
    """Add this hop to X-Forwarded-For and set the other forwarding headers in ``out``."""
    # Each hop appends the peer it heard from, so the chain stays walkable by client_address.
    if incoming_xff:
        chain = [part.strip() for v in incoming_xff for part in v.split(",") if part.strip()]
        if client_addr:
            chain.append(client_addr)
    else:
        chain = [client_addr] if client_addr else []
    real = real_ip if real_ip is not None else client_addr
    if kept_forwarding:
        for name, value in kept_forwarding:
            out.add(name, value)
        if chain:
            out[X_FORWARDED_FOR] = ", ".join(chain)
        if X_FORWARDED_PROTO not in out:
            out[X_FORWARDED_PROTO] = scheme
        if X_FORWARDED_HOST not in out and host:
            out[X_FORWARDED_HOST] = host
        # Always the gateway's own verdict, so the app logs the address the throttles keyed on.
        out.popall(X_REAL_IP, None)
    else:
        # No forwarding header survived the filter above, so none needs replacing.
        if chain:
            out.add(X_FORWARDED_FOR, ", ".join(chain))
        out.add(X_FORWARDED_PROTO, scheme)
        if host:
            out.add(X_FORWARDED_HOST, host)
    if real:
        out[X_REAL_IP] = real


# Response header names, by exact spelling: 0 relay, 1 not relayed (hop-by-hop, and Server:
# the gateway names no software, its own or the app's; 2: Connection itself), 3 Set-Cookie
# (relayed unless it names a private cookie). Upstream responses reuse a few names, so each
# spelling is lowered and looked up once.
_RELAY, _HOP, _CONNECTION, _SET_COOKIE = 0, 1, 2, 3
_RESPONSE_KINDS: dict[str, int] = {}


def _response_kind(name: str) -> int:
    lower = name.lower()
    if lower == "connection":
        kind = _CONNECTION
    elif lower in HOP_BY_HOP or lower == "server":
        kind = _HOP
    elif lower == "set-cookie":
        kind = _SET_COOKIE
    else:
        kind = _RELAY
    return _remember(_RESPONSE_KINDS, name, kind)


def response_headers_for_client(
    headers: Mapping[str, str], private_cookies: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    """The upstream response's headers as relayed to the client.

    Content-Length and Content-Encoding stay: the body is relayed byte for byte (the client
    session does not decompress), so they still describe it. Multiple Set-Cookie stay apart,
    except those naming one of ``private_cookies``: the app may not set the gateway's own.
    """
    connection_named: set[str] | None = None
    pairs: list[tuple[str, str]] = []
    kinds = _RESPONSE_KINDS
    for name, value in headers.items():
        kind = kinds.get(name)
        if kind is None:
            kind = _response_kind(name)
        if kind == _RELAY:
            pairs.append((name, value))
        elif kind == _SET_COOKIE:
            if not private_cookies or _cookie_name(value) not in private_cookies:
                pairs.append((name, value))
        elif kind == _CONNECTION and connection_named is None:
            connection_named = _connection_tokens(headers)
    if connection_named:
        pairs = [(n, v) for n, v in pairs if n.lower() not in connection_named]
    return CIMultiDict(pairs)


def _cookie_name(pair: str) -> str:
    return pair.split("=", 1)[0].strip()


_LOOSE_SEPARATORS = re.compile(r"[\s,]+")

# A browser sends the same Cookie header request after request: the filtered value is
# remembered by (names, header), for headers of at most 1 KiB, in at most 4096 entries.
_STRIPPED: dict[tuple[frozenset[str], str], str] = {}
_STRIPPED_MAX_HEADER = 1024


def _without_cookies(value: str, names: frozenset[str]) -> str:
    key = (names, value)
    found = _STRIPPED.get(key)
    if found is None:
        found = _strip_cookies(value, names)
        if len(value) <= _STRIPPED_MAX_HEADER:
            if len(_STRIPPED) >= _KINDS_MAX:
                _STRIPPED.clear()
            _STRIPPED[key] = found
    return found


def _strip_cookies(value: str, names: frozenset[str]) -> str:
    """A Cookie header value with the named cookies taken out, as :func:`request_cookies`
    reads them: that parse also splits on ``,`` and spaces (``app=1, gw-session=…``), so a
    ``;``-separated part in which it finds one of ``names`` goes whole. The empty string
    when nothing is left, or when the parse would still find one of ``names`` in the rest.
    """
    plain = _SIMPLE_COOKIE_HEADER.fullmatch(value) is not None
    kept = []
    for part in value.split(";"):
        part = part.strip()
        if not part or part.partition("=")[0].rstrip() in names:
            continue
        if not plain and (
            not names.isdisjoint(request_cookies(part))
            # Also what an app splitting on "," or spaces might read as a cookie name.
            or any(t.partition("=")[0] in names for t in _LOOSE_SEPARATORS.split(part))
        ):
            continue
        kept.append(part)
    header = "; ".join(kept)
    if not plain and not names.isdisjoint(request_cookies(header)):
        return ""
    return header


# A Cookie header as browsers send it: name=value pairs of plain characters, "; " between.
_SIMPLE_COOKIE_HEADER = re.compile(
    r"[A-Za-z0-9_.\-]+=[A-Za-z0-9_.\-=/+%:]*(?:; [A-Za-z0-9_.\-]+=[A-Za-z0-9_.\-=/+%:]*)*"
)


def simple_cookies(header: str) -> dict[str, str] | None:
    """The cookies in a plain Cookie header value, as aiohttp's ``request.cookies`` reads
    them (a later duplicate wins); None for any other header, to be left to that parser.

    aiohttp parses every cookie into a Morsel on first use; the gateway wants one value.
    """
    if not header:
        return {}
    if _SIMPLE_COOKIE_HEADER.fullmatch(header) is None:
        return None
    return dict(pair.split("=", 1) for pair in header.split("; "))


def request_cookies(header: str) -> dict[str, str]:
    """The cookies in a Cookie header value: the one reading that finds the gateway's session
    and that takes it out before the request goes on (aiohttp's own, as ``request.cookies``)."""
    plain = simple_cookies(header)
    if plain is not None:
        return plain
    return {name: morsel.value for name, morsel in parse_cookie_header(header)}


def _parse_ip(text: str) -> IPAddress | None:
    """An address from a peer name or an X-Forwarded-For entry, with any port dropped."""
    text = text.strip().strip('"')
    if text.startswith("["):  # "[v6]" or "[v6]:port"
        end = text.find("]")
        if end == -1:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        # The same client on a dual-stack socket must get the same throttle key.
        return addr.ipv4_mapped
    return addr


def _trusted(addr: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


@functools.lru_cache(maxsize=4096)
def _peer_verdict(
    peer: str, trusted_proxies: tuple[IPNetwork, ...]
) -> tuple[IPAddress | None, str, bool]:
    """``(parsed peer, its text, whether trusted)``: the same few peers connect again and
    again (a load balancer, or clients on keep-alive), and parsing an address is not cheap."""
    peer_addr = _parse_ip(peer)
    if peer_addr is None:
        return None, peer, False
    return peer_addr, str(peer_addr), _trusted(peer_addr, trusted_proxies)


def client_address(
    peer: str | None, headers: Mapping[str, str], trusted_proxies: Sequence[IPNetwork]
) -> tuple[str, bool]:
    """``(the real client's address, whether the peer is a trusted proxy)``.

    From a trusted peer, X-Forwarded-For is walked right to left past trusted hops; the
    first untrusted entry is the client (entries left of it are the client's own claims,
    so they are never believed). An unparsable entry stops the walk at the last genuine
    hop. From an untrusted peer the header is ignored. No peer (a Unix socket) gives "".
    """
    if not peer:
        return "", False
    networks = trusted_proxies if isinstance(trusted_proxies, tuple) else tuple(trusted_proxies)
    peer_addr, text, trusted = _peer_verdict(peer, networks)
    if peer_addr is None or not trusted:
        return text, False
    entries = [p for v in _values(headers, "x-forwarded-for") for p in v.split(",")]
    candidate = peer_addr
    for entry in reversed(entries):
        addr = _parse_ip(entry)
        if addr is None:
            break
        candidate = addr
        if not _trusted(addr, trusted_proxies):
            break
    return str(candidate), True


_FORWARDED_HOST = re.compile(r'(?:^|[;,\s])host\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)', re.I)


def claimed_hosts(headers: Mapping[str, str], *, trusted_proxy: bool) -> list[str]:
    """Every host name the app may take as the one the client asked for, lower-cased: Host,
    and from a trusted proxy also X-Forwarded-Host (which the proxy passes on, so an
    allow-list must hold for it too) and Forwarded ``host=`` (not passed on, but a front
    proxy's claim all the same: a request naming a host outside the list is refused)."""
    hosts = [v.strip().lower() for v in _values(headers, "host")] or [""]
    if trusted_proxy:
        for value in _values(headers, "x-forwarded-host"):
            hosts.extend(part.strip().lower() for part in value.split(","))
        for value in _values(headers, "forwarded"):
            hosts.extend(m.group(1).strip('"').lower() for m in _FORWARDED_HOST.finditer(value))
    return hosts
