"""Evaluation by held-out family: every population and strategy scored by a model that never saw it.

A labelled log (the simulator's or the scenario zoo's ``labels.parquet``) is scanned once
(:func:`labelled_scan`); its accounts carry a *family*: the legitimate population or the campaign
strategy they come from, prefixed with the generator (``sim:developers``, ``zoo:low_and_slow``).
:func:`leave_one_family_out` then, for every family, fits the combiner
(:func:`~distillguard.monitor.combiner.fit_combiner`) on every other family of every log and
scores the held-out family with it, so that each account's verdict comes from a model that has
never seen its family. :func:`leave_one_generator_out` does the same per generator (fit on the
simulator's traffic, judge the zoo's, and back): the closest we get here to traffic nobody here
wrote. Both report per-family recall (campaigns) and false-positive rate (legitimate
populations), and pooled account precision and recall, beside the hand-set scan's flags and the
per-account baselines PRADA and SEAT on the same accounts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from distillguard.errors import InputError
from distillguard.monitor.combiner import account_matrix, fit_combiner
from distillguard.monitor.scan import ScanConfig, scan

__all__ = [
    "FamilyFigures",
    "LabelledScan",
    "LofoReport",
    "detector_figures",
    "labelled_scan",
    "leave_one_family_out",
    "leave_one_generator_out",
]

logger = logging.getLogger(__name__)

#: The detectors every report compares.
DETECTORS = ("combiner", "scan", "prada", "seat")


@dataclass(frozen=True)
class LabelledScan:
    """One scanned, labelled log: the evidence matrix and the truth of every account."""

    name: str
    generator: str
    account_id: list[str]
    x: np.ndarray
    y: np.ndarray
    family: np.ndarray
    flags: dict[str, np.ndarray]  # "scan" (hand-set scores), "prada", "seat"

    def __len__(self) -> int:
        return len(self.account_id)


def _families(labels: Path, ids: list[str], generator: str) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(labels)
    cols = set(t.column_names)
    if not {"account_id", "campaign_id"} <= cols:
        raise InputError(f"{labels}: labels need account_id and campaign_id columns")
    acct = t["account_id"].to_pylist()
    camp = t["campaign_id"].to_pylist()
    fam = t["family"].to_pylist() if "family" in cols else None
    pop = t["population"].to_pylist() if "population" in cols else [None] * len(acct)
    by_id: dict[str, tuple[bool, str]] = {}
    for i, a in enumerate(acct):
        name = fam[i] if fam is not None and fam[i] else (camp[i] or pop[i] or "unlabelled")
        by_id[a] = (camp[i] is not None, f"{generator}:{name}")
    missing = [a for a in ids if a not in by_id]
    if missing:
        raise InputError(
            f"{labels}: {len(missing)} scanned accounts have no label (e.g. {missing[0]})"
        )
    y = np.array([by_id[a][0] for a in ids], dtype=bool)
    family = np.array([by_id[a][1] for a in ids], dtype=object)
    return y, family


def labelled_scan(
    log: Path,
    *,
    labels: Path | None = None,
    generator: str,
    name: str | None = None,
    baselines: bool = True,
    config: ScanConfig | None = None,
) -> LabelledScan:
    """Scan ``log`` and read its labels (default ``log/labels.parquet``)."""
    from dataclasses import replace

    result = scan(log, config=replace(config or ScanConfig(), keep_detail=True))
    if result.detail is None:
        raise InputError("the evaluation needs the DuckDB engine's scan details")
    ids = list(result.detail.features.account_id)
    y, family = _families(labels or log / "labels.parquet", ids, generator)
    flags = {"scan": np.asarray(result.accounts["flagged"].to_numpy(zero_copy_only=False), bool)}
    if baselines:
        from distillguard.monitor.evaluate import baseline_flags

        flags.update({k.lower(): v for k, v in baseline_flags(log, ids).items()})
    return LabelledScan(
        name=name or f"{generator}:{log.name}",
        generator=generator,
        account_id=ids,
        x=account_matrix(result.detail),
        y=y,
        family=family,
        flags=flags,
    )


@dataclass(frozen=True)
class FamilyFigures:
    """One family's figures: its kind, size, and the share flagged by each detector."""

    family: str
    campaign: bool
    accounts: int
    flagged_share: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "family": self.family,
            "kind": "campaign" if self.campaign else "legitimate",
            "accounts": self.accounts,
            "flagged_share": {k: round(v, 5) for k, v in self.flagged_share.items()},
        }


@dataclass(frozen=True)
class LofoReport:
    """Held-out figures: per family, and pooled precision/recall per detector."""

    protocol: str
    alpha: float
    families: list[FamilyFigures]
    precision: dict[str, float]
    recall: dict[str, float]
    worst_fpr: dict[str, tuple[str, float]]
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "protocol": self.protocol,
            "alpha": self.alpha,
            "precision": {k: round(v, 4) for k, v in self.precision.items()},
            "recall": {k: round(v, 4) for k, v in self.recall.items()},
            "worst_fpr": {k: [f, round(v, 5)] for k, (f, v) in self.worst_fpr.items()},
            "families": [f.to_dict() for f in self.families],
            "thresholds": {k: round(v, 6) for k, v in self.thresholds.items()},
        }

    def table(self) -> str:
        """A plain-text table: one row per family, one column per detector."""
        dets = [d for d in DETECTORS if d in self.precision]
        head = f"{'family':<34} {'kind':<5} {'n':>6} " + " ".join(f"{d:>9}" for d in dets)
        lines = [head, "-" * len(head)]
        for f in sorted(self.families, key=lambda r: (not r.campaign, r.family)):
            vals = " ".join(f"{f.flagged_share.get(d, float('nan')):>9.3f}" for d in dets)
            kind = "camp" if f.campaign else "legit"
            lines.append(f"{f.family:<34} {kind:<5} {f.accounts:>6} {vals}")
        lines.append("-" * len(head))
        lines.append(f"{'precision':<47} " + " ".join(f"{self.precision[d]:>9.3f}" for d in dets))
        lines.append(f"{'recall':<47} " + " ".join(f"{self.recall[d]:>9.3f}" for d in dets))
        lines.append(
            f"{'worst legitimate FPR':<47} "
            + " ".join(f"{self.worst_fpr[d][1]:>9.4f}" for d in dets)
        )
        return "\n".join(lines)


def detector_figures(
    flags: Mapping[str, np.ndarray], y: np.ndarray, family: np.ndarray
) -> tuple[dict[str, float], dict[str, float], dict[str, tuple[str, float]]]:
    """Per detector (``flags``: its flag per account): account precision, recall, and the
    legitimate family (of ``family``, where ``y`` is False) with the highest flagged share."""
    legit = sorted(set(family[~y].tolist()))
    precision: dict[str, float] = {}
    recall: dict[str, float] = {}
    worst: dict[str, tuple[str, float]] = {}
    for d, v in flags.items():
        tp = int((v & y).sum())
        precision[d] = tp / max(int(v.sum()), 1)
        recall[d] = tp / max(int(y.sum()), 1)
        rates = [(str(f), float(v[family == f].mean())) for f in legit]
        worst[d] = max(rates, key=lambda r: r[1]) if rates else ("", 0.0)
    return precision, recall, worst


def _report(
    protocol: str,
    alpha: float,
    scans: Sequence[LabelledScan],
    predicted: list[np.ndarray],
    thresholds: dict[str, float],
) -> LofoReport:
    y = np.concatenate([s.y for s in scans])
    fam = np.concatenate([s.family for s in scans])
    flags = {"combiner": np.concatenate(predicted)}
    for d in DETECTORS[1:]:
        if all(d in s.flags for s in scans):
            flags[d] = np.concatenate([s.flags[d] for s in scans])
    families: list[FamilyFigures] = []
    for name in sorted(set(fam.tolist())):
        m = fam == name
        families.append(
            FamilyFigures(
                family=str(name),
                campaign=bool(y[m][0]),
                accounts=int(m.sum()),
                flagged_share={d: float(v[m].mean()) for d, v in flags.items()},
            )
        )
    precision, recall, worst = detector_figures(flags, y, fam)
    return LofoReport(
        protocol=protocol,
        alpha=alpha,
        families=families,
        precision=precision,
        recall=recall,
        worst_fpr=worst,
        thresholds=thresholds,
    )


def _held_out(
    scans: Sequence[LabelledScan], group_of: list[np.ndarray], *, alpha: float, protocol: str
) -> LofoReport:
    x = np.concatenate([s.x for s in scans])
    y = np.concatenate([s.y for s in scans])
    fam = np.concatenate([s.family for s in scans])
    grp = np.concatenate(group_of)
    pred = np.zeros(len(y), dtype=bool)
    thresholds: dict[str, float] = {}
    for g in sorted(set(grp.tolist())):
        test = grp == g
        train = ~test
        if len(np.unique(y[train])) < 2:
            logger.warning("held-out group %s leaves one class only: not scored", g)
            continue
        model = fit_combiner(x[train], y[train], fam[train].tolist(), alpha=alpha)
        pred[test] = model.flags(x[test])
        thresholds[str(g)] = model.threshold
    out: list[np.ndarray] = []
    lo = 0
    for s in scans:
        out.append(pred[lo : lo + len(s)])
        lo += len(s)
    return _report(protocol, alpha, scans, out, thresholds)


def leave_one_family_out(scans: Sequence[LabelledScan], *, alpha: float = 0.002) -> LofoReport:
    """Each family scored by a combiner fitted on all the other families (of every log)."""
    return _held_out(scans, [s.family for s in scans], alpha=alpha, protocol="leave-one-family-out")


def leave_one_generator_out(scans: Sequence[LabelledScan], *, alpha: float = 0.002) -> LofoReport:
    """Each generator's logs scored by a combiner fitted on the other generators' logs only."""
    groups = [np.full(len(s), s.generator, dtype=object) for s in scans]
    return _held_out(scans, groups, alpha=alpha, protocol="leave-one-generator-out")
