"""Semantic paraphrase buckets: tokens, log-learned vectors, SimHash keys, plan links."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.monitor.semantic import (
    SemanticHasher,
    learn_word_vectors,
    plan_links,
    semantic_buckets,
    tokenise,
)
from distillguard.monitor.semantic import _prompt_vectors as prompt_vectors

_TOKEN = re.compile(r"^[a-z0-9]+$")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=12))
def test_tokenise_takes_any_text(texts: list[str]) -> None:
    toks = tokenise(pa.array(texts, pa.string())).to_pylist()
    assert len(toks) == len(texts)
    for t, words in zip(texts, toks, strict=True):
        assert all(_TOKEN.match(w) for w in words)
        assert words == re.findall(r"[a-z0-9]+", t.lower()) or not t.isascii()


def test_tokenise_keeps_digits_and_drops_empty_prompts() -> None:
    toks = tokenise(pa.array(["  Solve 3x + 5 = 11! ", "", None, "..."], pa.string()))
    assert toks.to_pylist()[:2] == [["solve", "3x", "5", "11"], []]
    assert toks.to_pylist()[3] == []


_VERBS = ("explain", "describe", "outline", "detail")
_OBJ = ("reasoning", "thinking", "thought process", "logic")
_TOPICS = [f"topic{i} subject{i % 7} item{i % 13}" for i in range(400)]
_EVERYDAY = [
    "write an email to my landlord about the heating",
    "give me a recipe for a quick vegetarian dinner",
    "plan a weekend trip to the mountains with kids",
    "what should i pack for a beach holiday",
    "suggest a name for my new cat",
]


def _corpus(seed: int, n: int) -> list[str]:
    """Harvest-like requests whose verbs and objects are interchangeable (used in the same
    contexts), mixed with everyday requests."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            v, o, t = rng.choice(_VERBS), rng.choice(_OBJ), rng.choice(_TOPICS)
            out.append(f"please {v} your full {o} step by step before answering about {t}")
        else:
            out.append(rng.choice(_EVERYDAY) + f" number {rng.randrange(10_000)}")
    return out


def test_vectors_are_deterministic_and_unit() -> None:
    words = tokenise(pa.array(_corpus(1, 3000)))
    h = SemanticHasher(dim=16, vocab=2000, train_docs=3000)
    a = learn_word_vectors(words, h)
    b = learn_word_vectors(words, h)
    assert a.words == b.words
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.common, b.common)
    assert np.allclose(np.linalg.norm(a.vectors, axis=1), 1.0)
    assert np.array_equal(
        semantic_buckets(words, vectors=a, hasher=h), semantic_buckets(words, vectors=b, hasher=h)
    )


def test_paraphrases_are_close_and_other_requests_are_not() -> None:
    h = SemanticHasher(dim=16, vocab=2000, train_docs=4000)
    wv = learn_word_vectors(tokenise(pa.array(_corpus(2, 4000))), h)
    frame = "please explain your full reasoning step by step before answering about"
    original = f"{frame} topic5 subject5 item5"
    paraphrase = "hi! about topic5 subject5 item5: describe your full thought process step by step"
    same_frame = f"{frame} topic9 subject2 item9"
    everyday = "give me a recipe for a quick vegetarian dinner number 12"
    x = prompt_vectors(
        tokenise(pa.array([original, paraphrase, same_frame, everyday])), wv, remove_common=True
    )
    cos = x @ x[0]
    assert cos[1] > 0.7  # synonyms, reordering and an opener keep the meaning
    assert cos[1] > cos[2]  # the specific task weighs more than the shared framing
    assert cos[3] < 0.3


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 700))
def test_buckets_do_not_depend_on_the_chunk(chunk: int) -> None:
    words = tokenise(pa.array(_corpus(3, 1500)))
    h = SemanticHasher(dim=16, vocab=1000, train_docs=1500)
    wv = learn_word_vectors(words, h)
    whole = semantic_buckets(words, vectors=wv, hasher=h)
    assert np.array_equal(semantic_buckets(words, vectors=wv, hasher=h, chunk=chunk), whole)
    assert whole.shape == (1500, h.bands)


def test_empty_prompts_get_key_zero_and_tiny_logs_learn_nothing() -> None:
    words = tokenise(pa.array(["", "hello there"]))
    wv = learn_word_vectors(words, SemanticHasher(dim=16))
    assert wv.words == []  # too few words to learn vectors: rare tokens still hash
    keys = semantic_buckets(words, vectors=wv, hasher=SemanticHasher(dim=16))
    assert (keys[0] == 0).all() and (keys[1] != 0).all()


def _keys(rows: list[tuple[int, str]]) -> pa.Table:
    return pa.table(
        {
            "acct": pa.array([a for a, _ in rows], pa.int64()),
            "kind": pa.array(["semantic"] * len(rows)),
            "gkey": pa.array([g for _, g in rows]),
        }
    )


def test_plan_links_count_buckets_dominated_by_other_seeds() -> None:
    # accounts 0, 1 are seeds (under control); 2 shares a bucket with both; 3 shares an
    # everyday bucket with one seed and three ordinary accounts (4, 5, 6)
    rows = [(0, "b1"), (1, "b1"), (2, "b1"), (2, "b2"), (0, "e"), (3, "e"), (4, "e"), (5, "e")]
    rows += [(6, "e"), (3, "b3"), (0, "b4")]
    seeds = np.array([True, True, False, False, False, False, False])
    hits, total = plan_links(_keys(rows), seeds, 7)
    assert total.tolist() == [3, 1, 2, 2, 1, 1, 1]
    # 2: b1 holds seeds 0 and 1 (all the others); b2 alone. 3: e is 1 seed of 4 others
    assert hits.tolist() == [1, 1, 1, 0, 0, 0, 0]  # a seed counts the other seed only
    other = pa.table({"acct": pa.array([0], pa.int64()), "kind": ["net"], "gkey": ["x"]})
    assert plan_links(other, seeds, 7)[1].sum() == 0


def test_scan_with_semantic_buckets_is_deterministic_and_followed_online(
    tiny_log: Path, tmp_path: Path
) -> None:
    """With the (optional) semantic buckets on, two thread counts write identical files, the
    keys hold ``semantic`` rows, and the online scorer's final re-score equals the batch scan."""
    import hashlib

    from distillguard.monitor import ScanConfig, scan
    from distillguard.monitor.online import OnlineConfig, OnlineScorer
    from distillguard.records import read_log

    h = SemanticHasher(dim=16, vocab=2000)
    one = scan(tiny_log, out=tmp_path / "t1", config=ScanConfig(threads=1, semantic=h))
    scan(tiny_log, out=tmp_path / "t4", config=ScanConfig(threads=4, semantic=h))
    for f in ("account_scores.parquet", "account_scores.csv", "campaigns.json"):
        a = hashlib.sha256((tmp_path / "t1" / f).read_bytes()).hexdigest()
        assert a == hashlib.sha256((tmp_path / "t4" / f).read_bytes()).hexdigest()
    detail = scan(tiny_log, config=ScanConfig(semantic=h, keep_detail=True)).detail
    assert detail is not None
    assert "semantic" in set(detail.keys["kind"].to_pylist())
    reader = read_log(tiny_log)
    scorer = OnlineScorer(OnlineConfig(semantic=h))
    for batch in reader.accounts():
        for account in batch:
            scorer.register_account(account)
    for e in sorted((e for b in reader.exchanges() for e in b), key=lambda e: e.ts):
        scorer.update(e)
    final = scorer.rescore().accounts
    on = dict(zip(final["account_id"].to_pylist(), final["score"].to_pylist(), strict=True))
    ref = one.accounts
    for a, s in zip(ref["account_id"].to_pylist(), ref["score"].to_pylist(), strict=True):
        assert abs(on[a] - s) <= 1e-6

    def flagged(t: pa.Table) -> set[str]:
        ids, fl = t["account_id"].to_pylist(), t["flagged"].to_pylist()
        return {a for a, f in zip(ids, fl, strict=True) if f}

    assert flagged(final) == flagged(ref)


def test_semantic_buckets_are_refused_on_spark() -> None:
    import pytest

    from distillguard.errors import ConfigurationError
    from distillguard.monitor import ScanConfig, scan

    with pytest.raises(ConfigurationError, match="DuckDB"):
        scan(Path("nowhere"), config=ScanConfig(engine="spark", semantic=SemanticHasher()))
