"""Unit tests of the bounded link graph, embeddedness and the community-level scores."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.monitor.graph import GraphParams, build_graph, embeddedness
from distillguard.monitor.scoring import (
    SIGNALS,
    ScoreParams,
    affinity,
    community_base_rate,
)


def _keys(groups: dict[str, list[int]], kind: str = "payment") -> pa.Table:
    acct: list[int] = []
    gkey: list[str] = []
    for key, members in groups.items():
        acct += members
        gkey += [key] * len(members)
    return pa.table(
        {
            "acct": pa.array(acct, pa.int64()),
            "kind": pa.array([kind] * len(acct), pa.string()),
            "gkey": pa.array(gkey, pa.string()),
        }
    )


def test_degree_is_bounded_and_strongest_edges_stay() -> None:
    # 60 accounts share 40 small template groups each (dense), one pair shares a payment card
    rng = np.random.default_rng(0)
    groups = {f"t{i}": sorted(rng.choice(60, size=20, replace=False).tolist()) for i in range(40)}
    keys = pa.concat_tables([_keys(groups, "template"), _keys({"card": [3, 7]}, "payment")])
    none = build_graph(
        duckdb.connect(),
        keys,
        np.full(60, -1),
        n_accounts=60,
        params=GraphParams(max_degree=0, min_edge_weight=0.0),
    )
    bounded = build_graph(
        duckdb.connect(),
        keys,
        np.full(60, -1),
        n_accounts=60,
        params=GraphParams(max_degree=4, min_edge_weight=0.0),
    )
    assert bounded.n_edges < none.n_edges
    assert bounded.n_edges <= 4 * 60
    # every account keeps at least min(4, its degree) edges; the card pair (strongest) stays
    deg = np.bincount(bounded.src, minlength=60) + np.bincount(bounded.dst, minlength=60)
    assert deg.min() >= 4
    pairs = set(zip(bounded.src.tolist(), bounded.dst.tolist(), strict=True))
    assert (3, 7) in pairs
    # kept weights are the unbounded graph's weights for the same pairs
    ref = {
        (a, b): w
        for a, b, w in zip(none.src.tolist(), none.dst.tolist(), none.weight.tolist(), strict=True)
    }
    for a, b, w in zip(
        bounded.src.tolist(), bounded.dst.tolist(), bounded.weight.tolist(), strict=True
    ):
        assert ref[(a, b)] == pytest.approx(w)
    # edges come out sorted (Leiden's result depends on the order)
    order = np.lexsort((bounded.dst, bounded.src))
    assert (order == np.arange(bounded.n_edges)).all()


def test_leiden_is_deterministic_and_separates_two_cliques() -> None:
    keys = _keys({"a": list(range(10)), "b": list(range(10, 20)), "bridge": [9, 10]}, "net")
    g1 = build_graph(duckdb.connect(), keys, np.full(21, -1), n_accounts=21)
    g2 = build_graph(duckdb.connect(), keys, np.full(21, -1), n_accounts=21)
    assert (g1.community == g2.community).all()
    assert len(set(g1.community[:10].tolist())) == 1
    assert len(set(g1.community[10:20].tolist())) == 1
    assert g1.community[0] != g1.community[15]
    emb = g1.embeddedness()
    assert emb[20] == 0.0  # no edges
    assert emb[0] == pytest.approx(1.0)  # all its links inside
    assert 0.5 < emb[9] < 1.0  # the bridge end keeps one link outside


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 14), st.integers(0, 14), st.floats(0.01, 10.0)),
        min_size=0,
        max_size=60,
    ),
    st.lists(st.integers(0, 3), min_size=15, max_size=15),
)
def test_embeddedness_is_a_share(edges: list[tuple[int, int, float]], comm: list[int]) -> None:
    e = [(a, b, w) for a, b, w in edges if a != b]
    src = np.array([a for a, _, _ in e], dtype=np.int64)
    dst = np.array([b for _, b, _ in e], dtype=np.int64)
    w = np.array([x for _, _, x in e], dtype=np.float64)
    c = np.array(comm)
    emb = embeddedness(src, dst, w, c, 15)
    assert emb.shape == (15,)
    assert ((emb >= 0) & (emb <= 1 + 1e-12)).all()
    # one community for everybody: every account with an edge is fully embedded
    all_in = embeddedness(src, dst, w, np.zeros(15, dtype=np.int64), 15)
    has_edge = np.isin(np.arange(15), np.concatenate([src, dst]))
    assert np.allclose(all_in[has_edge], 1.0) and (all_in[~has_edge] == 0).all()
    # singletons: nothing inside
    assert (embeddedness(src, dst, w, np.arange(15), 15) == 0).all()


def test_community_base_rate_is_the_ordinary_community() -> None:
    sp = ScoreParams()
    # 90 accounts in ordinary communities (share 0.004), 10 in a campaign community (share 0.3)
    share = np.r_[np.full(90, 0.004), np.full(10, 0.3)]
    size = np.r_[np.full(90, 30.0), np.full(10, 10.0)]
    n = np.full(100, 20.0)
    assert community_base_rate(share, size, n, params=sp, default=0.02) == pytest.approx(0.004)
    # the floor holds when ordinary communities never elicit
    zero = np.r_[np.zeros(90), np.full(10, 0.3)]
    assert community_base_rate(zero, size, n, params=sp, default=0.02) == sp.p0_community_floor
    # no community large enough: the default
    assert community_base_rate(share, np.ones(100), n, params=sp, default=0.02) == 0.02


def test_affinity_grows_with_embeddedness_only_above_the_floor() -> None:
    sp = ScoreParams()
    n = 5
    parts = {k: np.zeros(n) for k in SIGNALS}
    share = np.zeros(n)
    memb = np.array([0.0, sp.embed_lo, (sp.embed_lo + sp.embed_hi) / 2, sp.embed_hi, 1.0])
    a = affinity(parts, share, np.full(n, 0.2), 0.02, membership=memb, params=sp)
    assert a[0] == pytest.approx(sp.affinity_floor) and a[1] == pytest.approx(sp.affinity_floor)
    assert sp.affinity_floor < a[2] < 1.0
    assert a[3] == pytest.approx(1.0) and a[4] == pytest.approx(1.0)
    assert (np.diff(a) >= 0).all()
    # without membership, only own evidence counts
    b = affinity(parts, share, np.full(n, 0.2), 0.02, params=sp)
    assert np.allclose(b, sp.affinity_floor)
    parts["harvest"][2] = 0.5
    c = affinity(parts, share, np.full(n, 0.2), 0.02, params=sp)
    assert c[2] == pytest.approx(1.0)


def test_bad_graph_parameters() -> None:
    with pytest.raises(ValueError):
        GraphParams(max_degree=-1)
    with pytest.raises(ValueError):
        GraphParams(clique_cap=1)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]), min_size=0, max_size=12),
        min_size=0,
        max_size=40,
    ),
    st.integers(1, 7),
)
def test_template_keys_do_not_depend_on_the_chunk_size(docs: list[list[str]], chunk: int) -> None:
    from distillguard.monitor.templates import template_buckets

    words = pa.array(docs, pa.list_(pa.string()))
    accts = np.arange(len(docs))
    whole = template_buckets(words, accts, chunk=10_000)
    parts = template_buckets(words, accts, chunk=chunk)
    assert whole.keys.shape == (len(docs), 10)
    assert (whole.keys == parts.keys).all()


def _features(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "exchanges": rng.integers(20, 200, n).astype(float),
        "first_ts_us": np.zeros(n, dtype=np.int64),
        "last_ts_us": np.full(n, 10**12, dtype=np.int64),
        "interarrival_cv": rng.normal(2.0, 0.3, n),
        "minute_entropy": rng.normal(0.9, 0.03, n),
        "single_turn_share": rng.uniform(0.3, 0.9, n),
        "system_share": rng.uniform(0.0, 0.5, n),
        "completion_ratio": rng.uniform(0.5, 3.0, n),
        "minute_hist": np.full((n, 12), 3.0),
        "n_sample": np.full(n, 64.0),
        "k_elicit": rng.binomial(64, 0.01, n).astype(float),
        "k_cot": np.zeros(n),
        "k_grade": np.zeros(n),
        "topic_divergence": rng.normal(0.1, 0.02, n),
        "payment_group": np.ones(n),
        "signup_burst": np.ones(n),
    }


def test_corroborated_account_evidence_flags_whatever_the_community() -> None:
    """A dozen accounts on one card, eliciting reasoning in 60% of their requests, inside one
    community of 900 ordinary accounts (the external evaluation's reasoning-harvest cells scored
    0.45 there): flagged on their own evidence. Elicitation alone (tutoring) is not enough."""
    from distillguard.monitor.features import AccountFeatures
    from distillguard.monitor.scoring import final_score, score_accounts

    rng = np.random.default_rng(5)
    n = 912
    cols = _features(n, rng)
    cell = np.arange(12)
    tutors = np.arange(12, 24)
    cols["k_elicit"][cell] = 38  # 60% of 64
    cols["k_cot"][cell] = 38
    cols["payment_group"][cell] = 12
    cols["k_elicit"][tutors] = 38  # legitimate step-by-step homework help, own cards
    cols["k_cot"][tutors] = 38
    f = AccountFeatures(account_id=[f"a{i:04d}" for i in range(n)], org_id=[None] * n, **cols)
    sc = score_accounts(
        f, community=np.zeros(n, dtype=np.int64), sync_p=np.ones(1), params=ScoreParams()
    )
    assert sc.flagged[cell].all()
    assert not sc.flagged[tutors].any()
    assert sc.flagged.sum() == len(cell)
    # the rule itself: one kind of evidence is capped by own_weight, two kinds count in full
    sp = ScoreParams()
    zero = np.zeros(1)
    one = {k: zero for k in SIGNALS} | {"elicitation": np.array([1.0])}
    two = one | {"payment": np.array([1.0])}
    assert final_score(one, np.array([0.75]), zero, sp)[0] == pytest.approx(0.375)
    assert final_score(two, np.array([0.875]), zero, sp)[0] == pytest.approx(0.875)


def test_content_pooled_without_control_is_interest_not_a_campaign() -> None:
    """A 300-account community whose members all elicit step-by-step solutions (tutoring
    students linked by common phrasings) is not a campaign; the same community exiting through
    a rotating proxy pool is, and its quiet members inherit its score."""
    from distillguard.monitor.features import AccountFeatures
    from distillguard.monitor.scoring import rotation_evidence, score_accounts

    rng = np.random.default_rng(9)
    n = 1300
    cols = _features(n, rng)
    comm = np.zeros(n, dtype=np.int64)
    comm[:300] = 1  # the eliciting community
    cols["k_elicit"][:300] = rng.binomial(64, 0.25, 300)
    cols["k_elicit"][:100] = 0  # a third of it elicits nothing itself
    ids = [f"a{i:04d}" for i in range(n)]
    asns = np.ones(n)
    nets = np.ones(n)

    def run(asns: np.ndarray, nets: np.ndarray) -> np.ndarray:
        f = AccountFeatures(
            account_id=ids, org_id=[None] * n, distinct_asns=asns, distinct_nets=nets, **cols
        )
        sc = score_accounts(f, community=comm, sync_p=np.ones(2), params=ScoreParams())
        return np.asarray(sc.flagged)

    quiet = run(asns, nets)
    assert not quiet[:100].any()  # members without evidence of their own are not flagged
    assert quiet[100:300].mean() < 0.05
    rotating = asns.copy()
    rotating[:300] = 20  # each member's requests came from 20 networks
    loud = run(rotating, nets)
    assert loud[:300].all()
    assert not loud[300:].any()
    # rotation evidence itself: none up to 3 networks, full from 8, needs min_exchanges
    f = AccountFeatures(
        account_id=ids[:4],
        org_id=[None] * 4,
        distinct_asns=np.array([3.0, 8.0, 1.0, 20.0]),
        distinct_nets=np.array([3.0, 8.0, 30.0, 20.0]),
        **{k: (v[:4] if k != "minute_hist" else v[:4, :]) for k, v in cols.items()}
        | {"exchanges": np.array([50.0, 50.0, 50.0, 2.0])},
    )
    assert rotation_evidence(f, ScoreParams()).tolist() == [0.0, 1.0, 1.0, 0.0]


def test_nobody_is_flagged_for_what_they_ask_alone() -> None:
    """Grading-team accounts: heavy grading elicitation and a topic sweep of their own (two
    content signals) inside a grading community, no shared card, no burst, no rotation: under
    the flag threshold (the zoo's judge teams were flagged 25% by content alone). One shared
    card in a cell of a dozen and they are flagged."""
    from distillguard.monitor.features import AccountFeatures
    from distillguard.monitor.scoring import final_score, score_accounts

    rng = np.random.default_rng(3)
    n = 1060
    cols = _features(n, rng)
    team = np.arange(60)
    cols["k_elicit"][team] = 45
    cols["k_grade"][team] = 45
    cols["topic_divergence"][team] = 0.9  # far from the log's mix
    comm = np.zeros(n, dtype=np.int64)
    comm[team] = 1
    ids = [f"a{i:04d}" for i in range(n)]
    f = AccountFeatures(account_id=ids, org_id=[None] * n, **cols)
    sc = score_accounts(f, community=comm, sync_p=np.ones(2), params=ScoreParams())
    assert (sc.own[team] > 0.75).all()  # strong evidence of interest
    assert not sc.flagged.any()
    assert sc.score.max() <= ScoreParams().interest_cap
    cols["payment_group"][team[:12]] = 12
    f2 = AccountFeatures(account_id=ids, org_id=[None] * n, **cols)
    sc2 = score_accounts(f2, community=comm, sync_p=np.ones(2), params=ScoreParams())
    assert sc2.flagged[team[:12]].all()
    # the cap itself: interest only, own or inherited, never reaches the threshold
    sp = ScoreParams()
    zero = np.zeros(1)
    parts = {k: zero for k in SIGNALS} | {"elicitation": np.ones(1), "sweep": np.ones(1)}
    capped = final_score(parts, np.array([0.99]), np.array([0.9]), sp)
    assert capped[0] == pytest.approx(sp.interest_cap)
    shown = final_score(parts, np.array([0.99]), np.array([0.9]), sp, community_control=np.ones(1))
    assert shown[0] > sp.flag_threshold


def test_a_shared_plan_flags_only_what_paraphrases_accounts_under_control() -> None:
    """Accounts whose prompts land, far above the log's rate, in paraphrase buckets dominated by
    accounts under control are flagged without control of their own; the same share of
    reasoning requests without the plan links (tutoring) is not; without plan counts the
    signal is off."""
    from dataclasses import replace

    from distillguard.monitor.features import AccountFeatures
    from distillguard.monitor.scoring import score_accounts

    rng = np.random.default_rng(11)
    n = 1000
    cols = _features(n, rng)
    plan = np.arange(40)
    tutors = np.arange(40, 80)
    cols["k_elicit"][np.r_[plan, tutors]] = 8
    cols["k_cot"][np.r_[plan, tutors]] = 8
    total = np.full(n, 8.0 * 20)  # 20 bucketed prompts each
    hits = rng.binomial(20, 0.005, n) * 8.0  # ordinary accounts: 0.5% of prompts
    hits[plan] = 8.0 * 6  # 6 of 20 prompts paraphrase a controlled campaign's plan
    hits[tutors] = 0.0
    f = AccountFeatures(
        account_id=[f"a{i:04d}" for i in range(n)],
        org_id=[None] * n,
        plan_hits=hits,
        plan_total=total,
        **cols,
    )
    community = np.arange(n)  # nobody linked: the plan test alone
    sc = score_accounts(f, community=community, sync_p=np.ones(n), params=ScoreParams())
    assert sc.calibration.plan_p0 == pytest.approx(0.02)  # the floor: ordinary rate is lower
    assert sc.flagged[plan].all()
    assert not sc.flagged[tutors].any()
    assert sc.flagged.sum() == len(plan)
    assert (sc.score[tutors] <= ScoreParams().interest_cap).all()
    off = score_accounts(
        replace(f, plan_hits=None, plan_total=None),
        community=community,
        sync_p=np.ones(n),
        params=ScoreParams(),
    )
    assert not off.flagged.any() and (off.signals["plan"] == 0).all()


def test_plan_base_rate_leaves_out_the_seeds() -> None:
    """The plan signal's base rate comes from the accounts the links were *not* counted
    against: when the controlled accounts (seeds, sharing buckets with each other by
    construction) outnumber the others among accounts with bucketed prompts, including them
    raised the base rate to the campaigns' own and hid every stealthy account."""
    from distillguard.monitor.features import AccountFeatures
    from distillguard.monitor.scoring import calibrate

    rng = np.random.default_rng(3)
    n = 400
    cols = _features(n, rng)
    total = np.full(n, 80.0)
    hits = np.zeros(n)
    seeds = np.zeros(n, dtype=bool)
    seeds[:300] = True
    hits[:300] = 40.0  # seeds: half their buckets shared with other seeds
    hits[300:] = rng.binomial(10, 0.01, 100) * 8.0  # the others: about 1%
    f = AccountFeatures(
        account_id=[f"a{i:04d}" for i in range(n)],
        org_id=[None] * n,
        plan_hits=hits,
        plan_total=total,
        **cols,
    )
    with_seeds = calibrate(f, ScoreParams()).plan_p0
    assert with_seeds > 0.2
    from dataclasses import replace

    without = calibrate(replace(f, plan_seed=seeds), ScoreParams()).plan_p0
    assert without == pytest.approx(ScoreParams().plan_p0_floor)
