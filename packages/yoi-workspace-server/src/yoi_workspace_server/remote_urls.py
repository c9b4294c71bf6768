"""Which ``base_url`` a remote runtime may have (``POST /api/runtimes`` and ``--config``).

A remote is registered by whoever holds the browser token, and the Backend then sends requests
(with the remote's token) to that address from inside the user's network. So a ``base_url``
must be a plain ``http``/``https`` URL with a host: no userinfo, query or fragment, a valid
port, and never a link-local or cloud-metadata address (``169.254.0.0/16``, ``fe80::/10``, the
metadata services' other addresses and names), whether written as a name, a dotted quad, an
integer, hex or octal, or as an IPv4-mapped IPv6 address. A new registration also resolves the
name and refuses one that points at such an address. A refusal is ``invalid_input`` and stores
nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

import anyio

from worker_runtime import InvalidInput

__all__ = ["METADATA_HOSTS", "check_base_url", "check_resolved", "is_forbidden_address"]

#: Host names of cloud metadata services (each resolves to a link-local address there).
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)
_FORBIDDEN_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local: AWS, GCP, Azure, OCI, ... metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("192.0.0.192/32"),  # Oracle Cloud metadata (legacy)
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*$")
_NUMERIC = re.compile(r"^[0-9a-fx.]+$")


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"base_url {reason}", details={"field": "base_url"})


def is_forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is link-local or a cloud metadata service's (also when an IPv6
    address carries such an IPv4 address: mapped, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_forbidden_address(address.ipv4_mapped)
        if address in _NAT64:
            return is_forbidden_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return any(address in network for network in _FORBIDDEN_NETWORKS)


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host written as an IP literal means, in any form a resolver accepts
    (``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376``, ``169.254.43518``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC.match(host) and not host.endswith("."):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_base_url(url: str) -> tuple[str, int]:
    """Refuse a ``base_url`` that is not allowed (``invalid_input``); its host and port."""
    if any(c in url for c in "?#\\") or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise _refuse("must not have a query, a fragment, spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _refuse("must be an http or https URL")
    if "@" in parts.netloc:
        raise _refuse("must not carry credentials (put the token in the token field)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _refuse("must have a host")
    if port == 0:
        raise _refuse("must have a valid port")
    bracketed = parts.netloc.startswith("[")
    address = _literal_address(host)
    if address is None and (bracketed or "%" in host or not _HOST_NAME.match(host)):
        raise _refuse("must have a valid host name or address")
    if address is not None and is_forbidden_address(address):
        raise _refuse("must not point at a link-local or cloud metadata address")
    if address is None and host in METADATA_HOSTS:
        raise _refuse("must not point at a cloud metadata service")
    return host, port if port is not None else (443 if scheme == "https" else 80)


async def check_resolved(url: str, *, timeout_s: float = 3.0) -> None:
    """:func:`check_base_url`, then resolve the host and refuse it when any of its addresses
    is forbidden. A name that does not resolve (in time) passes: the remote then shows as
    unavailable."""
    host, port = check_base_url(url)
    if _literal_address(host) is not None:
        return
    with anyio.move_on_after(timeout_s):
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return
        for *_, sockaddr in infos:
            try:
                address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            except ValueError:
                continue
            if is_forbidden_address(address):
                raise _refuse("resolves to a link-local or cloud metadata address")
