"""The online scorer: agreement with the batch scan, sample sketch, provisional scores, API."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from distillguard.monitor import ScanResult, scan
from distillguard.monitor.online import OnlineConfig, OnlineScorer, RiskUpdate, gateway_scorer
from distillguard.monitor.templates import MinHasher, template_buckets
from distillguard.records import Exchange, Message, read_log
from distillguard.sim import load_scenario, simulate
from distillguard.testing import make_account, make_exchange


def _replay(log: Path, config: OnlineConfig) -> tuple[OnlineScorer, dict[str, RiskUpdate]]:
    """Feed a log to an online scorer in time order; the last risk seen per account."""
    reader = read_log(log)
    scorer = OnlineScorer(config)
    for batch in reader.accounts():
        for account in batch:
            scorer.register_account(account)
    exchanges = [e for batch in reader.exchanges() for e in batch]
    exchanges.sort(key=lambda e: e.ts)
    last: dict[str, RiskUpdate] = {}
    for e in exchanges:
        last[e.account_id] = scorer.update(e)
    return scorer, last


def _agreement(online: pa.Table, batch: pa.Table) -> tuple[set[str], float, float]:
    """Flagged accounts on which they disagree, max |score difference|, Spearman rho."""
    a = dict(zip(online["account_id"].to_pylist(), online["score"].to_pylist(), strict=True))
    b = dict(zip(batch["account_id"].to_pylist(), batch["score"].to_pylist(), strict=True))
    assert set(a) == set(b)
    fa = {
        x
        for x, f in zip(
            online["account_id"].to_pylist(), online["flagged"].to_pylist(), strict=True
        )
        if f
    }
    fb = {
        x
        for x, f in zip(batch["account_id"].to_pylist(), batch["flagged"].to_pylist(), strict=True)
        if f
    }
    keys = sorted(a)
    diff = max(abs(a[k] - b[k]) for k in keys)
    rho = float(stats.spearmanr([a[k] for k in keys], [b[k] for k in keys]).statistic)
    return fa ^ fb, diff, rho


# Tolerances: the online scorer builds the batch scan's features from the same exchanges (the
# same bottom-k content sample, the same keys) and scores them with the same function, so the
# only differences are floating-point summation orders (Welford vs SQL variance): scores agree to
# 1e-6 and the flagged sets are identical. An account within 1e-6 of the threshold could flip;
# none does on these scenarios.
SCORE_TOL = 1e-6
MIN_RHO = 0.999


def test_final_scores_equal_the_batch_scan_on_tiny(tiny_log: Path, tiny_scan: ScanResult) -> None:
    # periodic full and partial re-scores during the replay must not change the final result
    scorer, _ = _replay(tiny_log, OnlineConfig(rescore_min=2000, partial_every=32))
    final = scorer.rescore()
    flips, diff, rho = _agreement(final.accounts, tiny_scan.accounts)
    assert not flips
    assert diff <= SCORE_TOL
    assert rho >= MIN_RHO
    assert sorted(c.campaign_id for c in final.campaigns) == sorted(
        c.campaign_id for c in tiny_scan.campaigns
    )


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped ``small`` scenario (about 100k exchanges, three campaigns)."""
    out = tmp_path_factory.mktemp("small") / "log"
    simulate(load_scenario("small"), out=out, seed=7)
    return out


def test_final_scores_equal_the_batch_scan_on_small(small_log: Path, tmp_path: Path) -> None:
    batch = scan(small_log)
    scorer, last = _replay(small_log, OnlineConfig(rescore_min=40_000))
    final = scorer.rescore()
    flips, diff, rho = _agreement(final.accounts, batch.accounts)
    assert not flips
    assert diff <= SCORE_TOL
    assert rho >= MIN_RHO
    # the provisional scores seen during the replay already find the campaigns
    labels = pq.read_table(small_log / "labels.parquet")
    truth = {
        a
        for a, c in zip(
            labels["account_id"].to_pylist(), labels["campaign_id"].to_pylist(), strict=True
        )
        if c is not None
    }
    flagged = {a for a, r in last.items() if r.flagged}
    assert len(flagged & truth) / max(len(flagged), 1) >= 0.95
    assert len(flagged & truth) / len(truth & set(last)) >= 0.8


def _ex(i: int, account: str, prompt: str, ts: float, ip: str = "203.0.113.7") -> Exchange:
    return make_exchange(
        f"ex-{account}-{i}",
        account_id=account,
        offset_s=ts,
        ip=ip,
        messages=(Message("user", prompt),),
    )


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 12))
def test_content_sample_does_not_depend_on_arrival_order(rng: random.Random, k: int) -> None:
    prompts = [
        "think step by step and show all your hidden reasoning about tax law",
        "what is the capital of france",
        "act as a reward model and score this answer against the rubric",
        "write a python function that reverses a list",
    ]
    exs = [_ex(i, "a", prompts[i % 4] + f" case {i}", 60.0 * i) for i in range(30)]
    one = OnlineScorer(OnlineConfig(per_account_sample=k))
    for e in exs:
        one.update(e)
    shuffled = list(exs)
    rng.shuffle(shuffled)
    two = OnlineScorer(OnlineConfig(per_account_sample=k))
    for e in shuffled:
        two.update(e)
    f1, k1 = one.snapshot()
    f2, k2 = two.snapshot()
    assert f1.n_sample[0] == f2.n_sample[0] == min(k, 30)
    for name in ("k_elicit", "k_cot", "k_grade"):
        assert getattr(f1, name)[0] == getattr(f2, name)[0]
    assert sorted(k1["gkey"].to_pylist()) == sorted(k2["gkey"].to_pylist())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "0", "x"]), max_size=12))
def test_band_keys_equal_the_batch_minhash(words: list[str]) -> None:
    from distillguard.monitor.online import _Sketch

    hasher = MinHasher()
    batch = template_buckets(pa.array([words], pa.list_(pa.string())), np.zeros(1), hasher=hasher)
    online = _Sketch(hasher).band_keys(words)
    if not words:
        assert online == ()
    else:
        assert list(online) == [int(x) for x in batch.keys[0]]


def test_new_account_is_linked_provisionally() -> None:
    pay = "card-123"
    scorer = OnlineScorer(OnlineConfig(rescore_min=10**9, partial_every=1))
    for i in range(8):
        scorer.register_account(make_account(f"c{i}", payment_fingerprint=pay))
    rng = random.Random(5)
    words = ["cat", "tax", "rust", "song", "bread", "train", "moon", "chess", "soup", "golf"]
    for i in range(60):  # ordinary users: own addresses, varied questions
        scorer.register_account(make_account(f"u{i}"))
        for j in range(6):
            topic = " ".join(rng.sample(words, 3))
            scorer.update(
                _ex(
                    j,
                    f"u{i}",
                    f"tell me about {topic} {j}",
                    3000.0 * j + rng.random() * 900,
                    ip=f"198.51.{i}.{j}",
                )
            )
    for i in range(7):
        for j in range(6):
            scorer.update(
                _ex(
                    j,
                    f"c{i}",
                    f"think step by step and show your reasoning on item {j}",
                    600.0 * j,
                    ip=f"192.0.2.{i}",
                )
            )
    first = scorer.rescore()
    assert first.campaigns, "the seven accounts on one card form a campaign"
    risk = scorer.update(
        _ex(0, "c7", "think step by step and show your reasoning on x", 0.0, ip="192.0.2.9")
    )
    assert risk.provisional
    assert risk.cluster_id == first.campaigns[0].campaign_id
    assert risk.cluster_risk > 0
    assert scorer.score("u0").cluster_id != risk.cluster_id
    assert scorer.score("u0").risk < risk.risk
    clusters = scorer.clusters()
    assert clusters[0]["cluster_id"] == first.campaigns[0].campaign_id and clusters[0]["campaign"]


def test_unknown_account_and_bad_config() -> None:
    scorer = OnlineScorer()
    r = scorer.score("nobody")
    assert r.account_risk == 0.0 and r.cluster_id is None and r.risk == 0.0
    assert scorer.clusters() == []
    with pytest.raises(ValueError):
        OnlineConfig(per_account_sample=0)
    with pytest.raises(ValueError):
        OnlineConfig(partial_every=0)
    with pytest.raises(ValueError):
        OnlineConfig(rescore_min=0)


def test_gateway_scorer_rescoring_in_the_background() -> None:
    from distillguard.config import Settings

    scorer = gateway_scorer(Settings())
    assert scorer.config.background
    scorer = OnlineScorer(OnlineConfig(background=True, rescore_min=20, rescore_factor=0.0))
    for i in range(60):
        scorer.observe(_ex(i, f"a{i % 3}", f"hello number {i}", 30.0 * i))
    scorer.wait()
    assert scorer.last_scan is not None
    assert scorer.last_scan.accounts.num_rows == 3
    assert not scorer.score("a0").provisional or scorer.score("a0").account_risk >= 0


def test_exchanges_before_flagged_on_tiny(tiny_log: Path) -> None:
    from distillguard.monitor.evaluate import exchanges_before_flagged

    labels = pq.read_table(tiny_log / "labels.parquet")
    truth = dict(
        zip(labels["account_id"].to_pylist(), labels["campaign_id"].to_pylist(), strict=True)
    )
    timing = exchanges_before_flagged(
        tiny_log, truth, config=OnlineConfig(rescore_min=1000, rescore_factor=0.0)
    )
    assert set(timing) == {c for c in truth.values() if c is not None}
    t = timing["hydra-tiny"]
    assert t.exchanges_before_flagged is not None
    assert 0 < t.exchanges_before_flagged < t.total_exchanges
    assert t.flagged_at_us is not None
    # with a full re-score every 1,000 exchanges the campaign cannot hide for long
    assert t.share_before_flagged is not None and t.share_before_flagged < 0.5
