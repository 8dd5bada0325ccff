"""nginx snippets: the tokenizer, the interpreter and its refusals (pure)."""

from __future__ import annotations

import pytest

from haproxy_ingress import snippets
from haproxy_ingress.model import DesiredState
from haproxy_ingress.plan import plan
from haproxy_ingress.snippets import FIELD, PART, RECORD, Directive, Refused, interpret, parse
from haproxy_ingress.translate import DENY_ALL
from tests.kube import configmap, ingress, path, rule
from tests.unit.test_translate import run, with_defaults

NGINX = "nginx.ingress.kubernetes.io/"
SNIPPET = NGINX + "configuration-snippet"
SERVER = NGINX + "server-snippet"


def records(program: str) -> list[list[str]]:
    return [record.split(FIELD) for record in program.split(RECORD)] if program else []


def test_tokenizer_follows_nginx_quotes_escapes_comments_and_blocks() -> None:
    text = """
        add_header "X-A" 'it\\'s; {fine}' ; # a comment; deny all;
        more_set_headers X\\;Y ${host}x;
        if ($a = "b") { return 200 "ok"; }
    """
    assert parse(text) == (
        Directive("add_header", ("X-A", "it's; {fine}"), None, 2),
        Directive("more_set_headers", ("X;Y", "${host}x"), None, 3),
        Directive("if", ("($a", "=", "b", ")"), (Directive("return", ("200", "ok"), None, 4),), 4),
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('add_header X "open;', "unterminated"),
        ("add_header X y", "missing ';'"),
        ("add_header X y; }", "unexpected '}'"),
        ("if ($a) { return 200;", "unclosed block"),
        ('add_header X "a"b;', "after a quoted string"),
        ("; add_header X y;", "unexpected ';'"),
        ("a { " * 9 + "}" * 9, "nested deeper"),
        ("add_header X y;\n" * 201, "more than 200 directives"),
        ("#" * 20_000, "longer than"),
    ],
)
def test_malformed_snippets_are_refused(text: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        parse(text)
    assert interpret(text).refused and not interpret(text).program


def test_values_become_literal_text_and_known_variables() -> None:
    program = interpret(
        'set $x "pre-$host"; proxy_set_header X-A "$x|$http_x_forwarded_proto|%[src]|${arg_q}";'
    ).program
    ((*_, code, name, value, _, _),) = records(program)
    assert (code, name) == ("req_set", "x-a")
    assert value.split(PART) == [
        "Lpre-",
        "Vhost",
        "L|",
        "Vhdr:x-forwarded-proto",
        "L|%[src]|",  # an HAProxy fetch is text here: Lua sets it as data
        "Varg:q",
    ]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('add_header X "a\r\nInjected: 1";', "printable ASCII"),
        ('add_header X "a\\r\\nInjected: 1";', "printable ASCII"),  # nginx's escapes
        ('more_set_headers "X: \x00";', "printable ASCII"),
        ('add_header "X Y" z;', "not a header name"),
        ('add_header "X\r\nY" z;', "not a header name"),
        ("add_header Content-Length 0;", "may not be set"),
        ('more_set_input_headers "Transfer-Encoding: chunked";', "may not be set"),
        ("more_clear_headers *;", "not a header name"),
        ("add_header X $request_body;", "variable $request_body is not supported"),
        ("add_header X $1;", "variable $1 is not supported"),
        ("add_header X $;", "names no variable"),
        ("add_header X y z;", "can only be 'always'"),
        ("return 301 'https://a b';", "may not contain spaces"),
        ("return 302 javascript:alert(1);", "must start with"),
        ("return 999;", "200-599"),
        ("return 101;", "200-599"),
        ("proxy_method 'GET /x';", "not an HTTP method"),
        ("rewrite ^/a/(.*)$ /b/$1 break;", "only the redirect and permanent flags"),
        ("rewrite ^/a/(.*)$ https://x/$1 redirect;", "only the regexes"),
        ("if ($a ~ b) { return 403; }", "conditions are supported"),
        ("if ($host) { proxy_set_header X y; }", "not supported inside if"),
        ("set $host x;", "cannot be set"),
        ("location /x { add_header X y; }", "blocks (location"),
        ("proxy_pass http://evil;", "proxy_pass: directive not supported"),
        ("lua_need_request_body on;", "lua_need_request_body: directive not supported"),
        ("add_header X " + "a" * 5000 + ";", "longer than 4096"),
    ],
)
def test_outside_the_subset_or_hostile_is_refused_naming_why(text: str, names: str) -> None:
    result = interpret(text)
    assert result.program == ""
    assert names in result.refused


@pytest.mark.parametrize(
    "text",
    [
        "deny all;",
        "allow 10.0.0.0/8; deny all;",
        "auth_basic on;",
        "limit_req zone=x;",
        "satisfy any;",
        "location /admin { deny all; }",
        "add_header X y; proxy_buffering off; return 403;",  # unapplied: its return is lost
        'deny all; add_header X "unterminated',  # not nginx syntax at all
    ],
)
def test_access_rules_make_the_snippet_fail_closed(text: str) -> None:
    result = interpret(text)
    assert result.refused and result.access and not result.program


def test_return_rewrite_and_if_encode_as_redirects_and_replies() -> None:
    (guard,) = records(interpret('if ($http_x_token != "s") { return 403 "no"; }').program)
    assert guard == ["Vhdr:x-token", "!=", "Ls", "reply", "403", "Lno"]
    (https,) = records(
        interpret("if ($scheme = http) { return 301 https://$host$request_uri; }").program
    )
    assert https == [
        "Vscheme",
        "=",
        "Lhttp",
        "redirect",
        "301",
        "Lhttps://" + PART + "Vhost" + PART + "Vrequest_uri",
    ]
    (keep,) = records(interpret("rewrite ^ https://n.example/x permanent;").program)
    assert keep[3:] == ["redirect", "301", "Lhttps://n.example/x", "1"]
    (drop,) = records(interpret("rewrite ^/(.*)$ https://n.example/$1? redirect;").program)
    assert drop[3:] == ["redirect", "302", "Lhttps://n.example/" + PART + "Vuri1", "0"]
    (bare,) = records(interpret("return https://n.example/;").program)
    assert bare[3:5] == ["redirect", "302"]


def test_more_headers_options() -> None:
    ops = records(interpret("more_set_headers -s '404 500' -t text/html 'X-A: 1' 'X-B:';").program)
    assert [op[3:] for op in ops] == [
        ["res_set", "x-a", "L1", "404,500", "text/html"],
        ["res_set", "x-b", "", "404,500", "text/html"],
    ]
    (add,) = records(interpret("add_header X-C 2;").program)
    assert add[6] == snippets.ADD_HEADER_STATUSES
    assert records(interpret("add_header X-C 2 always;").program)[0][6] == ""
    assert interpret("more_set_headers -x 'X: 1';").refused


# --- through translate -----------------------------------------------------------


def events(state: DesiredState) -> dict[str, str]:
    return {p.field: p.event for p in state.problems}


def test_configuration_snippet_lands_on_its_routes_only() -> None:
    state = run(
        *with_defaults(
            ingress(
                "a", rule("a.example.com", path("/a")), annotations={SNIPPET: "add_header X y;"}
            ),
            ingress("b", rule("a.example.com", path("/b"))),
        )
    )
    by_path = {r.path: r for r in state.routes}
    assert by_path["/a"].options.snippet and by_path["/b"].options.snippet is None
    assert not state.problems
    # The program reaches HAProxy only base64-encoded in the opt-snippet map.
    (snippet_map,) = [e for n, e in state.maps.files() if n == "opt-snippet"]
    assert [k for k, _ in snippet_map] == [by_path["/a"].options.name]


def test_unsupported_directive_warns_naming_it_and_serves() -> None:
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule("a.example.com", path("/a")),
                annotations={SNIPPET: "proxy_buffering off;"},
            )
        )
    )
    (route,) = state.routes
    assert route.options.snippet is None and route.policy == ""
    (problem,) = state.problems
    assert problem.event == "Refused" and "proxy_buffering" in problem.reason


def test_access_snippet_fails_closed() -> None:
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule("a.example.com", path("/a")),
                annotations={SNIPPET: "allow 10.0.0.0/8; deny all;"},
            )
        )
    )
    (route,) = state.routes
    assert next(p for p in state.policies if p.name == route.policy).allow_sources == ()
    assert "AccessDenied" in events(state).values()


def test_allow_snippet_annotations_false_ignores_snippets_and_fails_closed() -> None:
    """The admin's switch (ingress-nginx's ConfigMap key): a snippet is then
    not applied, with a Warning, and one that would have refused requests
    (a return, an access directive) denies its paths instead. Off, no reload."""
    off = configmap({"allow-snippet-annotations": "false"})
    state = run(
        *with_defaults(
            off,
            ingress(
                "a", rule("a.example.com", path("/a")), annotations={SNIPPET: "add_header X y;"}
            ),
            ingress("b", rule("b.example.com", path("/b")), annotations={SNIPPET: "return 403;"}),
            ingress(
                "c",
                rule("c.example.com", path("/c")),
                annotations={"nginx.ingress.kubernetes.io/server-snippet": "deny all;"},
            ),
        )
    )
    by_path = {r.path: r for r in state.routes}
    assert by_path["/a"].options.snippet is None and by_path["/a"].policy == ""
    assert by_path["/b"].policy == DENY_ALL.name and by_path["/c"].policy == DENY_ALL.name
    refused = [p for p in state.problems if p.source.name == "a"]
    assert [p.event for p in refused] == ["Refused"]
    assert "allow-snippet-annotations" in refused[0].reason
    first = plan(None, state)
    on = run(*with_defaults(configmap({"allow-snippet-annotations": "true"})))
    assert on.settings.allow_snippets and not state.settings.allow_snippets
    assert "global settings changed" not in plan(first.target, on).reload_reasons


def test_server_snippet_needs_the_host_to_itself() -> None:
    state = run(
        *with_defaults(
            ingress(
                "owner",
                rule("a.example.com", path("/a")),
                annotations={SERVER: "add_header S 1;", SNIPPET: "add_header L 1;"},
                created="2026-01-01T00:00:00Z",
            ),
            ingress("sibling", rule("a.example.com", path("/b")), created="2026-01-02T00:00:00Z"),
            ingress(
                "late",
                rule("a.example.com", path("/c")),
                annotations={SERVER: "add_header S 2;"},
                created="2026-01-03T00:00:00Z",
            ),
            ingress(
                "intruder",
                rule("b.example.com", path("/x")),
                namespace="other",
                annotations={SERVER: "return 200 mine;"},
            ),
            ingress("victim", rule("b.example.com", path("/y"))),
        )
    )
    by_path = {r.path: r.options.snippet or "" for r in state.routes}
    server = interpret("add_header S 1;").program
    assert by_path["/a"] == server + RECORD + interpret("add_header L 1;").program
    assert by_path["/b"] == by_path["/c"] == server  # the host's routes, oldest owner's
    # Another namespace shares b.example.com: the snippet acts on its own
    # namespace's paths there, never on the other's.
    assert by_path["/x"] == interpret("return 200 mine;").program
    assert by_path["/y"] == ""
    reasons = {(p.source.name, p.event) for p in state.problems if "server-snippet" in p.field}
    assert reasons == {("late", "Conflict")}


def test_a_server_snippet_guarding_a_shared_host_still_guards_its_own_paths() -> None:
    """Before, any Ingress of another namespace on the host (one path is
    enough) switched the snippet off: its own paths were served unguarded."""
    guard = 'if ($http_x_token != "s") { return 403; }'
    state = run(
        *with_defaults(
            ingress("admin", rule("a.example.com", path("/admin")), annotations={SERVER: guard}),
            ingress("other", rule("a.example.com", path("/other")), namespace="tenant-b"),
        )
    )
    by_path = {r.path: r.options.snippet or "" for r in state.routes}
    assert by_path == {"/admin": interpret(guard).program, "/other": ""}


def test_a_guarding_server_snippet_that_loses_its_host_denies_its_paths() -> None:
    """Per host only the oldest Ingress's server-snippet applies (nginx: one per
    server). A younger one holding a return cannot be applied: fail closed."""
    state = run(
        *with_defaults(
            ingress(
                "first",
                rule("a.example.com", path("/a")),
                annotations={SERVER: "add_header S 1;"},
            ),
            ingress(
                "guarded",
                rule("a.example.com", path("/admin")),
                annotations={SERVER: "if ($remote_addr != 10.0.0.1) { return 403; }"},
                created="2026-01-02T00:00:00Z",
            ),
        )
    )
    admin = next(r for r in state.routes if r.path == "/admin")
    assert admin.policy == DENY_ALL.name
    assert {p.event for p in state.problems if p.source.name == "guarded"} >= {
        "Conflict",
        "AccessDenied",
    }
    first = next(r for r in state.routes if r.path == "/a")
    assert first.policy == ""


@pytest.mark.parametrize("key", ["configuration-snippet", "server-snippet"])
def test_a_snippet_return_is_an_access_rule_when_the_ingress_is_rejected(key: str) -> None:
    """An Ingress that refuses some requests with a snippet's return, rejected
    for another annotation, keeps its paths denying: left out, they would
    fall through to another Ingress's catch-all '/'."""
    state = run(
        *with_defaults(
            ingress(
                "admin",
                rule("a.example.com", path("/admin")),
                annotations={
                    NGINX + key: 'if ($http_x_token != "s") { return 403; }',
                    NGINX + "proxy-body-size": "lots",
                },
            ),
            ingress("catchall", rule("a.example.com", path("/")), created="2026-01-02T00:00:00Z"),
        )
    )
    admin = next((r for r in state.routes if r.path == "/admin"), None)
    assert admin is not None and admin.policy == DENY_ALL.name
    assert "AccessDenied" in {p.event for p in state.problems}


def test_an_auth_snippet_holding_a_return_fails_closed() -> None:
    """auth-snippet is never applied (auth-url requests take no snippet): a
    return in it is a refusal that cannot be honoured."""
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule("a.example.com", path("/a")),
                annotations={
                    NGINX + "auth-url": "http://auth.example.com/check",
                    NGINX + "auth-snippet": 'if ($http_x_key != "k") { return 401; }',
                },
            )
        )
    )
    (route,) = state.routes
    assert route.policy == DENY_ALL.name
    assert "AccessDenied" in events(state).values()


def test_auth_snippet_is_checked_but_not_applied() -> None:
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule("a.example.com", path("/a")),
                annotations={NGINX + "auth-snippet": "proxy_set_header X y;"},
            )
        )
    )
    assert state.routes[0].options.snippet is None
    assert list(events(state).values()) == ["Unsupported"]
    denied = run(
        *with_defaults(
            ingress(
                "a",
                rule("a.example.com", path("/a")),
                annotations={NGINX + "auth-snippet": "deny all;"},
            )
        )
    )
    assert "AccessDenied" in events(denied).values()


@pytest.mark.parametrize(
    "text", ["access_by_lua_block { ngx.exit(403) }", "limit_rate_after 1m;", "deny all;"]
)
def test_a_snippet_never_read_fails_closed_on_any_access_word(text: str) -> None:
    """stream-snippet (never honoured) holding an access rule: the Ingress's
    paths deny, by the same words the interpreter treats as access rules
    (snippets.ACCESS_WORD; access_by_lua passed with a Warning before)."""
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule("a.example.com", path("/a")),
                annotations={"nginx.ingress.kubernetes.io/stream-snippet": text},
            )
        )
    )
    (route,) = state.routes
    assert route.policy == DENY_ALL.name
