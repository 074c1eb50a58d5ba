"""The per-account feature table every scan engine fills (:class:`AccountFeatures`).

Its own module, below :mod:`~distillguard.monitor.scoring` and
:mod:`~distillguard.monitor.features`, so that the scoring functions can name the type they read
without importing the module that calls them (``distillguard.monitor.features`` re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AccountFeatures"]


@dataclass(frozen=True)
class AccountFeatures:
    """The per-account features every engine computes, aligned by account (sorted ids).

    Behaviour (:mod:`~distillguard.monitor.behaviour`): ``exchanges``, ``first_ts_us``,
    ``last_ts_us``, ``interarrival_cv``, ``minute_entropy``, ``single_turn_share``,
    ``system_share``, ``completion_ratio`` and ``minute_hist`` (exchanges per 5-minute slot of the
    hour, shape (n, 12)). Content, over the per-account sample (the ``per_account_sample``
    exchanges with the smallest MD5 of their id): ``n_sample``, ``k_elicit``, ``k_cot``,
    ``k_grade`` (classifier counts, :mod:`~distillguard.monitor.elicitation`) and
    ``topic_divergence`` (:mod:`~distillguard.monitor.sweep`). Infrastructure
    (:mod:`~distillguard.monitor.infrastructure`): ``payment_group`` and ``signup_burst``
    (1 when unknown). ``org_id`` per account (``None``: none). ``distinct_asns`` and
    ``distinct_nets``: how many autonomous systems and /24 (IPv6 /48) networks the account's
    requests came from (``None``: not computed; the rotation signal is then off).
    """

    account_id: list[str]
    exchanges: np.ndarray
    first_ts_us: np.ndarray
    last_ts_us: np.ndarray
    interarrival_cv: np.ndarray
    minute_entropy: np.ndarray
    single_turn_share: np.ndarray
    system_share: np.ndarray
    completion_ratio: np.ndarray
    minute_hist: np.ndarray
    n_sample: np.ndarray
    k_elicit: np.ndarray
    k_cot: np.ndarray
    k_grade: np.ndarray
    topic_divergence: np.ndarray
    payment_group: np.ndarray
    signup_burst: np.ndarray
    org_id: list[str | None]
    distinct_asns: np.ndarray | None = None
    distinct_nets: np.ndarray | None = None
    #: Plan links (:func:`~distillguard.monitor.semantic.plan_links`): per account, how many of
    #: its semantic paraphrase buckets it shares with accounts under visible control, and how
    #: many it has (``None``: not computed; the plan signal is then off).
    plan_hits: np.ndarray | None = None
    plan_total: np.ndarray | None = None
    #: The accounts the plan links were counted against (flagged, with control of their own):
    #: left out of the plan signal's base rate, which must come from the other accounts.
    plan_seed: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.account_id)

    def __post_init__(self) -> None:
        n = len(self.account_id)
        for name in (
            "exchanges",
            "first_ts_us",
            "last_ts_us",
            "interarrival_cv",
            "minute_entropy",
            "single_turn_share",
            "system_share",
            "completion_ratio",
            "n_sample",
            "k_elicit",
            "k_cot",
            "k_grade",
            "topic_divergence",
            "payment_group",
            "signup_burst",
        ):
            if len(getattr(self, name)) != n:
                raise ValueError(f"feature {name} has {len(getattr(self, name))} rows, not {n}")
        if self.minute_hist.shape != (n, 12):
            raise ValueError(f"minute_hist has shape {self.minute_hist.shape}, not ({n}, 12)")
        if len(self.org_id) != n:
            raise ValueError("org_id is not aligned with account_id")
        for name in ("distinct_asns", "distinct_nets", "plan_hits", "plan_total", "plan_seed"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"feature {name} has {len(v)} rows, not {n}")
