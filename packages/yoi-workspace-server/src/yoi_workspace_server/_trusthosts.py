"""Hosts and origins as the trust boundary compares them, and :class:`TrustSettings`, which
names the hosts a request may arrive for and the Backend's own origin."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_ALLOWED_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_host(name: str) -> str | None:
    """A host name or address as the allow-list compares it: lower case, no brackets, no
    trailing dot; ``None`` when it is not a plausible host."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    name = name.rstrip(".")
    if not name or any(c in name for c in "/@?#[]\\ \t%") or ":" in name:
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    return name


def _split_host_header(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a ``Host`` header value (port ``None`` when absent)."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[: end + 1], value[end + 1 :]
    else:
        host, colon, port_text = value.partition(":")
        rest = colon + port_text
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
            return None
        port = int(rest[1:])
    normalized = normalize_host(host)
    return (normalized, port) if normalized else None


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin or URL, default ports filled in."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = normalize_host(f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname)
    if host is None:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


@dataclass(frozen=True)
class TrustSettings:
    """``token``: the browser token. ``bound_host``: the host the Backend listens on.
    ``allowed_hosts``: ``--allowed-host`` names. ``public_url``: the address browsers use
    when a TLS reverse proxy is in front (its host is allowed, its origin is the Backend's
    own, and ``https`` makes the session cookie ``Secure``)."""

    token: str
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    public_url: str | None = None
    max_body_bytes: int = 1024 * 1024
    hosts: frozenset[str] = field(init=False)
    public_origin: tuple[str, str, int] | None = field(init=False)

    def __post_init__(self) -> None:
        hosts = set(DEFAULT_ALLOWED_HOSTS)
        for name in (self.bound_host, *self.allowed_hosts):
            normalized = normalize_host(f"[{name}]" if ":" in name.strip("[]") else name)
            if normalized is None:
                raise ValueError(f"not a host name: {name!r}")
            hosts.add(normalized)
        public = None
        if self.public_url is not None:
            public = _origin_of(self.public_url)
            if public is None:
                raise ValueError("the public URL must be an http(s) URL with a host")
            hosts.add(public[1])
        object.__setattr__(self, "hosts", frozenset(hosts))
        object.__setattr__(self, "public_origin", public)

    @property
    def secure_cookies(self) -> bool:
        return self.public_origin is not None and self.public_origin[0] == "https"

    def __repr__(self) -> str:
        return (
            f"TrustSettings(token='***', bound_host={self.bound_host!r}, "
            f"allowed_hosts={self.allowed_hosts!r}, public_url={self.public_url!r})"
        )
