"""The TLS Secret cache: one parse per Secret version, same answers as no cache."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor
from typing import Any

import pytest

from haproxy_ingress import tls
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.translate import tls_secrets_named, translate
from haproxy_ingress.validate import Invalid
from tests.certs import secret_data
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service
from tests.kube import tls_secret as make_secret


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the Secrets actually parsed."""
    seen: list[str] = []
    real = tls.certificate_from_secret

    def counting(secret: Any) -> tls.CheckedCertificate:
        seen.append(secret["metadata"]["name"])
        return real(secret)

    monkeypatch.setattr(tls, "certificate_from_secret", counting)
    return seen


def test_a_secret_is_parsed_once_per_content(parses: list[str]) -> None:
    cache = tls.CertificateCache()
    secret = make_secret("a", *secret_data("a.example.com"))
    first = cache.get(secret)
    assert cache.get(dict(secret)) is first
    assert parses == ["a"]
    renewed = make_secret("a", *secret_data("a.example.com"))
    assert cache.get(renewed).pem != first.pem
    assert parses == ["a", "a"]


def test_a_refusal_is_remembered_and_raised_again(parses: list[str]) -> None:
    cache = tls.CertificateCache()
    crt, _ = secret_data("a.example.com")
    _, other_key = secret_data("b.example.com")
    mismatched = make_secret("bad", crt, other_key)
    for _ in range(2):
        with pytest.raises(Invalid) as refused:
            cache.get(mismatched)
        assert refused.value.field == "data[tls.key]"
    assert parses == ["bad"]


def test_sweep_forgets_secrets_not_read_since_the_last_sweep() -> None:
    cache = tls.CertificateCache()
    kept = make_secret("kept", *secret_data("kept.example.com"))
    gone = make_secret("gone", *secret_data("gone.example.com"))
    cache.get(kept)
    cache.get(gone)
    cache.sweep()
    assert len(cache) == 2
    cache.get(kept)
    cache.sweep()
    assert len(cache) == 1


def test_shapes_the_digest_cannot_cover_are_parsed_not_cached() -> None:
    cache = tls.CertificateCache()
    with pytest.raises(Invalid):
        cache.get({"metadata": {"name": "x"}, "type": "kubernetes.io/tls", "data": None})
    assert len(cache) == 0


def test_translate_is_the_same_with_and_without_the_cache() -> None:
    crt, key = secret_data("a.example.com")
    objects = [
        ingress_class(default=True),
        service("web"),
        endpoint_slice("web", endpoint("10.0.0.1")),
        make_secret("a-tls", crt, key),
        make_secret("broken", crt, secret_data("z.example.com")[1]),
        {
            **ingress("web", rule("a.example.com", path("/", "web"))),
            "spec": {
                "tls": [
                    {"hosts": ["a.example.com"], "secretName": "a-tls"},
                    {"hosts": ["b.example.com"], "secretName": "broken"},
                ],
                "rules": [rule("a.example.com", path("/", "web"))],
            },
        },
    ]
    options = TranslateOptions()
    view = ClusterView.from_objects(objects, options)[0]
    cache = tls.CertificateCache()
    uncached = translate(view, options)
    assert translate(view, options, certificate_cache=cache) == uncached
    assert len(cache) == 2  # both Secrets, the refused one too
    assert translate(view, options, certificate_cache=cache) == uncached
    assert len(uncached.certificates) == 1
    assert any(p.event == "InvalidCertificate" for p in uncached.problems)


def test_many_new_secrets_are_checked_at_once_with_the_same_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crt, _ = secret_data("a.example.com")
    good = [make_secret(f"good{i}", *secret_data(f"h{i}.example.com")) for i in range(12)]
    bad = [make_secret(f"bad{i}", crt, secret_data(f"z{i}.example.com")[1]) for i in range(6)]
    copy = make_secret("copy", good[0]["data"]["tls.crt"], good[0]["data"]["tls.key"])
    odd = {"metadata": {"name": "odd"}, "type": "kubernetes.io/tls", "data": None}
    secrets = [*good, copy, *bad, odd, good[3]]
    assert len(good) + len(bad) >= tls.PARALLEL_CHECKS
    parsed: list[tuple[str, str]] = []  # (Secret, thread)
    real = tls.certificate_from_secret

    def recorded(secret: Any) -> tls.CheckedCertificate:
        parsed.append((secret["metadata"]["name"], threading.current_thread().name))
        return real(secret)

    monkeypatch.setattr(tls, "certificate_from_secret", recorded)
    cache = tls.CertificateCache()
    results = cache.get_all(secrets)
    # Each content once (not the copy of good0, not good3 again), the new ones on threads.
    names = sorted(name for name, _ in parsed)
    assert names == sorted([s["metadata"]["name"] for s in [*good, *bad]] + ["odd"])
    assert {thread.split("_")[0] for name, thread in parsed if name != "odd"} == {"tls-check"}
    for secret, result in zip(secrets, results, strict=True):
        try:
            expected: object = real(secret)
        except Invalid as error:
            expected = (error.field, error.reason)
        assert ((result.field, result.reason) if isinstance(result, Invalid) else result) == (
            expected
        )
    assert results[len(good)] is results[0]  # the copy got good0's entry
    parsed.clear()
    assert cache.get_all(secrets[:3]) == results[:3]
    assert parsed == []


def _answers(results: list[tls.CheckedCertificate | Invalid]) -> list[object]:
    return [(r.field, r.reason) if isinstance(r, Invalid) else r for r in results]


def test_checks_made_ahead_in_another_process_are_the_checks_made_here(
    parses: list[str],
) -> None:
    crt, _ = secret_data("a.example.com")
    good = [make_secret(f"good{i}", *secret_data(f"h{i}.example.com")) for i in range(3)]
    bad = make_secret("bad", crt, secret_data("z.example.com")[1])
    late = make_secret("late", *secret_data("late.example.com"))
    context = multiprocessing.get_context("fork")
    cache = tls.CertificateCache()
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        cache.check_ahead([*good, bad], pool)
        results = cache.get_all([good[1], bad, late, good[0]])
    # Checked in the worker (whose own copy of `parses` saw them), but `late` here.
    assert parses == ["late"]
    expected = [tls.CertificateCache().get_all([s])[0] for s in (good[1], bad, late, good[0])]
    assert _answers(results) == _answers(expected)
    # What was asked for is kept as any check; good[2], checked but not asked
    # for, is not (it would never be swept), and is checked here when asked.
    assert len(cache) == 4
    parses.clear()
    cache.get(good[2])
    assert parses == ["good2"]


def test_checks_lost_with_their_process_are_made_here(parses: list[str]) -> None:
    secret = make_secret("a", *secret_data("a.example.com"))

    class Broken(Executor):
        def submit(self, *args: object, **kwargs: object) -> Future[Any]:
            future: Future[Any] = Future()
            future.set_exception(BrokenExecutor("the worker was killed"))
            return future

    cache = tls.CertificateCache()
    cache.check_ahead([secret], Broken())
    assert cache.get(secret) == tls.certificate_from_secret(secret)
    assert parses == ["a", "a"]


def test_a_refusal_survives_the_trip_between_processes() -> None:
    refusal = pickle.loads(pickle.dumps(Invalid("data[tls.key]", "is not a key")))
    assert (type(refusal), refusal.field, refusal.reason) == (
        Invalid,
        "data[tls.key]",
        "is not a key",
    )
    assert str(refusal) == "data[tls.key]: is not a key"


def test_the_secrets_named_are_those_of_spec_tls_in_the_ingress_namespace() -> None:
    data = secret_data("a.example.com")
    secrets = [
        make_secret("a-tls", *data),
        make_secret("b-tls", *data),
        make_secret("unnamed", *data),
        {**make_secret("a-tls", *data), "metadata": {"name": "a-tls", "namespace": "other"}},
    ]
    web = ingress("web", rule("a.example.com", path("/", "web")))
    named = [
        {**web, "spec": {**web["spec"], "tls": [{"secretName": "a-tls"}, {"secretName": "b-tls"}]}},
        {**web, "spec": {**web["spec"], "tls": [{"secretName": "a-tls"}, {"secretName": "gone"}]}},
        {**web, "spec": {**web["spec"], "tls": [None, {"secretName": 3}, "x"]}},
        {**web, "spec": {**web["spec"], "tls": {"secretName": "unnamed"}}},
        {**web, "spec": None},
        # Metadata translate will refuse: skipped here, never a crash.
        {**web, "metadata": "oops", "spec": {**web["spec"], "tls": [{"secretName": "a-tls"}]}},
    ]
    odd_secret = {**make_secret("c-tls", *data), "metadata": "oops"}
    objects = [*secrets, odd_secret, *named]
    view = ClusterView.from_objects(objects, TranslateOptions(), compact=False)[0]
    assert tls_secrets_named(view) == [secrets[0], secrets[1]]
