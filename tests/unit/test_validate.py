"""The allow-list validators and the renderer's last line of defence."""

from __future__ import annotations

import pytest

from haproxy_ingress import validate
from haproxy_ingress.haproxy.config import (
    UnsafeValueError,
    _Finalize,
    _Line,
    environment,
    map_file,
    safe_token,
)
from haproxy_ingress.settings import parse_configmap, parse_service_ref
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


@pytest.mark.parametrize(
    "value", ["a b", "a\nb", "a#b", 'a"b', "a\\b", "a;b", "", "a\x00b", "é", "a{b}"]
)
def test_the_template_refuses_unsafe_values_each_time(value: str) -> None:
    # The finalize remembers what passed; a refusal is never remembered.
    template = environment().from_string("x {{ value }}")
    for _ in range(2):
        with pytest.raises(UnsafeValueError):
            template.render(value=value)
    assert template.render(value="be_x") == template.render(value="be_x") == "x be_x"


def test_the_finalize_remembers_a_bounded_number_of_short_strings() -> None:
    finalize = _Finalize()
    assert finalize(8080) == "8080"
    assert finalize(_Line("server a 10.0.0.1:80")) == "server a 10.0.0.1:80"
    long = "a" * (_Finalize.LONGEST + 1)
    assert finalize(long) == long
    for index in range(_Finalize.KEEP):
        assert finalize(f"be_{index}") == f"be_{index}"
    assert len(finalize._safe) == _Finalize.KEEP  # neither the long one nor the others
    assert finalize("one_more") == "one_more"
    assert finalize._safe == {"one_more"}
    with pytest.raises(UnsafeValueError):
        finalize("a b")


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
        validate.cidr_list(
            " ".join(f"10.0.{i // 256}.{i % 256}" for i in range(validate.MAX_CIDRS + 1)), "f"
        )


# --- values the old validators accepted and HAProxy 2.6.12 refuses (issue class 3) ---


@pytest.mark.parametrize("value", ["0", "0ms", "000s", "0us", "0d"])
def test_durations_refuse_zero(value: str) -> None:
    # haproxy -c: "invalid value 0 for argument 'inter'"; a zero timeout means
    # "forever" (accepted with a warning only).
    with pytest.raises(Invalid, match="more than zero"):
        validate.duration(value, "f")


def test_durations_accept_haproxy_limits() -> None:
    # 1us rounds up to 1 ms; 2147483647 ms (24d) is HAProxy's largest timer.
    assert validate.duration("1us", "f") == "1us"
    assert validate.duration("24d", "f") == "24d"
    assert validate.duration("596h", "f") == "596h"
    for over in ["25d", "597h", "35792m", "2147484s"]:
        with pytest.raises(Invalid):
            validate.duration(over, "f")


@pytest.mark.parametrize(
    "value",
    ["fe80::%eth0", "fe80::1%'", "fe80::1%}", "fe80::1%25", "\uff11.2.3.4", "10.0.0.1/32"],
)
def test_ip_address_refuses_scope_ids_and_non_ascii(value: str) -> None:
    with pytest.raises(Invalid):
        validate.ip_address(value, "f")


@pytest.mark.parametrize("word", ["fe80::%eth0/64", "fe80::%'/64", "fe80::%}/64", "fe80::1%1"])
def test_cidr_list_refuses_scope_ids(word: str) -> None:
    with pytest.raises(Invalid, match="scope"):
        validate.cidr_list(f"10.0.0.0/8 {word}", "f")


def test_cidr_list_counts_distinct_networks_against_one_line_of_words() -> None:
    # 56 networks + the line's 8 own words = HAProxy's 64 words per line.
    fits = " ".join(f"10.0.{i // 256}.{i % 256}" for i in range(validate.MAX_CIDRS))
    assert len(validate.cidr_list(fits, "f")) == validate.MAX_CIDRS
    assert validate.cidr_list(" ".join(["10.0.0.1"] * 500), "f") == ("10.0.0.1/32",)
    with pytest.raises(Invalid):
        validate.cidr_list(fits + " 10.0.1.0", "f")
    assert validate.cidr_list("10.0.0.0/255.0.0.0", "f") == ("10.0.0.0/8",)


@pytest.mark.parametrize(
    "value", ["\u212aelvin.example.com", "ex\u0130.com", "caf\u00e9.example", "a\u2028b.com"]
)
def test_host_refuses_non_ascii_before_lowering(value: str) -> None:
    # U+212A KELVIN SIGN lowers to ASCII 'k': the check must come first.
    with pytest.raises(Invalid, match="ASCII"):
        validate.host(value, "f")


def test_boolean_is_ascii_strict() -> None:
    assert validate.boolean(" TRUE ", "f") is True
    with pytest.raises(Invalid):
        validate.boolean("\u0442rue", "f")  # Cyrillic te


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("1", True), ("t", True), ("T", True), ("True", True), ("0", False), ("f", False)],
)
def test_boolean_reads_what_ingress_nginx_reads(value: str, parsed: bool) -> None:
    """ingress-nginx parses booleans with Go's strconv.ParseBool."""
    assert validate.boolean(value, "f") is parsed


@pytest.mark.parametrize("value", ["yes", "on", "2", "", "tru", "\u0661"])
def test_boolean_refuses_other_words(value: str) -> None:
    with pytest.raises(Invalid, match="true or false"):
        validate.boolean(value, "f")


@pytest.mark.parametrize("port", ["\u0663", "\u00b2", "8" * 5000, "0" * 6 + "80", "65536"])
def test_service_ref_ports_are_ascii_digits(port: str) -> None:
    with pytest.raises(Invalid):
        parse_service_ref(f"ns/name:{port}", "f")


@pytest.mark.parametrize(
    ("kind", "metadata"),
    [
        ("Ingress", {"name": "a", "namespace": "x\ny"}),
        ("Ingress", {"name": "a\nb", "namespace": "ns"}),
        ("Ingress", {"name": "a", "namespace": "a.b"}),  # namespaces are labels
        ("Ingress", {"name": "a" * 254, "namespace": "ns"}),
        ("Ingress", {"name": ["a"], "namespace": "ns"}),
        ("Ingress", {"name": "a"}),
        ("Service", {"name": "a.b", "namespace": "ns"}),  # Services are RFC 1035 labels
        ("Service", {"name": "1a", "namespace": "ns"}),
        ("Secret", {"name": "A", "namespace": "ns"}),
        ("EndpointSlice", {"name": "a_b", "namespace": "ns"}),
        ("IngressClass", {"name": "a", "namespace": "ns"}),
        ("IngressClass", "x"),
    ],
)
def test_object_metadata_refuses_what_the_api_server_refuses(kind: str, metadata: object) -> None:
    with pytest.raises(Invalid, match=r"^metadata"):
        validate.object_metadata(kind, {"metadata": metadata})


def test_object_metadata_accepts_maximal_names() -> None:
    name = ".".join(["a" * 63] * 3) + "." + "a" * 61  # 253 characters
    assert validate.object_metadata("Secret", {"metadata": {"name": name, "namespace": "n"}}) == (
        "n",
        name,
    )
    assert validate.object_metadata("IngressClass", {"metadata": {"name": "c"}}) == ("", "c")


def test_printable_keeps_names_and_escapes_the_rest() -> None:
    assert validate.printable("ns") == "ns"
    assert validate.printable("") == ""
    assert "\n" not in validate.printable("a\nb")
    assert len(validate.printable("x" * 10_000)) <= 60


@pytest.mark.parametrize("value", ["haproxy-ingress", "edge/1.0", "a.b_c-d/2.6.12"])
def test_server_header_accepts_product_tokens(value: str) -> None:
    assert safe_token(validate.product(value, "f")) == value


@pytest.mark.parametrize(
    "value", ["a b", "%[src]", "a#b", 'a"b', "a/b/c", "/1", "a/", "é", "a" * 65, "a\r\nX: y"]
)
def test_server_header_refuses_what_is_not_one_product(value: str) -> None:
    with pytest.raises(Invalid):
        validate.product(value, "f")


def test_server_header_key_sets_and_clears_the_header() -> None:
    def server(data: dict[str, str]) -> tuple[str | None, list[str]]:
        settings, _, problems = parse_configmap({"metadata": {}, "data": data})
        return settings.server_header, [p.message for p in problems]

    assert server({}) == ("haproxy-ingress", [])
    assert server({"server-header": "edge/1"}) == ("edge/1", [])
    assert server({"server-header": ""}) == (None, [])
    assert server({"server-header": "%[src]"})[0] == "haproxy-ingress"
