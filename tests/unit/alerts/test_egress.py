"""Webhook egress policy: internal targets refused unless allowed; names checked as resolved."""
from __future__ import annotations

import ipaddress

import pytest

from services.alerts.egress import (
    EgressPolicy,
    WebhookTargetRefused,
    WebhookTargetUnresolved,
    internal_kind,
    parse_networks,
)


@pytest.mark.parametrize(("ip", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "link-local"),
    ("10.1.2.3", "private"), ("192.168.0.10", "private"), ("172.16.5.4", "private"),
    ("fd00::1", "private"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("100.64.1.1", "shared address space"), ("::ffff:127.0.0.1", "loopback"),
    ("fec0::1", "site-local"), ("2002:7f00:1::", "loopback (embedded in IPv6)"),
    ("192.0.2.1", "private"), ("198.18.0.1", "private"),
    ("8.8.8.8", None), ("2001:4860:4860::8888", None),
])
def test_internal_kind(ip: str, kind: str | None) -> None:
    assert internal_kind(ipaddress.ip_address(ip)) == kind


def test_parse_networks() -> None:
    assert [str(n) for n in parse_networks(" 10.20.0.0/16, 127.0.0.1 ,")] == ["10.20.0.0/16",
                                                                               "127.0.0.1/32"]
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks("10.0.0.0/33")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9200/_bulk", "http://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/hook", "http://[::1]:8080/", "http://localhost:6379/", "http://a.localhost/",
])
def test_internal_literals_are_refused_as_written(url: str) -> None:
    with pytest.raises(WebhookTargetRefused, match="YUQING_WEBHOOK_ALLOW_NETWORKS"):
        EgressPolicy().check_written(url)


def test_allowed_network_and_public_hosts_pass() -> None:
    EgressPolicy.from_setting("10.20.0.0/16").check_written("https://10.20.3.4/hook")
    EgressPolicy().check_written("https://93.184.216.34/hook")
    EgressPolicy().check_written("https://hooks.example/desk")  # names: checked when resolved
    with pytest.raises(WebhookTargetRefused):
        EgressPolicy.from_setting("10.20.0.0/16").check_written("https://10.21.0.1/hook")


def _resolver(answers: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"Name or service not known: {host}")
        return answers[host]
    return resolve


async def test_names_are_checked_on_every_address_they_resolve_to() -> None:
    policy = EgressPolicy(resolver=_resolver({
        "hooks.example": ["93.184.216.34"],
        "sneaky.example": ["93.184.216.34", "10.0.0.7"],
        "meta.example": ["169.254.169.254"]}))
    await policy.pin("https://hooks.example/desk")
    with pytest.raises(WebhookTargetRefused, match="sneaky.example resolves to a private") as e:
        await policy.pin("https://sneaky.example/x")
    assert "10.0.0.7" not in str(e.value)  # delivery logs are readable: no internal addresses
    with pytest.raises(WebhookTargetRefused, match="link-local"):
        await policy.pin("http://meta.example/latest")
    with pytest.raises(WebhookTargetUnresolved, match="did not resolve"):  # retried, not refused
        await policy.pin("https://nowhere.example/")


async def test_pin_sends_to_the_checked_address_under_the_original_name() -> None:
    policy = EgressPolicy(resolver=_resolver({"hooks.example": ["93.184.216.34"],
                                              "v6.example": ["2606:2800:220:1::1"]}))
    t = await policy.pin("https://hooks.example/desk/in?x=1")
    assert t.url == "https://93.184.216.34:443/desk/in?x=1"
    assert t.headers["Host"] == "hooks.example" and t.extensions == {"sni_hostname": "hooks.example"}
    t = await policy.pin("http://v6.example:8080")
    assert t.url == "http://[2606:2800:220:1::1]:8080/" and t.headers["Host"] == "v6.example:8080"
    assert t.extensions == {}
    literal = await policy.pin("https://93.184.216.34/x")
    assert literal.url == "https://93.184.216.34/x" and literal.headers == {}


async def test_slow_dns_is_unresolved_not_refused() -> None:
    import asyncio

    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return ["93.184.216.34"]

    with pytest.raises(WebhookTargetUnresolved):
        await EgressPolicy(resolver=slow, resolve_timeout_s=0.05).pin("https://hooks.example/")


@pytest.mark.parametrize("url", ["http://[", "http://[::1", "https://host:port/x"])
def test_urls_urlsplit_refuses_are_refused_not_raised(url: str) -> None:
    """The fuzzer's ``http://[`` once reached urlsplit's ValueError: a 500, not a 422."""
    with pytest.raises(WebhookTargetRefused, match="not a valid URL|bad port"):
        EgressPolicy.from_setting("").check_written(url)
