"""Calibration of the per-account signals and the account and campaign scores.

**Calibration from legitimate traffic.** Each continuous signal is turned into a robust z-score
against the log's own accounts: ``z = (x - median) / (1.4826 * MAD)``. Median and MAD stay put as
long as fewer than half of the accounts are campaign accounts, so the reference is the legitimate
majority. A signal *fires* above ``z_fire`` (default 4, about 3e-5 one-sided for a normal
variable; real signals have heavier tails, which is why the false-positive rates are measured on
clean traffic by the tests and ``eval-scan``, not assumed). The elicitation share is a count, and
is tested exactly: one-sided binomial test of the account's count against the base rate ``p0`` of
the log (the mean share of the least eliciting 75% of accounts, at least ``p0_floor``).

**Scores.** Each fired signal contributes ``w_i * s_i`` (``s_i`` in 0..1 grows with the evidence)
to a noisy-or account score ``own = 1 - prod(1 - w_i s_i)``. A community of at least
``min_campaign`` accounts gets ``community = mean(own) * (1 - 1/sqrt(size))`` raised by its
synchrony; an account's final score is ``1 - (1 - w * own) * (1 - community)`` (:func:`final_score`;
``w`` is ``own_weight``, or 1 for corroborated evidence: elicitation and a control signal
together), so that strong individual evidence and a strong community both count, and a lone
oddball or a large community of ordinary accounts does not. Accounts at or above
``flag_threshold`` are flagged.

**Control versus interest.** What accounts ask shows a common interest; a common operator shows
in control signals (:data:`CONTROL_SIGNALS`: a shared payment instrument, a sign-up burst, proxy
rotation). A community's pooled evidence counts in full only where its members show control
(``control_floor`` of it otherwise), and an account with no control signal of its own or in its
community stays at or under ``interest_cap``: nobody is flagged for what they ask alone.

**Community evidence against ordinary communities.** The pooled elicitation count of a community
is tested against the rate of an *ordinary community* (:func:`community_base_rate`: the median
community share over the accounts in communities of at least ``min_campaign``, at least
``p0_community_floor``), and must be at least 4x that rate (full weight at ~11x) and about the
per-account base rate ``p0`` in absolute terms. A hydra campaign whose accounts each elicit
little (4% of requests, against 0.2% in ordinary communities) is caught as a whole.

**Inheritance by link strength.** A member gets ``affinity`` (``affinity_floor`` .. 1) of its
community's score: in full when it shows the community's evidence itself, or when it is embedded
in the community (share of its link weight inside it, from ``embed_lo`` to ``embed_hi``;
``membership`` argument of :func:`score_accounts`). Legitimate accounts that Leiden attaches to a
campaign's community keep most of their links outside it and get the floor only.

Interface note for the other engines (online scorer, Spark): :func:`score_accounts` and
:func:`affinity` keep their positional signatures; ``membership`` (and ``params`` for
:func:`affinity`) are new optional keywords. Without ``membership`` a member inherits from its
community only through its own evidence; pass
:meth:`distillguard.monitor.graph.LinkGraph.embeddedness` (or
:func:`distillguard.monitor.graph.embeddedness` on your own edges) to agree with the batch scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from distillguard.monitor._account_features import AccountFeatures

__all__ = [
    "CONTROL_SIGNALS",
    "SIGNALS",
    "AccountScores",
    "Calibration",
    "ScoreParams",
    "account_signals",
    "affinity",
    "binomial_evidence",
    "calibrate",
    "community_base_rate",
    "control_shown",
    "final_score",
    "harvest_statistic",
    "plan_evidence",
    "ramp",
    "robust_reference",
    "robust_z",
    "rotation_evidence",
    "score_accounts",
]


def _default_signal_weights() -> dict[str, float]:
    return {
        "elicitation": 0.75,
        "payment": 0.5,
        "signup_burst": 0.3,
        "regularity": 0.15,
        "harvest": 0.15,
        "sweep": 0.2,
        "rotation": 0.3,
        "plan": 0.6,
    }


@dataclass(frozen=True)
class ScoreParams:
    """Thresholds and weights of the scores (defaults documented in docs/scan.md)."""

    z_fire: float = 4.0
    alpha_elicitation: float = 1e-3
    p0_floor: float = 0.02
    min_exchanges: int = 5
    min_campaign: int = 3
    own_weight: float = 0.5
    flag_threshold: float = 0.5
    embed_lo: float = 0.5
    p0_community_floor: float = 0.002
    affinity_floor: float = 0.5
    embed_hi: float = 0.8
    rotation_lo: float = 3.0
    rotation_hi: float = 8.0
    control_floor: float = 0.25
    interest_cap: float = 0.45
    #: The plan signal's base-rate floor and the p-value from which it counts (full at 1e-9).
    plan_p0_floor: float = 0.02
    alpha_plan: float = 1e-3
    weights: dict[str, float] = field(default_factory=_default_signal_weights)


def robust_reference(x: np.ndarray, *, mask: np.ndarray | None = None) -> tuple[float, float]:
    """``(median, scale)`` of ``x[mask]``: the scale is 1.4826 MAD, else the standard deviation,
    else 1. An empty reference gives ``(nan, nan)`` (every z-score is then 0)."""
    ref = x[mask] if mask is not None else x
    ref = ref[np.isfinite(ref)]
    if len(ref) == 0:
        return float("nan"), float("nan")
    med = float(np.median(ref))
    mad = float(np.median(np.abs(ref - med))) * 1.4826
    if mad <= 0:
        mad = float(np.std(ref)) or 1.0
    return med, mad


def _z(x: np.ndarray, ref: tuple[float, float]) -> np.ndarray:
    med, mad = ref
    if not np.isfinite(med):
        return np.zeros_like(x, dtype=np.float64)
    return np.asarray((x - med) / mad, dtype=np.float64)


def robust_z(x: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Robust z-scores of ``x`` against the median and MAD of ``x[mask]``.

    If the MAD is 0, the standard deviation is used, and 1 if that is 0 too.
    """
    return _z(x, robust_reference(x, mask=mask))


def binomial_evidence(k: np.ndarray, n: np.ndarray, p0: float) -> np.ndarray:
    """One-sided p-values P[X >= k], X ~ Binomial(n, p0), elementwise."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return np.asarray(np.where(n > 0, stats.binom.sf(k - 1, n, p0), 1.0), dtype=np.float64)


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, linear between."""
    return np.asarray(np.clip((x - lo) / (hi - lo), 0.0, 1.0), dtype=np.float64)


@dataclass(frozen=True)
class Calibration:
    """What the scores are calibrated against: the log's elicitation base rate ``p0`` and the
    ``(median, scale)`` reference of every robust z-score. Computed from a whole log by
    :func:`calibrate`; the online scorer keeps the last one to score accounts between re-scores."""

    p0: float
    interarrival_cv: tuple[float, float]
    minute_entropy: tuple[float, float]
    harvest: tuple[float, float]
    topic_divergence: tuple[float, float]
    signup_burst: tuple[float, float]
    #: Base rate of the plan signal: mean share of paraphrase buckets shared with accounts under
    #: control over the least-sharing 75% of the accounts with bucketed prompts.
    plan_p0: float = 0.02


def harvest_statistic(f: AccountFeatures) -> np.ndarray:
    """Single-turn share without a system prompt, times log(1 + completion ratio): the harvest
    signal's statistic (robust z-scored against the log's accounts)."""
    h = f.single_turn_share * (1 - f.system_share)
    return np.asarray(h.astype(np.float64) * np.log1p(f.completion_ratio), dtype=np.float64)


def calibrate(features: AccountFeatures, params: ScoreParams) -> Calibration:
    """The calibration of ``features`` (the accounts with at least ``min_exchanges``)."""
    f = features
    enough = f.exchanges >= params.min_exchanges
    share = np.where(f.n_sample > 0, f.k_elicit / np.maximum(f.n_sample, 1), 0.0)
    ref = np.sort(share[enough]) if enough.any() else np.sort(share)
    low = ref[: max(1, int(0.75 * len(ref)))] if len(ref) else np.zeros(1)
    # the plan base rate as the elicitation one: mean share of the least-sharing 75% of the
    # accounts that have at least one bucketed prompt, leaving out the seeds the links were
    # counted against (they share buckets with each other by construction: with them in, the
    # reference was the campaigns' own rate, 0.18 on a zoo log, where the others' is 0.01)
    plan_p0 = params.plan_p0_floor
    if f.plan_hits is not None and f.plan_total is not None:
        has = f.plan_total >= 8
        if f.plan_seed is not None:
            has &= ~np.asarray(f.plan_seed, dtype=bool)
        if has.any():
            ps = np.sort(f.plan_hits[has] / f.plan_total[has])
            plan_p0 = max(plan_p0, float(np.mean(ps[: max(1, int(0.75 * len(ps)))])))
    return Calibration(
        plan_p0=plan_p0,
        p0=float(max(params.p0_floor, float(np.mean(low)))),
        interarrival_cv=robust_reference(f.interarrival_cv, mask=enough),
        minute_entropy=robust_reference(f.minute_entropy, mask=enough),
        harvest=robust_reference(harvest_statistic(f), mask=enough),
        topic_divergence=robust_reference(f.topic_divergence, mask=enough),
        signup_burst=robust_reference(np.log1p(f.signup_burst)),
    )


#: The per-account signals of the account score, in the order of their weights.
SIGNALS = (
    "elicitation",
    "payment",
    "signup_burst",
    "regularity",
    "harvest",
    "sweep",
    "rotation",
    "plan",
)

#: Signals of *control* (one operator behind many accounts, or hiding where it calls from), as
#: opposed to signals of *interest* (what is asked, how often): a shared payment instrument, a
#: sign-up burst, proxy rotation. Content evidence pooled over a community counts in full only
#: where its members show control too (see :func:`score_accounts`).
CONTROL_SIGNALS = ("payment", "signup_burst", "rotation")


@dataclass(frozen=True)
class AccountScores:
    """Scores of the accounts of one :class:`~distillguard.monitor.features.AccountFeatures`.

    Arrays are aligned with the features' accounts; ``community`` is a dense community index
    (0..number of communities - 1) and ``community_risk`` / ``community_share`` are indexed by it.
    """

    calibration: Calibration
    signals: dict[str, np.ndarray]  # s_i in 0..1 per signal (keys: SIGNALS)
    elicitation_p: np.ndarray
    share: np.ndarray
    own: np.ndarray
    community: np.ndarray
    community_size: np.ndarray  # per account
    community_risk: np.ndarray  # per community: c_score
    community_share: np.ndarray  # per community: pooled elicitation share
    community_sync_p: np.ndarray  # per community
    community_control: np.ndarray  # per community: share of members showing control (ramped)
    community_score: np.ndarray  # per account (c_score times affinity)
    score: np.ndarray
    flagged: np.ndarray


def account_signals(
    features: AccountFeatures, calibration: Calibration, params: ScoreParams
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Per-signal evidence ``s_i`` (0..1), the elicitation p-values, shares and the noisy-or
    account score ``own`` of ``features`` against ``calibration``."""
    f, sp, cal = features, params, calibration
    enough = f.exchanges >= sp.min_exchanges
    p0 = cal.p0
    share = np.where(f.n_sample > 0, f.k_elicit / np.maximum(f.n_sample, 1), 0.0)
    p_el = binomial_evidence(f.k_elicit, f.n_sample, p0)
    s_el = ramp(
        -np.log10(np.maximum(p_el, 1e-300)),
        -np.log10(sp.alpha_elicitation),
        -np.log10(sp.alpha_elicitation) + 6,
    ) * ramp(share, 2 * p0, 0.3)
    z_cv = -_z(f.interarrival_cv, cal.interarrival_cv)
    z_me = -_z(f.minute_entropy, cal.minute_entropy)
    s_reg = np.where(enough, ramp(np.maximum(z_cv, z_me), sp.z_fire, 2 * sp.z_fire), 0.0)
    z_h = _z(harvest_statistic(f), cal.harvest)
    s_harv = np.where(enough, ramp(z_h, sp.z_fire, 2 * sp.z_fire), 0.0)
    z_sw = _z(f.topic_divergence, cal.topic_divergence)
    s_sw = np.where(enough, ramp(z_sw, sp.z_fire, 2 * sp.z_fire), 0.0)
    s_pay = ramp(f.payment_group, 2.5, 8.0)
    z_b = _z(np.log1p(f.signup_burst), cal.signup_burst)
    s_burst = ramp(z_b, sp.z_fire, 2 * sp.z_fire) * ramp(f.signup_burst, 4.0, 10.0)
    s_rot = rotation_evidence(f, sp)
    s_plan = plan_evidence(f, cal, sp)
    parts = {
        "elicitation": s_el,
        "payment": s_pay,
        "signup_burst": s_burst,
        "regularity": s_reg,
        "harvest": s_harv,
        "sweep": s_sw,
        "rotation": s_rot,
        "plan": s_plan,
    }
    w = sp.weights
    own = 1.0 - np.prod([1.0 - w[k] * v for k, v in parts.items()], axis=0)
    return parts, p_el, share, np.asarray(own, dtype=np.float64).reshape(len(f.exchanges))


def rotation_evidence(features: AccountFeatures, params: ScoreParams) -> np.ndarray:
    """Proxy rotation (0..1): requests from many autonomous systems, or many /24 networks.

    A person calls from home, the office and a phone: one to three networks (AS). A harvesting
    script behind a residential proxy pool exits through a new network with nearly every
    request. Full evidence at ``rotation_hi`` distinct AS (or three times as many /24s), none up to
    ``rotation_lo``; accounts with fewer than ``min_exchanges`` requests give none. Zero where
    the engine did not count networks (``distinct_asns`` is ``None``).
    """
    f, sp = features, params
    if f.distinct_asns is None or f.distinct_nets is None:
        return np.zeros(len(f.exchanges), dtype=np.float64)
    spread = np.maximum(f.distinct_asns, f.distinct_nets / 3.0)
    enough = f.exchanges >= sp.min_exchanges
    return np.where(enough, ramp(spread, sp.rotation_lo, sp.rotation_hi), 0.0)


def plan_evidence(
    features: AccountFeatures, calibration: Calibration, params: ScoreParams
) -> np.ndarray:
    """Shared plan (0..1): an account's prompts paraphrase, more often than the log's base rate,
    prompts of accounts that are flagged *and* show control of their own (paraphrase buckets
    dominated by such accounts, :func:`~distillguard.monitor.semantic.plan_links`).

    The counts are paraphrase buckets (``plan_hits`` of ``plan_total``); a prompt holds ``bands``
    (8) of them, so the test counts ``total / 8`` prompts: a one-sided binomial test against
    ``calibration.plan_p0``, from ten times ``alpha_plan`` (nothing) to ``alpha_plan`` (in full;
    1e-3, the elicitation test's level, chosen before any measurement), times a ramp on the
    share's ratio to the base rate (2x nothing, 4x in full). Zero where the counts were not
    computed.

    Misfires when legitimate users ask what a controlled campaign asks in the same words up to
    paraphrase: a class whose homework a campaign harvests, a benchmark a campaign replays.
    """
    f, sp = features, params
    if f.plan_hits is None or f.plan_total is None:
        return np.zeros(len(f.exchanges), dtype=np.float64)
    n = np.floor(f.plan_total / 8.0)
    k = np.minimum(np.floor(f.plan_hits / 8.0), n)
    share = np.where(f.plan_total > 0, f.plan_hits / np.maximum(f.plan_total, 1), 0.0)
    p = binomial_evidence(k, n, calibration.plan_p0)
    lo = -np.log10(sp.alpha_plan)
    ratio = np.log2(np.maximum(share, 1e-12) / calibration.plan_p0)
    return np.asarray(
        ramp(-np.log10(np.maximum(p, 1e-300)), lo - 1, lo) * ramp(ratio, 1.0, 2.0),
        dtype=np.float64,
    )


def control_shown(parts: dict[str, np.ndarray]) -> np.ndarray:
    """Per account: does it show a control signal of its own (:data:`CONTROL_SIGNALS`)."""
    return np.asarray(np.maximum.reduce([parts[k] > 0 for k in CONTROL_SIGNALS]), dtype=bool)


def affinity(
    parts: dict[str, np.ndarray],
    share: np.ndarray,
    community_share: np.ndarray,
    p0: float,
    *,
    membership: np.ndarray | None = None,
    params: ScoreParams | None = None,
) -> np.ndarray:
    """How much of its community's score an account gets (``affinity_floor`` .. 1).

    In full when the account shares the community's evidence (its elicitation share, or any fired
    signal) or is firmly embedded in the community's links; ``affinity_floor`` otherwise, so that a
    legitimate user who happens to exit through a campaign's proxy network is not pulled over the
    line by the community alone. ``community_share`` is the pooled share of each account's
    community (aligned by account). ``membership`` is each account's embeddedness (share of its
    link weight inside its community, :func:`distillguard.monitor.graph.embeddedness`); it counts
    from ``params.embed_lo`` (nothing) to ``params.embed_hi`` (in full). Without it (``None``)
    only the account's own evidence counts."""
    sp = params or ScoreParams()
    fired = np.maximum.reduce([(parts[k] > 0).astype(float) for k in SIGNALS[1:]])
    ratio = share / np.maximum(community_share, 1e-9) * (community_share > 2 * p0)
    tied = (
        ramp(np.asarray(membership, dtype=np.float64), sp.embed_lo, sp.embed_hi)
        if membership is not None
        else np.zeros_like(share, dtype=np.float64)
    )
    lo = sp.affinity_floor
    return np.asarray(
        lo + (1 - lo) * np.minimum(1.0, np.maximum.reduce([ratio, fired, tied])), dtype=np.float64
    )


def community_base_rate(
    community_share: np.ndarray,
    community_size: np.ndarray,
    n_sample: np.ndarray,
    *,
    params: ScoreParams,
    default: float,
) -> float:
    """The elicitation rate of an ordinary community: the median, over the accounts with content
    that belong to communities of at least ``min_campaign`` accounts, of their community's pooled
    share (arrays aligned by account), at least ``p0_community_floor``; ``default`` when no
    account qualifies. Most accounts are legitimate (the same assumption as the robust
    z-scores), so the median community an account belongs to is a legitimate one."""
    ok = (np.asarray(community_size) >= params.min_campaign) & (np.asarray(n_sample) > 0)
    if not ok.any():
        return float(default)
    return float(max(params.p0_community_floor, float(np.median(community_share[ok]))))


def final_score(
    parts: dict[str, np.ndarray],
    own: np.ndarray,
    community_score: np.ndarray,
    params: ScoreParams,
    *,
    community_control: np.ndarray | None = None,
) -> np.ndarray:
    """An account's final score from its own evidence and what it inherits from its community.

    ``1 - (1 - w * own) * (1 - community)``, where ``w`` is ``own_weight`` for one kind of
    evidence alone and rises to 1 when the account's evidence is *corroborated*: it both elicits
    reasoning or grading and shows control (:data:`CONTROL_SIGNALS`: an instrument shared by
    unrelated accounts, a sign-up burst, proxy rotation). Such an account is flagged on its
    own, whatever community Leiden put it in (on traffic from another generator, accounts
    eliciting in 60% of their requests on a card shared by a dozen accounts scored 0.45 because
    the cap halved their evidence).
    """
    control = np.maximum.reduce([parts[k] for k in CONTROL_SIGNALS])
    # a shared plan is corroborated by construction: content of the account's own, shared with
    # accounts that show control (see plan_evidence)
    plan = parts.get("plan", np.zeros_like(control))
    corroborated = np.maximum(np.minimum(parts["elicitation"], control), plan)
    w = params.own_weight + (1.0 - params.own_weight) * corroborated
    score = 1 - (1 - w * own) * (1 - community_score)
    # Nobody is flagged for what they ask alone: an account with no control signal of its own
    # and none in its community (``community_control``: the community's control ramp, 0 for
    # none; ``None``: not known, counted as none) stays at or under ``interest_cap``.
    shown = (control > 0) | (plan > 0)
    if community_control is not None:
        shown |= np.asarray(community_control) > 0
    return np.asarray(np.where(shown, score, np.minimum(score, params.interest_cap)), np.float64)


def score_accounts(
    features: AccountFeatures,
    *,
    community: np.ndarray,
    sync_p: np.ndarray,
    params: ScoreParams,
    calibration: Calibration | None = None,
    membership: np.ndarray | None = None,
) -> AccountScores:
    """Score every account of ``features`` (pure: arrays in, arrays out).

    ``community`` gives a community label per account (any integers); ``sync_p`` the synchrony
    p-value of each community, indexed by the *dense* community index (the rank of the label
    among the distinct labels, as ``np.unique`` numbers them). The calibration is computed from
    ``features`` unless given. ``membership`` (optional, per account) is the embeddedness of
    each account in its community (:meth:`distillguard.monitor.graph.LinkGraph.embeddedness`):
    a member firmly tied to a risky community inherits its risk in full even without evidence of
    its own (see :func:`affinity`). Every engine (DuckDB, Spark) and the online scorer call this one
    function, so they agree whenever their features agree.
    """
    f, sp = features, params
    cal = calibration or calibrate(f, sp)
    p0 = cal.p0
    parts, p_el, share, own = account_signals(f, cal, sp)
    w = sp.weights
    _, cinv, csize = np.unique(np.asarray(community), return_inverse=True, return_counts=True)
    cinv = cinv.reshape(-1)
    size = csize[cinv].astype(np.float64)
    # pooled community evidence: the community's requests tested together
    ck = np.bincount(cinv, weights=f.k_elicit, minlength=len(csize))
    cn = np.bincount(cinv, weights=f.n_sample, minlength=len(csize))
    cshare = ck / np.maximum(cn, 1)
    p0c = community_base_rate(cshare[cinv], size, f.n_sample, params=sp, default=p0)
    cp = binomial_evidence(ck, cn, p0c)
    c_el = (
        ramp(-np.log10(np.maximum(cp, 1e-300)), 6.0, 20.0)
        * ramp(np.log2(np.maximum(cshare, 1e-12) / p0c), 2.0, 3.5)
        * ramp(cshare, 0.5 * p0, 1.5 * p0)
    )

    def frac(v: np.ndarray) -> np.ndarray:
        return np.asarray(
            ramp(
                np.bincount(cinv, weights=(v > 0).astype(float), minlength=len(csize)) / csize,
                0.1,
                0.5,
            )
        )

    c_parts = {"elicitation": c_el, **{k: frac(parts[k]) for k in SIGNALS if k != "elicitation"}}
    c_ev = 1.0 - np.prod([1.0 - w[k] * c_parts[k] for k in SIGNALS], axis=0)
    sync = np.asarray(sync_p, dtype=np.float64)
    c_ev = 1.0 - (1.0 - c_ev) * (1.0 - 0.3 * ramp(-np.log10(np.maximum(sync, 1e-300)), 6, 30))
    # Control: pooled content (what is asked) shows a common *interest*; a common *operator*
    # shows in shared payment instruments, sign-up bursts and proxy rotation. A community none
    # of whose members shows control (tutoring students, a grading team, a labelling vendor's
    # workers) keeps only ``control_floor`` of its evidence.
    ctrl = np.maximum.reduce([(parts[k] > 0).astype(np.float64) for k in CONTROL_SIGNALS])
    c_ctrl = ramp(np.bincount(cinv, weights=ctrl, minlength=len(csize)) / csize, 0.1, 0.4)
    c_ev = c_ev * (sp.control_floor + (1.0 - sp.control_floor) * c_ctrl)
    c_score = np.where(csize >= sp.min_campaign, c_ev * (1 - 1 / np.sqrt(csize)), 0.0)
    community_score = c_score[cinv] * affinity(
        parts, share, cshare[cinv], p0, membership=membership, params=sp
    )
    c_shown = np.where(csize >= sp.min_campaign, c_ctrl, 0.0)
    score = final_score(parts, own, community_score, sp, community_control=c_shown[cinv])
    return AccountScores(
        calibration=cal,
        signals=parts,
        elicitation_p=p_el,
        share=share,
        own=own,
        community=cinv.astype(np.int64),
        community_size=size,
        community_risk=np.asarray(c_score, dtype=np.float64),
        community_share=cshare,
        community_sync_p=sync,
        community_control=c_shown,
        community_score=community_score,
        score=score,
        flagged=score >= sp.flag_threshold,
    )
