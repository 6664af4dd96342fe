"""Where webhooks may go: no requests into the host's own or private networks by default.

A subscription's URL is chosen by whoever holds a ``subscribe`` key, and the delivery worker
POSTs to it from inside the deployment. Without a guard that is a server-side request forgery
channel: ``http://169.254.169.254/...`` (cloud metadata), ``http://127.0.0.1:9200/...``
(Elasticsearch), ``http://10.0.0.5/...`` (anything internal). So a URL is refused when its
host *is or resolves to* a loopback, private, link-local, shared-address, multicast, reserved
or unspecified address, unless an operator allowed that network
(``YUQING_WEBHOOK_ALLOW_NETWORKS``, e.g. ``10.20.0.0/16`` for an on-prem receiver).

Checked twice: when a subscription is created or changed (the host as written: an IP
literal or a ``localhost`` name is a 422 at once; other names are not resolved there, since
the API host's DNS need not be the worker's), and before every delivery (every address the
name resolves to then, so a name re-pointed at an internal address later is caught too).
A refused delivery is dead-lettered at once with the reason, never retried.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from services.core.errors import InputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: internal, not "private"


class WebhookTargetRefused(InputError):
    """The webhook URL points (or resolves) to a network deliveries may not reach."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="webhook_target_refused")


def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    """``"10.20.0.0/16, 127.0.0.1"`` -> networks; a bad entry is a ValueError naming it."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network (CIDR or address): {part!r}") from exc
    return tuple(out)


def internal_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (None when it is)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return internal_kind(ip.ipv4_mapped)
    for kind, hit in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                      ("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast),
                      ("private", ip.is_private), ("reserved", ip.is_reserved),
                      ("shared address space", ip in _SHARED)):
        if hit:
            return kind
    return None


async def _system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class EgressPolicy:
    """Networks webhooks may reach although internal (everything public is allowed)."""

    allowed: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=_system_resolver, compare=False, repr=False)

    @classmethod
    def from_setting(cls, spec: str) -> EgressPolicy:
        return cls(parse_networks(spec))

    def _check_ip(self, url_host: str, ip: IPAddress) -> None:
        kind = internal_kind(ip)
        if kind is None or any(ip in net for net in self.allowed if net.version == ip.version):
            return
        shown = url_host if url_host == str(ip) else f"{url_host} ({ip})"
        raise WebhookTargetRefused(
            f"webhook host {shown} is a {kind} address, which deliveries may not reach; use a "
            "public URL, or have the operator allow that network in YUQING_WEBHOOK_ALLOW_NETWORKS")

    def check_written(self, url: str) -> None:
        """The URL as written: IP literals and ``localhost`` names (no DNS)."""
        host, _port = _host_port(url)
        if host == "localhost" or host.endswith(".localhost"):
            self._check_ip(host, ipaddress.ip_address("127.0.0.1"))
            return
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: resolved and checked before each delivery
        self._check_ip(host, ip)

    async def check_resolved(self, url: str) -> None:
        """Every address the URL's host resolves to now (before each delivery)."""
        self.check_written(url)
        host, port = _host_port(url)
        try:
            ipaddress.ip_address(host)
            return  # a literal: already checked
        except ValueError:
            pass
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:
            raise WebhookTargetRefused(f"webhook host {host} does not resolve: {exc}") from exc
        if not addresses:
            raise WebhookTargetRefused(f"webhook host {host} resolves to no address")
        for a in addresses:
            self._check_ip(host, ipaddress.ip_address(a.split("%", 1)[0]))


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise WebhookTargetRefused(f"webhook URL has no host: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookTargetRefused(f"webhook URL has a bad port: {exc}") from exc
    return host, port
