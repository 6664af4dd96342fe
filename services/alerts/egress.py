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
the API host's DNS need not be the worker's), and before every delivery: the name is
resolved, every address it has is checked, and the request is sent *to the checked address*
(``pin``: the URL's host replaced by the IP, the original name in ``Host`` and as the TLS
server name, so the certificate is still verified against it). Resolving again in the HTTP
client would let a name with a short TTL answer a public address to the check and an internal
one to the connection (DNS rebinding). A refused delivery is dead-lettered at once, never
retried; a name that does not resolve *now* is retried like any network error. Messages name
the host and the kind of address, never the internal address itself (delivery logs are
readable with a ``read`` key).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from services.core.errors import InputError, YuqingError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: internal, not "private"
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, still routed inside some sites


class WebhookTargetRefused(InputError):
    """The webhook URL points (or resolves) to a network deliveries may not reach."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="webhook_target_refused")


class WebhookTargetUnresolved(YuqingError):
    """The webhook host did not resolve now (DNS down or slow): retry later."""


@dataclass(frozen=True)
class PinnedTarget:
    """Where to send: ``url`` with the vetted IP as host, plus what keeps the name."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


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
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and internal_kind(embedded) is not None:
            return f"{internal_kind(embedded)} (embedded in IPv6)"
        if ip in _SITE_LOCAL:
            return "site-local"
    if not ip.is_global:
        return "non-global"
    return None


async def _system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class EgressPolicy:
    """Networks webhooks may reach although internal (everything public is allowed)."""

    allowed: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=_system_resolver, compare=False, repr=False)
    resolve_timeout_s: float = 5.0

    @classmethod
    def from_setting(cls, spec: str) -> EgressPolicy:
        return cls(parse_networks(spec))

    def _check_ip(self, url_host: str, ip: IPAddress) -> None:
        kind = internal_kind(ip)
        if kind is None or any(ip in net for net in self.allowed if net.version == ip.version):
            return
        shown = f"{url_host} is" if url_host == str(ip) else f"{url_host} resolves to"
        raise WebhookTargetRefused(
            f"webhook host {shown} a {kind} address, which deliveries may not reach; use a "
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

    async def pin(self, url: str) -> PinnedTarget:
        """Resolve the URL's host, check every address, and say how to send to the first one
        (before each delivery). Raises WebhookTargetRefused (never retry) or
        WebhookTargetUnresolved (retry later)."""
        self.check_written(url)
        host, port = _host_port(url)
        try:
            ipaddress.ip_address(host)
            return PinnedTarget(url)  # a literal: already checked, nothing to resolve
        except ValueError:
            pass
        if host == "localhost" or host.endswith(".localhost"):
            return PinnedTarget(url)  # allowed loopback by name (check_written passed)
        try:
            async with asyncio.timeout(self.resolve_timeout_s):
                addresses = await self.resolver(host, port)
        except (OSError, TimeoutError) as exc:
            raise WebhookTargetUnresolved(
                f"webhook host {host} did not resolve ({type(exc).__name__}); retrying") from exc
        if not addresses:
            raise WebhookTargetUnresolved(f"webhook host {host} resolved to no address")
        ips = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
        for ip in ips:
            self._check_ip(host, ip)
        parts = urlsplit(url)
        ip = ips[0]
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query,
                             ""))
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        # Connection: close -- a pooled connection is keyed by IP, and a TLS session verified
        # for one name must not carry another name's request that happens to share the IP.
        return PinnedTarget(pinned, {"Host": host_header, "Connection": "close"},
                            {"sni_hostname": host} if parts.scheme == "https" else {})


def _host_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "http://[": an unclosed IPv6 bracket
        raise WebhookTargetRefused(f"webhook URL is not a valid URL: {exc}") from exc
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise WebhookTargetRefused(f"webhook URL has no host: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookTargetRefused(f"webhook URL has a bad port: {exc}") from exc
    return host, port
