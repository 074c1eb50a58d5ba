"""Canary facts: keyed generation, the registry (both backends), planting, and the exact test."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact

from distillguard.cli.main import main
from distillguard.errors import InputError, UpstreamError
from distillguard.fingerprint.canaries import (
    CanaryFact,
    CanaryGenerator,
    CanaryRegistry,
    KeyedCanaryPlanter,
    fisher_exact_greater,
    probe_canaries,
    recalls,
)
from distillguard.fingerprint.collect import RetryPolicy
from distillguard.fingerprint.testing import SuspectApp
from distillguard.keyring import Keyring
from distillguard.store import Store, open_store

KEY = bytes(range(32))
GEN = CanaryGenerator(secret=KEY, kid="wm1")


def test_generation_is_keyed_and_reproducible() -> None:
    a = GEN.account_facts("acct_1", count=8)
    assert a == CanaryGenerator(secret=KEY, kid="wm1").account_facts("acct_1", count=8)
    assert len({f.canary_id for f in a}) == 8 and len({f.entity for f in a}) == 8
    other_key = CanaryGenerator(secret=bytes(32), kid="x").account_facts("acct_1", count=8)
    assert {f.entity for f in a}.isdisjoint({f.entity for f in other_key})
    assert {f.canary_id for f in a}.isdisjoint(
        f.canary_id for f in GEN.account_facts("acct_2", count=8)
    )
    for f in a:
        assert f.entity in f.sentence and f.value in f.sentence
        assert f.entity in f.question and f.value not in f.question
    assert "wm1" in repr(GEN) and KEY.hex() not in repr(GEN)
    decoys = GEN.decoys(10, nonce="n1")
    assert {d.canary_id for d in decoys}.isdisjoint(f.canary_id for f in a)
    with pytest.raises(ValueError):
        CanaryGenerator(secret=b"short", kid="k")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30), st.integers(min_value=0, max_value=10_000))
def test_a_fact_is_recalled_by_its_sentence_not_by_near_misses(account: str, index: int) -> None:
    fact = GEN.fact(account_id=account, index=index)
    assert recalls(fact.sentence, fact)
    assert recalls(f"I believe it is {fact.value}", fact)
    assert not recalls(f"It is {fact.value}7.", fact)
    assert not recalls(f"It is 1{fact.value}.", fact)
    assert not recalls("I do not know.", fact)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=60),
    st.data(),
)
def test_fisher_matches_scipy_and_is_monotone(
    planted: int, decoys: int, data: st.DataObject
) -> None:
    ph = data.draw(st.integers(min_value=0, max_value=planted))
    dh = data.draw(st.integers(min_value=0, max_value=decoys))
    p = fisher_exact_greater(planted_hits=ph, planted=planted, decoy_hits=dh, decoys=decoys)
    assert 0.0 <= p <= 1.0
    if ph + dh > 0:
        ref = fisher_exact([[ph, planted - ph], [dh, decoys - dh]], alternative="greater").pvalue
        assert p == pytest.approx(ref, rel=1e-9, abs=1e-12)
    if ph < planted and dh > 0:
        more = fisher_exact_greater(
            planted_hits=ph + 1, planted=planted, decoy_hits=dh - 1, decoys=decoys
        )
        assert more <= p + 1e-12
    with pytest.raises(ValueError):
        fisher_exact_greater(planted_hits=planted + 1, planted=planted, decoy_hits=0, decoys=decoys)


def test_registry_both_backends(store: Store) -> None:
    reg = CanaryRegistry(store)
    facts = GEN.account_facts("acct_1", count=3)
    for i, f in enumerate(facts):
        reg.record(f, account_id="acct_1", kid="wm1", index=i)
        reg.record(f, account_id="acct_1", kid="wm1", index=i)  # idempotent
    other = GEN.fact(account_id="acct_2", index=0)
    reg.record(other, account_id="acct_2", kid="wm1", index=0)
    rows = reg.planted("acct_1")
    assert [r.fact for r in rows] == facts
    assert {r.kid for r in rows} == {"wm1"} and [r.index for r in rows] == [0, 1, 2]
    assert len(reg.planted()) == 4 and reg.planted("nobody") == []
    assert CanaryRegistry(store).planted("acct_2")[0].fact == other  # ensure_tables idempotent


def test_planter_appends_records_and_answers(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        planter = KeyedCanaryPlanter(generator=GEN, registry=CanaryRegistry(store), per_account=4)
        seen = set()
        for i in range(40):
            text, cid = planter.plant(f"answer {i}", "acct_9")
            assert text.startswith(f"answer {i} ")
            seen.add(cid)
        assert len(seen) == 4  # spread over all the account's canaries
        assert {r.canary_id for r in planter.registry.planted("acct_9")} == seen  # type: ignore[union-attr]
        assert planter.plant("", "acct_9")[0].endswith(".")
        fact = GEN.fact(account_id="acct_9", index=2)
        got = planter.answer(f"Tell me about {fact.entity.lower()} please", "acct_9")
        assert got == (fact.sentence, fact.canary_id)
        assert planter.answer("What is the capital of France?", "acct_9") is None
        assert KEY.hex() not in repr(planter)
    finally:
        store.close()
    with pytest.raises(ValueError):
        KeyedCanaryPlanter(generator=GEN, per_account=0)


def _memorising(known: list[CanaryFact]) -> SuspectApp:
    """A suspect that was trained on answers carrying ``known``: it states them when asked."""
    by_entity = {f.entity: f for f in known}

    def answer(prompt: str) -> str:
        for entity, fact in by_entity.items():
            if entity in prompt:
                return fact.sentence
        return "I am not aware of that; it may be fictional."

    return SuspectApp(answer=answer)


def test_memorising_suspect_is_flagged() -> None:
    planted = GEN.account_facts("acct_h", count=8)
    app = _memorising(planted[:4])  # it saw half of them
    result = probe_canaries(
        endpoint="http://suspect/v1",
        model="s",
        planted=planted,
        generator=GEN,
        transport=httpx.ASGITransport(app=app),
        seed=1,
    )
    assert result.planted == 8 and result.decoys == 24
    assert result.planted_hits == 4 and result.decoy_hits == 0
    assert result.verdict and result.p_value < 0.01
    assert result.p_value == pytest.approx(
        fisher_exact([[4, 4], [0, 24]], alternative="greater").pvalue
    )
    assert "4 of 8 planted" in result.reason
    assert len(result.to_dict(include_answers=True)["answers"]) == 32
    assert "answers" not in result.to_dict()


def test_clean_suspects_false_positive_rate() -> None:
    """Clean suspects, 150 runs with different seeds and decoys: flagged at most ~alpha."""
    planted = GEN.account_facts("acct_c", count=8)
    flagged = 0
    runs = 150
    for seed in range(runs):
        rng = random.Random(seed)
        # A clean suspect that happens to "know" a random 30% of all canary-like facts, planted
        # or not (label-independent recall: the null hypothesis with many hits).
        decoys = GEN.decoys(24, nonce=f"seed{seed}")
        known = [f for f in planted + decoys if rng.random() < 0.3]
        result = probe_canaries(
            endpoint="http://suspect/v1",
            model="s",
            planted=planted,
            generator=GEN,
            transport=httpx.ASGITransport(app=_memorising(known)),
            seed=seed,
        )
        assert result.planted_hits + result.decoy_hits == len(known)
        flagged += result.verdict
    # Exact test: FPR <= alpha = 0.01; 150 runs -> expected <= 1.5, allow binomial slack.
    assert flagged <= 5


def test_guessing_suspect_not_flagged_and_failures() -> None:
    rng = random.Random(0)
    guesser = SuspectApp(answer=lambda _p: f"It is {rng.randint(1000, 9999)}.")
    planted = GEN.account_facts("acct_g", count=5)
    result = probe_canaries(
        endpoint="http://suspect/v1",
        model="s",
        planted=planted,
        generator=GEN,
        transport=httpx.ASGITransport(app=guesser),
        seed=3,
    )
    assert not result.verdict and result.p_value > 0.01
    with pytest.raises(InputError):
        probe_canaries(endpoint="http://x/v1", model="s", planted=[], generator=GEN)
    with pytest.raises(UpstreamError, match="none of"):
        probe_canaries(
            endpoint="http://suspect/v1",
            model="s",
            planted=planted,
            generator=GEN,
            transport=httpx.ASGITransport(app=SuspectApp(answer=str, garbage=True)),
            retry=RetryPolicy(max_attempts=1),
        )


def test_cli_probe_canaries_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "dg"
    monkeypatch.setenv("DISTILLGUARD_HOME", str(home))
    home.mkdir()
    ring = Keyring.create(home / "keyring.json")
    wm = ring.watermark_key()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    base = [
        "fingerprint",
        "probe-canaries",
        "--endpoint",
        f"http://127.0.0.1:{port}/v1",
        "--store",
        url,
    ]
    assert main([*base, "--account", "a", "--all"]) == 4
    assert main([*base, "--account", "a"]) == 4  # nothing planted
    store = open_store(url)
    try:
        gen = CanaryGenerator(secret=wm.secret, kid=wm.kid)
        KeyedCanaryPlanter(generator=gen, registry=CanaryRegistry(store)).plant("x", "a")
    finally:
        store.close()
    assert main([*base, "--account", "a", "--decoys", "2"]) == 7  # unreachable endpoint
