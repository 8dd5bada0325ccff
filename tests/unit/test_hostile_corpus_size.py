"""The hostile corpus (run through haproxy -c in tests/haproxy/test_hostile_corpus.py) stays big."""

from __future__ import annotations

from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hostile" / "corpus.yaml"


def test_corpus_is_big_enough() -> None:
    cases = yaml.safe_load(CORPUS.read_text())["cases"]
    assert len(cases) >= 50
    assert sum(bool(case["expect"]) for case in cases) >= 50
