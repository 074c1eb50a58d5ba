"""Per-account features, the contract between the engines and the scoring.

Every engine (DuckDB, Spark) and the online scorer compute the same :class:`AccountFeatures`
(one array per feature, aligned by account, accounts sorted by id) and the same *keys* table
(``acct``, ``kind``, ``gkey``: the infrastructure keys and template buckets each account holds),
then call :func:`score_features`, which builds the link graph, runs Leiden, tests synchrony,
scores the accounts (:func:`distillguard.monitor.scoring.score_accounts`), and assembles the
campaigns and the reasons. Results agree across engines whenever their features agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pyarrow as pa

from distillguard.monitor._account_features import AccountFeatures
from distillguard.monitor._results import Campaign
from distillguard.monitor.coordination import synchrony_from_histograms
from distillguard.monitor.graph import GraphParams, LinkGraph, build_graph
from distillguard.monitor.scoring import (
    AccountScores,
    ScoreParams,
    control_shown,
    score_accounts,
)
from distillguard.monitor.semantic import plan_links

__all__ = [
    "KEYS_SCHEMA",
    "AccountFeatures",
    "FeatureScan",
    "account_reasons",
    "assemble",
    "campaign_id_of",
    "org_codes",
    "score_features",
]

#: The keys table: account index, key kind (see ``GraphParams.weights``) and key value.
KEYS_SCHEMA = pa.schema(
    [pa.field("acct", pa.int64()), pa.field("kind", pa.string()), pa.field("gkey", pa.string())]
)


def org_codes(org_id: Sequence[str | None]) -> np.ndarray:
    """An integer code per account for its organisation (-1: none), in order of appearance."""
    codes = np.full(len(org_id), -1, dtype=np.int64)
    seen: dict[str, int] = {}
    for i, o in enumerate(org_id):  # one per account
        if o is not None:
            codes[i] = seen.setdefault(o, len(seen))
    return codes


@dataclass(frozen=True)
class FeatureScan:
    """What :func:`score_features` returns: the account table, campaigns, scores and graph."""

    accounts: pa.Table
    campaigns: list[Campaign]
    scores: AccountScores
    graph: LinkGraph
    #: The features the scores were computed from (with the plan links of the second pass).
    features: AccountFeatures | None = None


def score_features(
    features: AccountFeatures,
    keys: pa.Table,
    *,
    graph: GraphParams,
    score: ScoreParams,
    con: duckdb.DuckDBPyConnection | None = None,
) -> FeatureScan:
    """Graph, communities, scores, campaigns and reasons from per-account features and keys.

    ``keys`` follows :data:`KEYS_SCHEMA` (``acct`` indexes ``features``). ``con`` is the DuckDB
    connection that builds the edges (a private in-memory one when not given).
    """
    f = features
    n = len(f)
    own_con = con is None
    con = con if con is not None else duckdb.connect()
    try:
        link = build_graph(con, keys, org_codes(f.org_id), n_accounts=n, params=graph)
    finally:
        if own_con:
            con.close()
    _, cinv = np.unique(link.community, return_inverse=True)
    n_comm = int(cinv.max()) + 1 if n else 0
    sync_p, _ent = synchrony_from_histograms(f.minute_hist, cinv.reshape(-1), n_comm)
    membership = link.embeddedness()
    sc = score_accounts(
        f, community=link.community, sync_p=sync_p, params=score, membership=membership
    )
    # Second pass: accounts that paraphrase what accounts under visible control ask (the
    # flagged accounts with a control signal of their own) get the plan signal.
    seeds = sc.flagged & control_shown(sc.signals)
    hits, total = plan_links(keys, seeds, n)
    if f.plan_hits is not None or hits.any():
        f = replace(f, plan_hits=hits, plan_total=total, plan_seed=seeds)
        sc = score_accounts(
            f, community=link.community, sync_p=sync_p, params=score, membership=membership
        )
    return assemble(f, sc, link, score)


def assemble(
    features: AccountFeatures, sc: AccountScores, link: LinkGraph, score: ScoreParams
) -> FeatureScan:
    """The account table, campaigns and reasons of scored accounts (``sc.score`` and
    ``sc.flagged`` decide; a fitted combiner replaces them and calls this again)."""
    f = features
    campaigns, camp_of = _campaigns(f, sc, score)
    accounts = pa.table(
        {
            "account_id": pa.array(f.account_id, pa.string()),
            "score": pa.array(np.round(sc.score, 6), pa.float64()),
            "flagged": pa.array(sc.flagged, pa.bool_()),
            "campaign_id": pa.array(
                [campaigns[c].campaign_id if c >= 0 else None for c in camp_of], pa.string()
            ),
            "reasons": pa.array(_reasons(f, sc, campaigns, camp_of, score), pa.list_(pa.string())),
            "own_score": pa.array(np.round(sc.own, 6), pa.float64()),
            "community_score": pa.array(np.round(sc.community_score, 6), pa.float64()),
            "community_size": pa.array(sc.community_size.astype(np.int64), pa.int64()),
            "exchanges": pa.array(f.exchanges.astype(np.int64), pa.int64()),
        }
    )
    return FeatureScan(
        accounts=accounts, campaigns=campaigns, scores=sc, graph=link, features=features
    )


def campaign_id_of(accounts: Sequence[str]) -> str:
    """The stable id of a campaign: a hash of its smallest account id."""
    return "camp-" + hashlib.sha256(min(accounts).encode()).hexdigest()[:10]


def _campaigns(
    f: AccountFeatures, sc: AccountScores, sp: ScoreParams
) -> tuple[list[Campaign], np.ndarray]:
    """Communities with at least ``min_campaign`` flagged accounts."""
    n = len(f)
    camp_of = np.full(n, -1, dtype=np.int64)
    campaigns: list[Campaign] = []
    cinv, flagged = sc.community, sc.flagged
    ncomm = len(sc.community_risk)
    csize = np.bincount(cinv, minlength=ncomm)
    p0 = sc.calibration.p0
    s = sc.signals
    flagged_by_c = np.bincount(cinv, weights=flagged.astype(np.float64), minlength=ncomm)
    for c in np.flatnonzero(flagged_by_c >= sp.min_campaign):  # one iteration per campaign
        members = np.flatnonzero((cinv == c) & flagged)
        accounts = sorted(f.account_id[i] for i in members)
        camp_of[members] = len(campaigns)
        n_s = float(max(f.n_sample[members].sum(), 1))
        signals = {
            "accounts": len(members),
            "community_size": int(csize[c]),
            "elicitation_share": round(float(f.k_elicit[members].sum() / n_s), 4),
            "cot_share": round(float(f.k_cot[members].sum() / n_s), 4),
            "grading_share": round(float(f.k_grade[members].sum() / n_s), 4),
            "elicitation_base_rate": round(p0, 4),
            "shared_payment_accounts": int((f.payment_group[members] >= 3).sum()),
            "signup_burst_accounts": int((s["signup_burst"][members] > 0).sum()),
            "regular_timing_accounts": int((s["regularity"][members] > 0).sum()),
            "harvest_behaviour_accounts": int((s["harvest"][members] > 0).sum()),
            "topic_sweep_accounts": int((s["sweep"][members] > 0).sum()),
            "rotating_accounts": int((s["rotation"][members] > 0).sum()),
            "synchrony_p": float(sc.community_sync_p[c]),
            "mean_own_score": round(float(sc.own[members].mean()), 4),
        }
        campaigns.append(
            Campaign(
                campaign_id=campaign_id_of(accounts),
                accounts=accounts,
                score=round(float(sc.score[members].mean()), 4),
                first_seen_us=int(f.first_ts_us[members].min()),
                last_seen_us=int(f.last_ts_us[members].max()),
                exchanges=int(f.exchanges[members].sum()),
                signals=signals,
            )
        )
    return campaigns, camp_of


def account_reasons(
    f: AccountFeatures,
    i: int,
    *,
    signals: dict[str, np.ndarray],
    elicitation_p: np.ndarray,
    p0: float,
) -> list[str]:
    """The reasons of account ``i`` from its own signals (campaign links excluded)."""
    s = signals
    r: list[str] = []
    if s["elicitation"][i] > 0:
        r.append(
            f"elicits reasoning/grading in {f.k_elicit[i]:.0f}/{f.n_sample[i]:.0f} requests "
            f"(base {p0:.0%}, p={elicitation_p[i]:.1e})"
        )
    if s["payment"][i] > 0:
        r.append(f"payment instrument shared by {f.payment_group[i]:.0f} accounts")
    if s["signup_burst"][i] > 0:
        r.append(f"signed up in a burst of {f.signup_burst[i]:.0f} accounts")
    if s["regularity"][i] > 0:
        r.append("machine-regular timing")
    if s["harvest"][i] > 0:
        r.append("harvesting pattern: single-turn, long completions")
    if s["sweep"][i] > 0:
        r.append("topic mix far from the natural mix (capability sweep)")
    if s["plan"][i] > 0 and f.plan_hits is not None and f.plan_total is not None:
        r.append(
            f"paraphrases what accounts under one operator's control ask "
            f"({f.plan_hits[i]:.0f} of {f.plan_total[i]:.0f} paraphrase buckets)"
        )
    if s["rotation"][i] > 0:
        asns = f.distinct_asns[i] if f.distinct_asns is not None else 0
        nets = f.distinct_nets[i] if f.distinct_nets is not None else 0
        r.append(f"requests from {asns:.0f} networks (AS) and {nets:.0f} /24s (proxy rotation)")
    return r


def _reasons(
    f: AccountFeatures,
    sc: AccountScores,
    campaigns: list[Campaign],
    camp_of: np.ndarray,
    sp: ScoreParams,
) -> list[list[str]]:
    out: list[list[str]] = []
    big = sc.community_size >= sp.min_campaign
    for i in range(len(f)):  # one per account, on small scalars only
        r = account_reasons(
            f, i, signals=sc.signals, elicitation_p=sc.elicitation_p, p0=sc.calibration.p0
        )
        if camp_of[i] >= 0:
            cm = campaigns[camp_of[i]]
            r.append(f"linked to campaign {cm.campaign_id} ({len(cm.accounts)} accounts)")
        elif big[i] and sc.community_score[i] > 0.1:
            r.append(f"in a linked group of {sc.community_size[i]:.0f} accounts")
        out.append(r)
    return out
