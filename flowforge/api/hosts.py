"""Which `Host` and `Origin` headers the API answers: the names it is served under, and no other.

A web page can make a browser send requests to 127.0.0.1 under a name of its own (DNS
rebinding): the browser then deems them same-origin, and sends `Host: attacker.example:PORT`.
Answering only the host names the server is bound to (and those the operator allows) closes
that door; a write whose `Origin` is not the server's own origin is refused as well.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from flowforge.settings import is_loopback

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(header: str) -> tuple[str, int | None] | None:
    """(name, port) of a `Host` header value, the name lower case and an IPv6 address unbracketed.

    None when the value is not a host: an empty name, a port that is no number, a bare IPv6 address.
    """
    value = header.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else ""
    else:
        name, _, port = value.partition(":")
        if ":" in port:
            return None
    name = name.rstrip(".")
    if not name or (port and not (port.isascii() and port.isdigit() and int(port) <= 65535)):
        return None
    return name, int(port) if port else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """The host names one server answers for (see `for_server`)."""

    names: frozenset[str]
    suffixes: tuple[str, ...] = ()  # from "*.example.com": every name under it
    any_ip: bool = False  # IP literals pass: a rebound name never arrives as an address
    any_name: bool = False

    @classmethod
    def for_server(cls, bind: str, allowed: Iterable[str], token_required: bool) -> HostPolicy:
        """The policy of a server bound to `bind`, with `allowed` (already normalised) host names.

        Always: the loopback names, the bound address itself and `allowed`. On a wildcard bind
        (0.0.0.0, ::) also any IP address; and, when no names are allowed and a token is required,
        any name at all: a page that rebinds a name cannot send the token, which it does not know.
        """
        allowed = tuple(allowed)
        exact = {a for a in allowed if not a.startswith("*")}
        suffixes = tuple(a[1:] for a in allowed if a.startswith("*."))
        wildcard = bind.strip("[]") in WILDCARD_BINDS
        if not wildcard:
            exact.add(bind.strip("[]").lower())
        any_name = "*" in allowed or (wildcard and token_required and not allowed)
        return cls(frozenset(exact | LOOPBACK_NAMES), suffixes, any_ip=wildcard, any_name=any_name)

    def allows(self, name: str) -> bool:
        """True when requests addressed to host `name` (as `split_host` gives it) are answered."""
        if self.any_name or name in self.names or any(name.endswith(s) for s in self.suffixes):
            return True
        return _is_ip(name) and (self.any_ip or is_loopback(name))


def origin_matches_host(origin: str, host: tuple[str, int | None]) -> bool:
    """True when `origin` (an Origin header) is the origin the request was addressed to (`host`).

    The names must be equal; the ports too when the Host header names one (a proxy that
    forwards `Host` without its port leaves only the name to compare). `null` never matches.
    """
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    name, host_port = host
    if parts.hostname.rstrip(".") != name:
        return False
    return host_port is None or (port or _DEFAULT_PORTS[parts.scheme]) == host_port
