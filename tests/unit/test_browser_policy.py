"""The browser's URL and address policy (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from executors.browser.errors import UrlNotAllowed
from executors.browser.policy import (
    UrlPolicy,
    address_problem,
    destination,
    parse_allow,
)

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.5", "a private address"),
        ("172.16.3.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12::1", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("100.64.0.1", "not a public address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("64:ff9b::a00:1", "a private address"),
        ("2002:7f00:1::", "a loopback address"),
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str, problem: str) -> None:
    assert address_problem(ip(address)) == problem


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ip(address)) is None


def test_allow_list_networks_and_hosts() -> None:
    allow = parse_allow(
        ["127.0.0.1/32", " 10.0.0.0/8 ", "::1", "intranet.example", "*.corp.example"]
    )
    policy = UrlPolicy(allow)
    assert policy.address_problem(ip("127.0.0.1")) is None
    assert policy.address_problem(ip("127.0.0.2")) == "a loopback address"
    assert policy.address_problem(ip("10.200.0.1")) is None
    assert policy.address_problem(ip("::1")) is None
    assert allow.allows_host("intranet.example") and allow.allows_host("INTRANET.example.")
    assert allow.allows_host("a.b.corp.example") and not allow.allows_host("corp.example.evil")
    assert policy.pick("intranet.example", [ip("192.168.0.9")]) == ip("192.168.0.9")


@pytest.mark.parametrize("bad", ["not a host", "10.0.0.0/33", "http://x", "a..b"])
def test_bad_allow_entries_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="not a network or host name"):
        parse_allow([bad])


def test_only_http_and_https_urls() -> None:
    assert destination("https://Example.COM/x") == ("https", "example.com", 443)
    assert destination("http://[::1]:8080/") == ("http", "::1", 8080)
    for url, reason in [
        ("file:///etc/passwd", "file: is not allowed"),
        ("chrome://version", "chrome: is not allowed"),
        ("javascript:alert(1)", "javascript: is not allowed"),
        ("data:text/html,hi", "data: is not allowed"),
        ("//no-scheme/", "a URL without a scheme is not allowed"),
        ("http:///nohost", "has no host"),
        ("http://x:99999/", "not a valid URL"),
    ]:
        with pytest.raises(UrlNotAllowed, match=reason):
            destination(url)


def test_literal_addresses_are_checked_before_any_request() -> None:
    policy = UrlPolicy()
    with pytest.raises(UrlNotAllowed, match=r"169\.254\.169\.254 is a cloud metadata address"):
        policy.check_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(UrlNotAllowed, match="::1 is a loopback address"):
        policy.check_url("http://[::1]/")
    assert policy.check_url("https://example.com/").host == "example.com"  # names: by the proxy


def test_pick_takes_the_first_allowed_address_or_says_why_none() -> None:
    policy = UrlPolicy(parse_allow(["127.0.0.1/32"]))
    assert policy.pick("both.test", [ip("10.0.0.1"), ip("127.0.0.1")]) == ip("127.0.0.1")
    with pytest.raises(UrlNotAllowed, match=r"evil.test resolves to 10.0.0.1, a private address"):
        policy.pick("evil.test", [ip("10.0.0.1"), ip("192.168.0.1")])
    with pytest.raises(UrlNotAllowed, match=r"^10.0.0.1 is a private address$"):
        policy.pick("10.0.0.1", [ip("10.0.0.1")])
    with pytest.raises(UrlNotAllowed, match="did not resolve"):
        policy.pick("empty.test", [])
