"""Which URLs and addresses the browser may reach. Pure: names are resolved by the caller.

By default only public unicast addresses: no loopback, private, link-local, shared (CGNAT),
multicast, reserved or cloud-metadata addresses, whatever name leads to them.
`CHASER_BROWSER_ALLOW` lists networks (`10.0.0.0/8`, `127.0.0.1`) and host names
(`intranet.example`, `*.corp.example`) that are reachable anyway.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

from executors.browser.errors import UrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"http": 80, "https": 443}
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_ENTRY = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*\.?")


class Destination(NamedTuple):
    """Where a URL points: its scheme, lower-case host (no brackets) and port."""

    scheme: str
    host: str
    port: int


class AllowList(NamedTuple):
    """Networks and host names the deployment lets the browser reach despite the defaults."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    def allows_host(self, host: str) -> bool:
        """Whether a host name is allowed by name (exactly, or by a `*.` suffix entry)."""
        host = host.lower().rstrip(".")
        if host in self.hosts:
            return True
        return any(h.startswith("*.") and host.endswith(h[1:]) for h in self.hosts)

    def allows_ip(self, ip: IPAddress) -> bool:
        """Whether an address falls in an allowed network."""
        return any(ip.version == net.version and ip in net for net in self.networks)


def parse_allow(entries: Iterable[str]) -> AllowList:
    """Parse `CHASER_BROWSER_ALLOW` entries; raises ValueError naming a bad one."""
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        if not HOST_ENTRY.fullmatch(entry):
            raise ValueError(f"not a network or host name: {raw!r}")
        hosts.add(entry.rstrip("."))
    return AllowList(tuple(networks), frozenset(hosts))


def _embedded_v4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), or the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_problem(ip: IPAddress) -> str | None:
    """Why an address is not reachable by default (`a loopback address`, ...), or None."""
    ip = _embedded_v4(ip)
    checks: Sequence[tuple[bool, str]] = (
        (ip in METADATA, "a cloud metadata address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def destination(url: str) -> Destination:
    """Scheme, host and port of an http(s) URL; raises UrlNotAllowed for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlNotAllowed(f"{url!r} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        shown = f"{scheme}:" if scheme else "a URL without a scheme"
        raise UrlNotAllowed(f"{shown} is not allowed: only http and https URLs may be loaded")
    if not parts.hostname:
        raise UrlNotAllowed(f"{url!r} has no host")
    return Destination(scheme, parts.hostname.lower(), port or SCHEMES[scheme])


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string spells directly (`10.0.0.1`, `::1`), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class UrlPolicy:
    """The deployment's URL policy: scheme check, then an address check on every connection."""

    def __init__(self, allow: AllowList | None = None) -> None:
        self.allow = allow or AllowList()

    def check_url(self, url: str) -> Destination:
        """Refuse a URL that can be refused without DNS: bad scheme, or a refused literal IP."""
        dest = destination(url)
        ip = literal_ip(dest.host)
        if ip is not None and not self.allow.allows_host(dest.host):
            problem = self.address_problem(ip)
            if problem is not None:
                raise UrlNotAllowed(f"{dest.host} is {problem}")
        return dest

    def address_problem(self, ip: IPAddress) -> str | None:
        """Why this deployment refuses an address, or None when it may be connected to."""
        if self.allow.allows_ip(ip):
            return None
        return address_problem(ip)

    def pick(self, host: str, addresses: Sequence[IPAddress]) -> IPAddress:
        """The first resolved address that may be connected to; UrlNotAllowed when none."""
        if not addresses:
            raise UrlNotAllowed(f"{host} did not resolve")
        if self.allow.allows_host(host):
            return addresses[0]
        first_problem = ""
        for ip in addresses:
            problem = self.address_problem(ip)
            if problem is None:
                return ip
            first_problem = first_problem or f"{ip}, {problem}"
        if literal_ip(host) is not None:
            raise UrlNotAllowed(f"{host} is {first_problem.split(', ', 1)[1]}")
        raise UrlNotAllowed(f"{host} resolves to {first_problem}")
