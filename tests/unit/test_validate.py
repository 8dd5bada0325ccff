"""The allow-list validators and the renderer's last line of defence."""

from __future__ import annotations

import pytest

from haproxy_ingress import validate
from haproxy_ingress.haproxy.config import UnsafeValueError, map_file, safe_token
from haproxy_ingress.settings import parse_service_ref
from haproxy_ingress.validate import Invalid


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", "example.com"),
        ("EXAMPLE.com", "example.com"),
        ("*.example.com", "*.example.com"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("localhost", "localhost"),
    ],
)
def test_host_accepts(value: str, expected: str) -> None:
    assert validate.host(value, "f") == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "*",
        "*.",
        ".example.com",
        "example..com",
        "ex_ample.com",
        "1.2.3.4",
        "::1",
        "a.*.b",
        "**.a",
        "a b",
        "a\tb",
        "é.com",
        None,
        5,
        "a" * 254,
    ],
)
def test_host_refuses(value: object) -> None:
    with pytest.raises(Invalid):
        validate.host(value, "f")


@pytest.mark.parametrize("value", ["/", "/a/b", "/a-b_c.d~e", "/%41%2f", "/a:b@c", "/!$&'()*+,="])
def test_path_accepts(value: str) -> None:
    assert validate.path(value, "f") == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a",
        "/a b",
        "/a;b",
        "/a#b",
        "/a?b",
        "/%4",
        "/%zz",
        "/\x7f",
        "/a\rb",
        '/"',
        "/<",
        "/{",
        "/|",
        "/`",
        "/^",
    ],
)
def test_path_refuses(value: str) -> None:
    with pytest.raises(Invalid):
        validate.path(value, "f")


def test_port_name_rules() -> None:
    assert validate.port_name("http", "f") == "http"
    assert validate.port_name("h2c-8080", "f") == "h2c-8080"
    for bad in ["8080", "a--b", "-a", "a-", "toolongportname16", "HTTP", ""]:
        with pytest.raises(Invalid):
            validate.port_name(bad, "f")


def test_port_number_rules() -> None:
    assert validate.port_number(1, "f") == 1
    for bad in [0, 65536, True, "80", 1.5]:
        with pytest.raises(Invalid):
            validate.port_number(bad, "f")


def test_durations_and_integers() -> None:
    assert validate.duration("500ms", "f") == "500ms"
    assert validate.duration("5", "f") == "5"
    assert validate.duration(" 24d ", "f") == "24d"
    for bad in ["5 s", "-1s", "1y", "1.5s", "5s;", "", "9999999999s", "25d", "999999h"]:
        with pytest.raises(Invalid):
            validate.duration(bad, "f")
    assert validate.integer("42", "f", minimum=0, maximum=100) == 42
    with pytest.raises(Invalid):
        validate.integer("101", "f", minimum=0, maximum=100)
    with pytest.raises(Invalid):
        validate.integer(True, "f", minimum=0, maximum=100)


def test_ip_addresses_are_normalised() -> None:
    assert validate.ip_address("fd00:0::1", "f") == "fd00::1"
    with pytest.raises(Invalid):
        validate.ip_address("10.0.0.1 ", "f")


def test_service_ref_flag_format() -> None:
    ref = parse_service_ref("ns/name:http", "f")
    assert (ref.namespace, ref.name, ref.port) == ("ns", "name", "http")
    assert parse_service_ref("ns/name:80", "f").port == "80"
    for bad in ["ns/name", "name:80", "ns/Name:80", "ns/name:0", "ns/na me:80"]:
        with pytest.raises(Invalid):
            parse_service_ref(bad, "f")


@pytest.mark.parametrize(
    "value", ["a b", "a\nb", "a#b", 'a"b', "a\\b", "a;b", "", "a\x00b", "é", "a{b}"]
)
def test_renderer_refuses_unsafe_tokens(value: str) -> None:
    with pytest.raises(UnsafeValueError):
        safe_token(value)
    with pytest.raises(UnsafeValueError):
        map_file([(value, "be_x")])


def test_renderer_accepts_what_validators_produce() -> None:
    for token in ["*.example.com/a/%41", "be_ns_svc_80", "/var/lib/x.map", "[fd00::1]:80"]:
        assert safe_token(token) == token


def test_cidr_lists_are_normalised_and_hostile_ones_refused() -> None:
    assert validate.cidr_list("10.0.0.0/8, 192.168.1.7/24 2001:db8::/32", "f") == (
        "10.0.0.0/8",
        "192.168.1.0/24",
        "2001:db8::/32",
    )
    assert validate.cidr_list("127.0.0.1", "f") == ("127.0.0.1/32",)
    for bad in [
        "",
        "10.0.0.0/33",
        "10.0.0.0/8 }",
        "any",
        "10.0.0.0/8\nserver x",
        None,
        "1.2.3.4/8#",
    ]:
        with pytest.raises(Invalid):
            validate.cidr_list(bad, "f")
    with pytest.raises(Invalid):
        validate.cidr_list(" ".join(f"10.0.{i // 256}.{i % 256}" for i in range(300)), "f")
