"""Analyst feedback: accounts confirmed as campaign or dismissed as legitimate, and refitting.

An analyst who has looked at an account records a verdict (``campaign`` or ``legitimate``) with
the admin API (``POST /admin/accounts/{id}/label``) or from a file; verdicts are kept in the
store (table ``analyst_labels``, one row per verdict, the latest per account counts, so the
history stays). :func:`fit_from_labels` refits the scan's combiner
(:mod:`~distillguard.monitor.combiner`) on the labelled accounts of a scanned log; ``distillguard
tune`` writes the model and ``distillguard scan --model`` applies it. :func:`feedback_figures`
measures what feedback buys: per log, a share of the accounts labelled at random (by class), the
combiner fitted on them, and precision/recall on the *unlabelled* rest beside the hand-set scan
on the same accounts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from distillguard._internal.timeutil import from_micros, to_micros
from distillguard.errors import ConfigurationError, InputError
from distillguard.monitor.combiner import Combiner, account_matrix, fit_combiner

if TYPE_CHECKING:
    from distillguard.monitor.lofo import LabelledScan
    from distillguard.monitor.scan import ScanDetail
    from distillguard.store import Store

__all__ = [
    "LABEL_DDL",
    "VERDICTS",
    "AnalystLabel",
    "FeedbackFigures",
    "ensure_label_tables",
    "feedback_figures",
    "fit_from_labels",
    "labels_from_file",
    "load_labels",
    "record_label",
]

logger = logging.getLogger(__name__)

Verdict = Literal["campaign", "legitimate"]
#: The verdicts an analyst can record.
VERDICTS: tuple[str, ...] = ("campaign", "legitimate")

LABEL_DDL = (
    """CREATE TABLE IF NOT EXISTS analyst_labels (
        account_id {text} NOT NULL, verdict {text} NOT NULL, actor {text} NOT NULL,
        note {text} NOT NULL, labelled_at {bigint} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS analyst_labels_account ON analyst_labels (account_id)",
)


@dataclass(frozen=True)
class AnalystLabel:
    """One analyst verdict on one account."""

    account_id: str
    verdict: str
    actor: str
    note: str
    labelled_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "account_id": self.account_id,
            "verdict": self.verdict,
            "actor": self.actor,
            "note": self.note,
            "labelled_at": self.labelled_at.isoformat().replace("+00:00", "Z"),
        }


def ensure_label_tables(store: Store) -> None:
    """Create the ``analyst_labels`` table if needed (idempotent)."""
    store.ensure_tables("analyst_labels", 1, LABEL_DDL)


def record_label(
    store: Store,
    account_id: str,
    verdict: str,
    *,
    actor: str,
    note: str = "",
    at: datetime | None = None,
) -> AnalystLabel:
    """Record an analyst's verdict (the latest verdict on an account counts).

    Raises:
        InputError: unknown verdict, or an empty account id or actor.
    """
    if verdict not in VERDICTS:
        raise InputError(f"unknown verdict {verdict!r}", hint=f"one of {', '.join(VERDICTS)}")
    if not account_id or not actor:
        raise InputError("a verdict needs an account id and an actor")
    label = AnalystLabel(
        account_id=account_id,
        verdict=verdict,
        actor=actor,
        note=note,
        labelled_at=at or datetime.now(UTC),
    )
    ensure_label_tables(store)
    with store.transaction() as cur:
        cur.execute(
            store.q(
                "INSERT INTO analyst_labels (account_id, verdict, actor, note, labelled_at) "
                "VALUES (?, ?, ?, ?, ?)"
            ),
            (account_id, verdict, actor, note, to_micros(label.labelled_at)),
        )
    logger.info("analyst verdict on %s: %s (by %s)", account_id, verdict, actor)
    return label


def load_labels(store: Store, *, history: bool = False) -> list[AnalystLabel]:
    """The latest verdict per account (``history``: every verdict, oldest first)."""
    ensure_label_tables(store)
    with store.transaction() as cur:
        cur.execute(
            store.q(
                "SELECT account_id, verdict, actor, note, labelled_at FROM analyst_labels "
                "ORDER BY labelled_at, account_id"
            )
        )
        rows = cur.fetchall()
    out = [
        AnalystLabel(
            account_id=str(r[0]),
            verdict=str(r[1]),
            actor=str(r[2]),
            note=str(r[3]),
            labelled_at=from_micros(int(r[4])),
        )
        for r in rows
    ]
    if history:
        return out
    latest: dict[str, AnalystLabel] = {}
    for label in out:
        latest[label.account_id] = label
    return [latest[a] for a in sorted(latest)]


def labels_from_file(path: Path) -> dict[str, bool]:
    """Verdicts from a Parquet or CSV file: ``account_id`` and either ``verdict``
    (``campaign``/``legitimate``) or ``campaign_id`` (null: legitimate; the simulator's and the
    zoo's ``labels.parquet``). True means campaign.

    Raises:
        InputError: unreadable file, missing columns, unknown verdicts.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        table = pacsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read labels {path}: {exc}") from exc
    cols = set(table.column_names)
    if "account_id" not in cols or not cols & {"verdict", "campaign_id"}:
        raise InputError(f"{path}: labels need account_id and verdict (or campaign_id) columns")
    ids = [str(a) for a in table["account_id"].to_pylist()]
    if "verdict" in cols:
        verdicts = table["verdict"].to_pylist()
        bad = sorted({str(v) for v in verdicts if v not in VERDICTS})
        if bad:
            raise InputError(f"{path}: unknown verdicts {bad[:5]}", hint="campaign or legitimate")
        return {a: v == "campaign" for a, v in zip(ids, verdicts, strict=True)}
    camp = table["campaign_id"].to_pylist()
    # an empty campaign_id (how CSV writes a null) is legitimate too
    return {a: c not in (None, "") for a, c in zip(ids, camp, strict=True)}


def fit_from_labels(
    detail: ScanDetail, labels: Mapping[str, bool], *, alpha: float = 0.002
) -> Combiner:
    """The combiner fitted on the labelled accounts of a scan (labels of accounts the scan did
    not see are ignored, with a warning).

    Raises:
        ConfigurationError: fewer than 5 labelled accounts of either class were scanned.
    """
    ids = list(detail.features.account_id)
    pos = {a: i for i, a in enumerate(ids)}
    unknown = [a for a in labels if a not in pos]
    if unknown:
        logger.warning(
            "%d labelled accounts are not in the scan (e.g. %s)", len(unknown), unknown[0]
        )
    rows = np.array(sorted(pos[a] for a in labels if a in pos), dtype=np.int64)
    y = np.array([labels[ids[i]] for i in rows], dtype=bool)
    if int(y.sum()) < 5 or int((~y).sum()) < 5:
        raise ConfigurationError(
            f"refitting needs at least 5 confirmed and 5 dismissed accounts in the scan "
            f"(have {int(y.sum())} and {int((~y).sum())})"
        )
    x = account_matrix(detail)[rows]
    fams = ["analyst:campaign" if v else "analyst:legitimate" for v in y]
    return fit_combiner(x, y, fams, alpha=alpha)


@dataclass(frozen=True)
class FeedbackFigures:
    """Precision and recall on the unlabelled accounts: refitted combiner and hand-set scan."""

    fraction: float
    labelled: int
    evaluated: int
    precision: dict[str, float]
    recall: dict[str, float]
    worst_fpr: dict[str, tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "fraction": self.fraction,
            "labelled": self.labelled,
            "evaluated": self.evaluated,
            "precision": {k: round(v, 4) for k, v in self.precision.items()},
            "recall": {k: round(v, 4) for k, v in self.recall.items()},
            "worst_fpr": {k: [f, round(v, 5)] for k, (f, v) in self.worst_fpr.items()},
        }


def feedback_figures(
    scans: Sequence[LabelledScan], *, fraction: float, seed: int = 0, alpha: float = 0.002
) -> FeedbackFigures:
    """Per log: label ``fraction`` of each class at random, fit on them, evaluate on the rest.

    The combiner of each log sees only that log's labelled accounts (an analyst labels the
    traffic of their own platform); figures pool the unlabelled accounts of every log.
    """
    if not 0 < fraction < 1:
        raise ConfigurationError("fraction must be between 0 and 1")
    rng = np.random.default_rng(seed)
    flags: dict[str, list[np.ndarray]] = {"refitted": [], "scan": []}
    truth: list[np.ndarray] = []
    fams: list[np.ndarray] = []
    labelled = 0
    for s in scans:
        pick = np.zeros(len(s), dtype=bool)
        for cls in (True, False):
            idx = np.flatnonzero(s.y == cls)
            k = max(5, round(fraction * len(idx)))
            pick[rng.choice(idx, size=min(k, len(idx)), replace=False)] = True
        labelled += int(pick.sum())
        fam = ["analyst:campaign" if v else "analyst:legitimate" for v in s.y[pick]]
        model = fit_combiner(s.x[pick], s.y[pick], fam, alpha=alpha)
        rest = ~pick
        flags["refitted"].append(model.flags(s.x[rest]))
        flags["scan"].append(s.flags["scan"][rest])
        truth.append(s.y[rest])
        fams.append(s.family[rest])
    from distillguard.monitor.lofo import detector_figures

    y = np.concatenate(truth)
    precision, recall, worst = detector_figures(
        {d: np.concatenate(parts) for d, parts in flags.items()}, y, np.concatenate(fams)
    )
    return FeedbackFigures(
        fraction=fraction,
        labelled=labelled,
        evaluated=len(y),
        precision=precision,
        recall=recall,
        worst_fpr=worst,
    )
