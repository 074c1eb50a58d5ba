"""Reading the result files a report is made of, with errors that name the file and the field.

* :func:`load_scan` reads a scan's output folder (``campaigns.json``, ``account_scores.parquet``,
  ``scan_summary.json``; format v1 "Results of a scan").
* :func:`load_radioactivity` reads a radioactivity test result (JSON): the statistic, the
  p-value and the method, optionally a p-value curve.
* :func:`load_attribution` reads ``distillguard fingerprint attribute --json`` output: the
  verdict and the ranking of model families.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard._internal.timeutil import parse_rfc3339
from distillguard.errors import InputError

__all__ = [
    "AttributionEvidence",
    "CampaignResult",
    "CurvePoint",
    "FamilyScore",
    "RadioactivityEvidence",
    "ScanResults",
    "load_attribution",
    "load_radioactivity",
    "load_scan",
]


@dataclass(frozen=True)
class CampaignResult:
    """One entry of ``campaigns.json``."""

    campaign_id: str
    accounts: tuple[str, ...]
    score: float
    first_seen: datetime
    last_seen: datetime
    exchanges: int
    signals: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScanResults:
    """A scan's output folder: its campaigns, every account's score and its summary."""

    folder: Path
    campaigns: tuple[CampaignResult, ...]
    accounts: pa.Table
    summary: Mapping[str, Any]

    def __repr__(self) -> str:
        return (
            f"ScanResults(folder={self.folder!r}, campaigns={len(self.campaigns)}, "
            f"accounts={self.accounts.num_rows})"
        )


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise InputError(f"{where}: field {name!r} is missing")
    value = obj[name]
    if isinstance(value, bool) and kind is not bool:
        raise InputError(f"{where}: field {name!r} has the wrong type")
    if not isinstance(value, kind):
        raise InputError(f"{where}: field {name!r} has the wrong type")
    return value


def _number(obj: Mapping[str, Any], name: str, where: str) -> float:
    value = float(_field(obj, name, (int, float), where))
    if not math.isfinite(value):
        raise InputError(f"{where}: field {name!r} is not a finite number")
    return value


def _p_value(obj: Mapping[str, Any], name: str, where: str) -> float:
    value = _number(obj, name, where)
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{where}: field {name!r} is not a p-value in [0, 1]")
    return value


def _time(obj: Mapping[str, Any], name: str, where: str) -> datetime:
    text = _field(obj, name, str, where)
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise InputError(f"{where}: field {name!r} is not an RFC 3339 timestamp") from None


def _campaign(obj: Any, where: str) -> CampaignResult:
    if not isinstance(obj, Mapping):
        raise InputError(f"{where} is not an object")
    accounts = _field(obj, "accounts", list, where)
    if not all(isinstance(a, str) for a in accounts):
        raise InputError(f"{where}: field 'accounts' must list account ids")
    signals = obj.get("signals", {})
    if not isinstance(signals, Mapping):
        raise InputError(f"{where}: field 'signals' must be an object")
    exchanges = _field(obj, "exchanges", int, where)
    if exchanges < 0:
        raise InputError(f"{where}: field 'exchanges' is negative")
    first, last = _time(obj, "first_seen", where), _time(obj, "last_seen", where)
    if last < first:
        raise InputError(f"{where}: 'last_seen' is before 'first_seen'")
    return CampaignResult(
        campaign_id=_field(obj, "campaign_id", str, where),
        accounts=tuple(accounts),
        score=_number(obj, "score", where),
        first_seen=first,
        last_seen=last,
        exchanges=exchanges,
        signals=dict(signals),
    )


_SCORE_COLUMNS = ("account_id", "score", "flagged", "campaign_id")


def load_scan(folder: Path) -> ScanResults:
    """Read a scan's output folder.

    Raises:
        InputError: a file is missing or malformed; the message names the file and the field.
    """
    if not folder.is_dir():
        raise InputError(
            f"{folder} is not a scan output folder", hint="run `distillguard scan --out DIR`"
        )
    path = folder / "campaigns.json"
    raw = _read_json(path)
    if not isinstance(raw, list):
        raise InputError(f"{path}: expected a list of campaigns")
    campaigns = tuple(_campaign(c, f"{path}: campaign {i}") for i, c in enumerate(raw))
    ids = [c.campaign_id for c in campaigns]
    if len(set(ids)) != len(ids):
        raise InputError(f"{path}: a campaign id appears twice")
    scores = folder / "account_scores.parquet"
    try:
        table = pq.read_table(scores)
    except FileNotFoundError:
        raise InputError(f"{scores} does not exist") from None
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{scores} is not a readable Parquet file ({exc})") from None
    missing = [c for c in _SCORE_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"{scores}: column(s) {', '.join(missing)} missing")
    summary_path = folder / "scan_summary.json"
    summary = _read_json(summary_path) if summary_path.exists() else {}
    if not isinstance(summary, Mapping):
        raise InputError(f"{summary_path}: expected an object")
    return ScanResults(folder=folder, campaigns=campaigns, accounts=table, summary=summary)


@dataclass(frozen=True)
class CurvePoint:
    """The pooled radioactivity test after part of the run."""

    n_scored: int
    statistic: float
    p_value: float


@dataclass(frozen=True)
class RadioactivityEvidence:
    """A radioactivity test result: did the suspect learn from our watermarked outputs."""

    source: Path
    method: str
    statistic: float
    p_value: float
    n_scored: int | None
    suspect: str | None
    curve: tuple[CurvePoint, ...]
    details: Mapping[str, Any] = field(default_factory=dict)


def _from_radioactivity_report(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Flatten a ``distillguard radioactivity --out`` file: the suspect's detection and curve,
    its subject, and the verdict and control's p-value in ``details``."""
    suspect = raw.get("suspect")
    if not isinstance(suspect, Mapping) or not isinstance(suspect.get("detection"), Mapping):
        raise InputError(f"{where}: field 'suspect.detection' must be an object")
    detection = dict(suspect["detection"])
    details = dict(detection.get("details") or {})
    details["verdict"] = raw.get("verdict")
    control = raw.get("control")
    if isinstance(control, Mapping):
        details["control"] = control.get("subject")
        details["control_p_value"] = control.get("p_value")
    detection["details"] = details
    return {
        "result": detection,
        "curve": suspect.get("curve", []),
        "suspect": suspect.get("subject"),
    }


def load_radioactivity(path: Path) -> RadioactivityEvidence:
    """Read a radioactivity result.

    Either the file ``distillguard radioactivity --out`` writes (format
    ``distillguard-radioactivity/1``), or an object with ``statistic``, ``p_value`` and ``method``
    (at the top level or under ``result``), optional ``n_scored``, ``suspect`` and ``curve`` (a
    list of ``{n_scored, statistic, p_value}``).

    Raises:
        InputError: the file is missing or malformed; the message names the field.
    """
    raw = _read_json(path)
    where = str(path)
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: expected an object")
    if raw.get("format") == "distillguard-radioactivity/1":
        raw = _from_radioactivity_report(raw, where)
    core = raw.get("result", raw)
    if not isinstance(core, Mapping):
        raise InputError(f"{where}: field 'result' must be an object")
    n_scored = core.get("n_scored")
    if n_scored is not None and (type(n_scored) is not int or n_scored < 0):
        raise InputError(f"{where}: field 'n_scored' must be a non-negative integer")
    curve_raw = raw.get("curve", core.get("curve", []))
    if not isinstance(curve_raw, list):
        raise InputError(f"{where}: field 'curve' must be a list")
    curve: list[CurvePoint] = []
    for i, point in enumerate(curve_raw):
        at = f"{where}: curve[{i}]"
        if not isinstance(point, Mapping):
            raise InputError(f"{at} is not an object")
        n = _field(point, "n_scored", int, at)
        curve.append(
            CurvePoint(
                n_scored=n,
                statistic=_number(point, "statistic", at),
                p_value=_p_value(point, "p_value", at),
            )
        )
    suspect = raw.get("suspect", core.get("suspect"))
    details = core.get("details", {})
    return RadioactivityEvidence(
        source=path,
        method=str(_field(core, "method", str, where)),
        statistic=_number(core, "statistic", where),
        p_value=_p_value(core, "p_value", where),
        n_scored=n_scored,
        suspect=suspect if isinstance(suspect, str) else None,
        curve=tuple(curve),
        details=dict(details) if isinstance(details, Mapping) else {},
    )


@dataclass(frozen=True)
class FamilyScore:
    """One model family in an attribution ranking."""

    family: str
    statistic: float
    p_value: float


@dataclass(frozen=True)
class AttributionEvidence:
    """A fingerprint attribution: the verdict (a family or None) and the ranking."""

    source: Path
    suspect: str | None
    verdict: str | None
    alpha: float | None
    method: str | None
    ranking: tuple[FamilyScore, ...]
    explanation: Mapping[str, Any] = field(default_factory=dict)


def load_attribution(path: Path) -> AttributionEvidence:
    """Read ``distillguard fingerprint attribute --json`` output.

    Raises:
        InputError: the file is missing or malformed; the message names the field.
    """
    raw = _read_json(path)
    where = str(path)
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: expected an object")
    verdict = raw.get("verdict")
    if verdict is not None and not isinstance(verdict, str):
        raise InputError(f"{where}: field 'verdict' must be a family name or null")
    ranking_raw = _field(raw, "ranking", list, where)
    ranking: list[FamilyScore] = []
    for i, item in enumerate(ranking_raw):
        at = f"{where}: ranking[{i}]"
        if not isinstance(item, Mapping):
            raise InputError(f"{at} is not an object")
        ranking.append(
            FamilyScore(
                family=_field(item, "family", str, at),
                statistic=_number(item, "statistic", at),
                p_value=_p_value(item, "p_value", at),
            )
        )
    alpha = raw.get("alpha")
    suspect = raw.get("suspect")
    method = raw.get("method")
    explanation = raw.get("explanation", {})
    return AttributionEvidence(
        source=path,
        suspect=suspect if isinstance(suspect, str) else None,
        verdict=verdict,
        alpha=float(alpha)
        if isinstance(alpha, int | float) and not isinstance(alpha, bool)
        else None,
        method=method if isinstance(method, str) else None,
        ranking=tuple(ranking),
        explanation=dict(explanation) if isinstance(explanation, Mapping) else {},
    )
