"""Unit tests of the signals: classifiers, MinHash LSH, the capped link graph, calibration."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.monitor._corpus import generate_corpus
from distillguard.monitor.elicitation import TOKEN_SQL, elicitation_model, tokens_of
from distillguard.monitor.graph import GraphParams, build_graph
from distillguard.monitor.scoring import binomial_evidence, robust_z
from distillguard.monitor.templates import MinHasher, shingle_hashes, template_buckets


def test_classifiers_held_out_accuracy() -> None:
    model = elicitation_model()
    for rep in model.held_out:
        assert rep.n == 3000
        assert rep.accuracy >= 0.95 and rep.recall >= 0.9


def test_classifiers_on_unseen_wording_and_hard_negatives() -> None:
    model = elicitation_model()
    p = model.predict_proba(
        [
            "Please lay out your complete chain of thought step by step before you answer:"
            " why is the sky blue?",
            "Act as a judge: grade the following answer from 1 to 10 and justify the score.",
            "Rate the sentiment (positive/negative) of this review: great phone.",
            "Give me step by step instructions to install docker.",
            "What is the capital of France?",
        ]
    )
    assert p[0, 0] > 0.5 and p[1, 1] > 0.5
    assert (p[2:] < 0.5).all()


def test_sql_tokens_match_python_tokens() -> None:
    texts = [t.text for t in generate_corpus(50, seed=5)] + ["Hello, World 42!", ""]
    con = duckdb.connect()
    con.register("src", pa.table({"prompt": texts, "i": list(range(len(texts)))}))
    sql = TOKEN_SQL.format(source="src")
    head, tail = sql.split("FROM", 1)
    rows = con.sql(f"SELECT i, {head} AS t FROM {tail} ORDER BY i").fetchall()
    for i, toks in rows:
        assert sorted(toks) == tokens_of(texts[i])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from([f"w{i}" for i in range(40)]), min_size=8, max_size=30),
    st.integers(min_value=0, max_value=8),
)
def test_minhash_estimates_jaccard(words: list[str], edits: int) -> None:
    other = list(words)
    for j in range(min(edits, len(other))):
        other[j] = f"x{j}"
    hasher = MinHasher(num_perm=120, bands=10)
    sh, off = shingle_hashes(pa.array([words, other]))
    sig = hasher.signatures(sh, off)
    est = float(np.mean(sig[0] == sig[1]))
    a = {tuple(words[i : i + 3]) for i in range(len(words) - 2)}
    b = {tuple(other[i : i + 3]) for i in range(len(other) - 2)}
    true = len(a & b) / len(a | b)
    assert abs(est - true) < 0.25


def test_minhash_agrees_with_datasketch() -> None:
    from datasketch import MinHash

    rng = np.random.default_rng(0)
    docs = [[f"w{x}" for x in rng.integers(0, 30, size=20)] for _ in range(40)]
    ours = MinHasher(num_perm=128, bands=8)
    sh, off = shingle_hashes(pa.array(docs))
    sig = ours.signatures(sh, off)
    diffs = []
    for i in range(0, 40, 2):
        ms = []
        for d in (docs[i], docs[i + 1]):
            m = MinHash(num_perm=128, seed=1)
            for k in range(len(d) - 2):
                m.update(" ".join(d[k : k + 3]).encode())
            ms.append(m)
        diffs.append(abs(ms[0].jaccard(ms[1]) - float(np.mean(sig[i] == sig[i + 1]))))
    assert float(np.mean(diffs)) < 0.1


TEMPLATE = "explain the hidden reasoning an expert would follow to answer the question"
UNRELATED = "completely unrelated words that share nothing with the others"


def _words(text: str) -> list[str]:
    return text.split()


def test_near_duplicate_prompts_share_a_bucket() -> None:
    base = _words(TEMPLATE)
    docs = [[*base, topic, "in", "detail"] for topic in ("cats", "dogs", "tax", "sql")]
    docs.append(_words(UNRELATED))
    b = template_buckets(pa.array(docs), np.arange(5))
    shared = [len(set(b.keys[:4, j].tolist())) < 4 for j in range(b.keys.shape[1])]
    assert any(shared)
    assert not (b.keys[4][None, :] == b.keys[:4]).any()


def test_big_groups_do_not_make_cliques() -> None:
    n = 3000
    keys = pa.table(
        {
            "acct": pa.array(np.arange(n, dtype=np.int64)),
            "kind": ["net"] * n,
            "gkey": ["10.0.0.0/24"] * n,
        }
    )
    g = build_graph(
        duckdb.connect(),
        keys,
        np.full(n, -1),
        n_accounts=n,
        params=GraphParams(min_edge_weight=0.0),
    )
    assert 0 < g.n_edges <= 3 * n


def test_small_groups_link_and_same_org_discount() -> None:
    keys = pa.table(
        {"acct": [0, 1, 2, 3], "kind": ["payment"] * 4, "gkey": ["pm1", "pm1", "pm2", "pm2"]}
    )
    orgs = np.array([-1, -1, 7, 7])
    g = build_graph(
        duckdb.connect(), keys, orgs, n_accounts=5, params=GraphParams(min_edge_weight=0.0)
    )
    w = {(int(a), int(b)): float(x) for a, b, x in zip(g.src, g.dst, g.weight, strict=True)}
    assert w[(0, 1)] > w[(2, 3)] > 0
    assert g.community[0] == g.community[1] and g.community[4] not in (g.community[0],)


@given(st.lists(st.integers(-(10**6), 10**6), min_size=3, max_size=100))
def test_robust_z_is_shift_invariant(xs: list[int]) -> None:
    x = np.array(xs, dtype=np.float64)
    z1 = robust_z(x)
    z2 = robust_z(x + 1000.0)
    assert np.allclose(z1, z2, atol=1e-5 * (1 + np.abs(z1).max()))


@given(st.integers(1, 200), st.floats(0.01, 0.5))
def test_binomial_evidence_is_monotone(n: int, p0: float) -> None:
    k = np.arange(n + 1)
    p = binomial_evidence(k, np.full(n + 1, n), p0)
    assert (np.diff(p) <= 1e-12).all() and p[0] == 1.0
