"""Evaluation of scan results against labels, with the per-account baselines PRADA and SEAT.

Labels (``labels.parquet`` as the simulator writes it): ``account_id``, ``campaign_id`` (null for
legitimate accounts) and ``population``. Reported: account precision and recall, campaign purity
(share of each detected campaign's accounts from its majority true campaign), the false-positive
rate of every legitimate population, and, for comparison, the same precision/recall/FPR for

* **PRADA** (Juuti et al., 2019): per account, the minimum distances of each query to the
  account's earlier queries should be normally distributed for benign users; an account is flagged
  when the Shapiro-Wilk statistic W of those distances falls below ``prada_delta`` (0.9). Queries
  are represented by hashed word-count vectors of the prompt (prompts are text, not images).
* **SEAT** (Zhang et al., 2021): per account, count pairs of queries that are near-duplicates
  (cosine similarity of the same vectors above ``seat_similarity``, 0.9); an account is flagged
  when the count exceeds ``seat_pairs`` (the 99.5% quantile of the count over accounts whose
  count is below the median + 3 MAD, i.e. a threshold set from the bulk of the traffic).

Both baselines use at most ``per_account`` prompts per account (the same sample for both).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
from scipy import stats

from distillguard._internal.timeutil import to_micros
from distillguard.errors import InputError

__all__ = [
    "CampaignTiming",
    "DetectorFigures",
    "EvaluationReport",
    "baseline_flags",
    "evaluate_scan",
    "exchanges_before_flagged",
]

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class DetectorFigures:
    """Account-level figures of one detector on one labelled log."""

    detector: str
    flagged: int
    precision: float
    recall: float
    fpr_by_population: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "detector": self.detector,
            "flagged": self.flagged,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "fpr_by_population": {k: round(v, 5) for k, v in self.fpr_by_population.items()},
        }


@dataclass(frozen=True)
class EvaluationReport:
    """Our figures, the baselines' and campaign-level figures."""

    ours: DetectorFigures
    baselines: list[DetectorFigures]
    campaign_purity: dict[str, float]
    recall_by_campaign: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    time_to_flag: dict[str, CampaignTiming] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ours": self.ours.to_dict(),
            "baselines": [b.to_dict() for b in self.baselines],
            "campaign_purity": {k: round(v, 4) for k, v in self.campaign_purity.items()},
            "recall_by_campaign": {k: round(v, 4) for k, v in self.recall_by_campaign.items()},
            "time_to_flag": {k: v.to_dict() for k, v in self.time_to_flag.items()},
            **self.extra,
        }


@dataclass(frozen=True)
class CampaignTiming:
    """How long a true campaign ran before the online scorer flagged it.

    ``exchanges_before_flagged``: the campaign's exchanges the scorer had seen when it first
    flagged ``min(min_accounts, accounts)`` of the campaign's accounts (``None``: never during the
    replay); ``total_exchanges``: all of the campaign's exchanges; ``flagged_at_us``: the time of
    that exchange.
    """

    campaign: str
    accounts: int
    total_exchanges: int
    exchanges_before_flagged: int | None
    flagged_at_us: int | None

    @property
    def share_before_flagged(self) -> float | None:
        """``exchanges_before_flagged`` as a share of the campaign's exchanges."""
        if self.exchanges_before_flagged is None:
            return None
        return self.exchanges_before_flagged / max(self.total_exchanges, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        share = self.share_before_flagged
        return {
            "accounts": self.accounts,
            "total_exchanges": self.total_exchanges,
            "exchanges_before_flagged": self.exchanges_before_flagged,
            "share_before_flagged": None if share is None else round(share, 4),
            "flagged_at_us": self.flagged_at_us,
        }


def exchanges_before_flagged(
    log: Path,
    truth: dict[str, str | None],
    *,
    min_accounts: int = 3,
    config: Any = None,
) -> dict[str, CampaignTiming]:
    """Replay ``log`` in time order through the online scorer and time each true campaign.

    ``truth`` maps account ids to their true campaign (``None``: legitimate). The scorer
    (:class:`~distillguard.monitor.online.OnlineScorer` with ``config``, an
    :class:`~distillguard.monitor.online.OnlineConfig`) re-scores updated accounts every
    ``partial_every`` exchanges and everything every ``max(rescore_min, accounts)``: that is the
    resolution of the figures. The log is held in memory to sort it (fine up to a few million
    exchanges).
    """
    from distillguard.monitor.online import OnlineConfig, OnlineScorer
    from distillguard.records.reader import read_log

    reader = read_log(log)
    scorer = OnlineScorer(config or OnlineConfig())
    for batch in reader.accounts():
        for account in batch:
            scorer.register_account(account)
    exchanges = [e for batch in reader.exchanges() for e in batch]
    exchanges.sort(key=lambda e: e.ts)
    sizes: dict[str, int] = {}
    totals: dict[str, int] = {}
    for c in truth.values():
        if c is not None:
            sizes[c] = sizes.get(c, 0) + 1
    for e in exchanges:  # counts only
        c = truth.get(e.account_id)
        if c is not None:
            totals[c] = totals.get(c, 0) + 1
    seen: dict[str, int] = dict.fromkeys(sizes, 0)
    flagged: dict[str, set[str]] = {c: set() for c in sizes}
    done: dict[str, tuple[int, int]] = {}
    watched: set[str] = set()  # campaign accounts not yet flagged
    for a, c in truth.items():
        if c is not None:
            watched.add(a)
    for e in exchanges:  # the replay: one online update per exchange
        risk = scorer.update(e)
        c = truth.get(e.account_id)
        if c is not None:
            seen[c] += 1
        if not watched:
            continue
        # the update may have re-scored other accounts: check the campaign accounts it touched
        touched = (e.account_id,) if scorer.exchanges_seen % 64 else tuple(watched)
        for a in touched:
            ca = truth.get(a)
            if ca is None or ca in done or a not in watched:
                continue
            r = risk if a == e.account_id else scorer.score(a)
            if r.flagged:
                watched.discard(a)
                flagged[ca].add(a)
                if len(flagged[ca]) >= min(min_accounts, sizes[ca]):
                    done[ca] = (seen[ca], to_micros(e.ts))
    return {
        c: CampaignTiming(
            campaign=c,
            accounts=sizes[c],
            total_exchanges=totals.get(c, 0),
            exchanges_before_flagged=done[c][0] if c in done else None,
            flagged_at_us=done[c][1] if c in done else None,
        )
        for c in sorted(sizes)
    }


def _figures(
    name: str, flagged: np.ndarray, truth: np.ndarray, pops: np.ndarray
) -> DetectorFigures:
    tp = int(np.sum(flagged & truth))
    fp = int(np.sum(flagged & ~truth))
    fn = int(np.sum(~flagged & truth))
    fpr: dict[str, float] = {}
    for pop in sorted(set(pops[~truth].tolist())):
        m = (pops == pop) & ~truth
        fpr[str(pop)] = float(np.mean(flagged[m])) if m.any() else 0.0
    return DetectorFigures(
        detector=name,
        flagged=int(flagged.sum()),
        precision=tp / (tp + fp) if tp + fp else 1.0,
        recall=tp / (tp + fn) if tp + fn else 1.0,
        fpr_by_population=fpr,
    )


def _vectors(prompts: list[str], dim: int = 1024) -> np.ndarray:
    """L2-normalised hashed bag-of-words vectors (baselines only; small samples)."""
    mat = np.zeros((len(prompts), dim), dtype=np.float32)
    for i, p in enumerate(prompts):
        for w in _WORD.findall(p.lower()):
            mat[i, zlib.crc32(w.encode()) % dim] += 1.0
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    return np.asarray(mat / np.maximum(norms, 1e-9))


def baseline_flags(
    log: Path,
    account_ids: list[str],
    *,
    per_account: int = 32,
    prada_delta: float = 0.9,
    seat_similarity: float = 0.9,
) -> dict[str, np.ndarray]:
    """Per-account PRADA and SEAT flags (aligned with ``account_ids``) on the log at ``log``."""
    con = duckdb.connect()
    ex = log / "exchanges"
    src = f"'{ex}/*.parquet'" if ex.is_dir() else f"'{next(log.glob('exchanges.*'))}'"
    if not str(src).rstrip("'").endswith(".parquet"):
        raise InputError(
            "the baselines read Parquet logs only", hint="simulate with --format parquet"
        )
    rows = con.sql(
        f"""SELECT account_id, list(messages[-1].content ORDER BY ts) AS prompts FROM (
              SELECT * FROM read_parquet({src}) QUALIFY row_number() OVER
              (PARTITION BY account_id ORDER BY ts) <= {per_account}) GROUP BY account_id"""
    ).fetchall()
    con.close()
    by_acct = {a: p for a, p in rows}
    prada = np.zeros(len(account_ids), dtype=bool)
    seat_counts = np.zeros(len(account_ids))
    for i, acct in enumerate(account_ids):  # per account, as the baselines are defined
        prompts = by_acct.get(acct) or []
        if len(prompts) < 3:
            continue
        v = _vectors(prompts)
        sim = v @ v.T
        dist = 1.0 - sim
        mins = [float(np.min(dist[j, :j])) for j in range(1, len(prompts))]
        if len(mins) >= 3 and np.ptp(mins) > 0:
            prada[i] = stats.shapiro(mins).statistic < prada_delta
        iu = np.triu_indices(len(prompts), k=1)
        seat_counts[i] = float(np.sum(sim[iu] >= seat_similarity))
    med = float(np.median(seat_counts))
    mad = float(np.median(np.abs(seat_counts - med))) * 1.4826
    bulk = seat_counts[seat_counts <= med + 3 * max(mad, 1.0)]
    thr = float(np.quantile(bulk, 0.995)) if len(bulk) else 0.0
    return {"PRADA": prada, "SEAT": seat_counts > thr}


def evaluate_scan(
    results: Path,
    labels: Path,
    *,
    log: Path | None = None,
    baselines: bool = True,
    replay: bool = False,
) -> EvaluationReport:
    """Compare ``results/account_scores.parquet`` with ``labels``; baselines need ``log``, and
    so does ``replay`` (the exchanges each campaign got before the online scorer flagged it,
    :func:`exchanges_before_flagged`)."""
    scores_path = results / "account_scores.parquet"
    if not scores_path.is_file():
        raise InputError(f"{scores_path} does not exist", hint="run distillguard scan first")
    if not labels.is_file():
        raise InputError(f"labels file {labels} does not exist")
    scores = pq.read_table(scores_path)
    lab = pq.read_table(labels)
    for col in ("account_id", "campaign_id", "population"):
        if col not in lab.column_names:
            raise InputError(f"{labels} has no column {col!r}")
    lab_map = {
        a: (c, p)
        for a, c, p in zip(
            lab["account_id"].to_pylist(),
            lab["campaign_id"].to_pylist(),
            lab["population"].to_pylist(),
            strict=True,
        )
    }
    ids: list[str] = scores["account_id"].to_pylist()
    truth_c = [lab_map.get(a, (None, "unlabelled"))[0] for a in ids]
    truth = np.array([c is not None for c in truth_c])
    pops = np.array([lab_map.get(a, (None, "unlabelled"))[1] for a in ids])
    flagged = np.asarray(scores["flagged"].to_numpy(zero_copy_only=False), dtype=bool)
    ours = _figures("DistillGuard", flagged, truth, pops)
    purity: dict[str, float] = {}
    camp = scores["campaign_id"].to_pylist()
    for cid in sorted({c for c in camp if c is not None}):
        members = [truth_c[i] for i, c in enumerate(camp) if c == cid]
        values, counts = np.unique(
            np.array([m or "legitimate" for m in members]), return_counts=True
        )
        purity[cid] = float(counts.max() / counts.sum())
        del values
    rec: dict[str, float] = {}
    for tc in sorted({c for c in truth_c if c is not None}):
        m = np.array([c == tc for c in truth_c])
        rec[tc] = float(flagged[m].mean())
    base: list[DetectorFigures] = []
    if baselines and log is not None:
        for name, flags in baseline_flags(log, ids).items():
            base.append(_figures(name, flags, truth, pops))
    timing: dict[str, CampaignTiming] = {}
    if replay and log is not None:
        timing = exchanges_before_flagged(log, {a: c for a, (c, _p) in lab_map.items()})
    return EvaluationReport(
        ours=ours,
        baselines=base,
        campaign_purity=purity,
        recall_by_campaign=rec,
        time_to_flag=timing,
    )
