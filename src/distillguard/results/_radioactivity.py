"""The result of a radioactivity test: its model, its writer and its reader.

The file (format ``distillguard-radioactivity/1``, written by ``distillguard radioactivity
--out``) is one JSON object::

    {"format": "distillguard-radioactivity/1", "alpha": 0.001, "verdict": "radioactive",
     "suspect": SUBJECT, "control": SUBJECT or null, "tracing": {...} or null, ...extra keys}

    SUBJECT = {"subject", "mode", "role", "p_value", "detection": POOLED_TEST, "n_texts",
               "n_filtered_out", "filter", "curve": [CURVE_POINT...], "notes"}

The reader also accepts the older, loose shape: an object with ``statistic``, ``p_value`` and
``method`` (at the top level or under ``result``) and optional ``n_scored``, ``suspect`` (a
name), ``curve`` and ``details``; it is read as a suspect without control, alpha or verdict.
A ``format`` of another name, or a version newer than 1, is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from distillguard.errors import ResultFormatError
from distillguard.results import _common as c

__all__ = [
    "RADIOACTIVITY_FORMAT",
    "CurvePoint",
    "PooledTest",
    "RadioactivityResult",
    "SubjectResult",
    "read_radioactivity",
    "write_radioactivity",
]

#: The ``format`` member of a radioactivity result file (name and newest version read).
RADIOACTIVITY_FORMAT: Final = "distillguard-radioactivity/1"
_NAME, _VERSION = "distillguard-radioactivity", 1
_HINT: Final = "write one with `distillguard radioactivity ... --out FILE`"


def _opt_int(obj: Mapping[str, Any], name: str, where: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise ResultFormatError(f"{where}: field {name!r} must be a non-negative integer")
    return value


def _opt_str(obj: Mapping[str, Any], name: str, where: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise ResultFormatError(f"{where}: field {name!r} must be a string or null")
    return value


def _opt_object(obj: Mapping[str, Any], name: str, where: str) -> dict[str, Any] | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ResultFormatError(f"{where}: field {name!r} must be an object or null")
    return dict(value)


@dataclass(frozen=True)
class CurvePoint:
    """The pooled test after some prefix of the run.

    Attributes:
        n_scored: tokens scored so far (after filter and deduplication).
        statistic: the pooled statistic.
        p_value: its exact p-value.
        n_texts: texts scored so far (``None`` in files of the loose shape that lack it).
    """

    n_scored: int
    statistic: float
    p_value: float
    n_texts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``n_texts`` first, left out when unknown)."""
        out: dict[str, Any] = {} if self.n_texts is None else {"n_texts": self.n_texts}
        out.update(n_scored=self.n_scored, statistic=self.statistic, p_value=self.p_value)
        return out

    @classmethod
    def from_dict(cls, obj: Any, *, where: str) -> CurvePoint:
        """Read one point.

        Raises:
            ResultFormatError: not an object, or a field missing or of the wrong type.
        """
        if not isinstance(obj, Mapping):
            raise ResultFormatError(f"{where} is not an object")
        n_scored = c.field(obj, "n_scored", int, where)
        if n_scored < 0:
            raise ResultFormatError(f"{where}: field 'n_scored' is negative")
        return cls(
            n_scored=n_scored,
            statistic=c.number(obj, "statistic", where),
            p_value=c.p_value(obj, "p_value", where),
            n_texts=_opt_int(obj, "n_texts", where),
        )


@dataclass(frozen=True)
class PooledTest:
    """The exact pooled test of one subject (the ``detection`` object of the file).

    The fields of :class:`~distillguard.watermark.DetectionResult`; those the loose shape
    may lack are optional.
    """

    method: str
    statistic: float
    p_value: float
    n_scored: int | None = None
    key_id: str | None = None
    n_tokens: int | None = None
    n_duplicates: int | None = None
    expected: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the key order of ``DetectionResult.to_dict``)."""
        return {
            "method": self.method,
            "key_id": self.key_id,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "n_scored": self.n_scored,
            "n_tokens": self.n_tokens,
            "n_duplicates": self.n_duplicates,
            "expected": self.expected,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, obj: Any, *, where: str) -> PooledTest:
        """Read a pooled test.

        Raises:
            ResultFormatError: ``method``, ``statistic`` or ``p_value`` missing or malformed, or
                an optional field of the wrong type.
        """
        if not isinstance(obj, Mapping):
            raise ResultFormatError(f"{where} is not an object")
        details = obj.get("details")
        if details is not None and not isinstance(details, Mapping):
            raise ResultFormatError(f"{where}: field 'details' must be an object")
        return cls(
            method=c.field(obj, "method", str, where),
            statistic=c.number(obj, "statistic", where),
            p_value=c.p_value(obj, "p_value", where),
            n_scored=_opt_int(obj, "n_scored", where),
            key_id=_opt_str(obj, "key_id", where),
            n_tokens=_opt_int(obj, "n_tokens", where),
            n_duplicates=_opt_int(obj, "n_duplicates", where),
            expected=c.optional_number(obj, "expected", where),
            details=dict(details or {}),
        )


def _curve(raw: Any, where: str) -> tuple[CurvePoint, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ResultFormatError(f"{where}: field 'curve' must be a list")
    return tuple(CurvePoint.from_dict(p, where=f"{where}: curve[{i}]") for i, p in enumerate(raw))


@dataclass(frozen=True)
class SubjectResult:
    """The test of one subject (the suspect, or its control) in one mode.

    Attributes:
        subject: what was scored (a model path, an endpoint URL, a file, a lab name); ``None``
            when a file of the loose shape does not name it.
        mode: ``"open"``, ``"closed"`` or ``"texts"`` (``None`` when unknown).
        role: ``"suspect"`` or ``"control"``.
        detection: the exact pooled test.
        curve: the pooled p-value against scored tokens, as the run went.
        n_texts: texts scored.
        n_filtered_out: candidate tokens left out by the k-gram filter.
        filter: the filter's summary (``None`` when off).
        notes: why the numbers are what they are.
    """

    subject: str | None
    mode: str | None
    role: str
    detection: PooledTest
    curve: tuple[CurvePoint, ...] = ()
    n_texts: int | None = None
    n_filtered_out: int | None = None
    filter: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()

    @property
    def p_value(self) -> float:
        """The pooled p-value."""
        return self.detection.p_value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "subject": self.subject,
            "mode": self.mode,
            "role": self.role,
            "p_value": self.p_value,
            "detection": self.detection.to_dict(),
            "n_texts": self.n_texts,
            "n_filtered_out": self.n_filtered_out,
            "filter": dict(self.filter) if self.filter is not None else None,
            "curve": [p.to_dict() for p in self.curve],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, obj: Any, *, role: str, where: str) -> SubjectResult:
        """Read a subject's result (``role`` when the object names none).

        Raises:
            ResultFormatError: not an object, no ``detection`` object, or a malformed field.
        """
        if not isinstance(obj, Mapping):
            raise ResultFormatError(f"{where} is not an object")
        if not isinstance(obj.get("detection"), Mapping):
            raise ResultFormatError(f"{where}: field 'detection' must be an object")
        notes = obj.get("notes") or []
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ResultFormatError(f"{where}: field 'notes' must list strings")
        return cls(
            subject=_opt_str(obj, "subject", where),
            mode=_opt_str(obj, "mode", where),
            role=_opt_str(obj, "role", where) or role,
            detection=PooledTest.from_dict(obj["detection"], where=f"{where}.detection"),
            curve=_curve(obj.get("curve"), where),
            n_texts=_opt_int(obj, "n_texts", where),
            n_filtered_out=_opt_int(obj, "n_filtered_out", where),
            filter=_opt_object(obj, "filter", where),
            notes=tuple(notes),
        )


_KNOWN: Final = ("format", "alpha", "verdict", "suspect", "control", "tracing")


@dataclass(frozen=True)
class RadioactivityResult:
    """A suspect's radioactivity test beside its control's, with the verdict at ``alpha``.

    Attributes:
        suspect: the suspect's test.
        control: the control's (``None`` when there was none: the loose shape, or a run
            without a control).
        alpha: the significance level (``None`` in the loose shape).
        verdict: ``"radioactive"``, ``"not detected"`` or ``"inconclusive (control
            rejected)"`` as the producer decided it (``None`` in the loose shape).
        tracing: the payload tracing, when run.
        extra: further top-level members (e.g. ``key_id``, ``control_key_id``), written after
            the others in their order.
    """

    suspect: SubjectResult
    control: SubjectResult | None = None
    alpha: float | None = None
    verdict: str | None = None
    tracing: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """The suspect's test method."""
        return self.suspect.detection.method

    @property
    def statistic(self) -> float:
        """The suspect's pooled statistic."""
        return self.suspect.detection.statistic

    @property
    def p_value(self) -> float:
        """The suspect's pooled p-value."""
        return self.suspect.p_value

    @property
    def n_scored(self) -> int | None:
        """The suspect's scored tokens."""
        return self.suspect.detection.n_scored

    @property
    def curve(self) -> tuple[CurvePoint, ...]:
        """The suspect's p-value curve."""
        return self.suspect.curve

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (format ``distillguard-radioactivity/1``)."""
        return {
            "format": RADIOACTIVITY_FORMAT,
            "alpha": self.alpha,
            "verdict": self.verdict,
            "suspect": self.suspect.to_dict(),
            "control": self.control.to_dict() if self.control is not None else None,
            "tracing": dict(self.tracing) if self.tracing is not None else None,
            **dict(self.extra),
        }

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "radioactivity result") -> RadioactivityResult:
        """Read a result object (either shape, see the module docstring).

        Raises:
            ResultFormatError: not an object, a ``format`` of another name or a newer version,
                or a missing or malformed field; the message starts with ``where``.
        """
        if not isinstance(raw, Mapping):
            raise ResultFormatError(f"{where}: expected an object")
        if "format" not in raw:
            return cls._from_loose(raw, where)
        c.check_format(raw["format"], name=_NAME, version=_VERSION, where=where)
        verdict = _opt_str(raw, "verdict", where)
        control = raw.get("control")
        return cls(
            suspect=SubjectResult.from_dict(
                raw.get("suspect"), role="suspect", where=f"{where}: suspect"
            ),
            control=None
            if control is None
            else SubjectResult.from_dict(control, role="control", where=f"{where}: control"),
            alpha=c.optional_number(raw, "alpha", where),
            verdict=verdict,
            tracing=_opt_object(raw, "tracing", where),
            extra={k: v for k, v in raw.items() if k not in _KNOWN},
        )

    @classmethod
    def _from_loose(cls, raw: Mapping[str, Any], where: str) -> RadioactivityResult:
        core = raw.get("result", raw)
        if not isinstance(core, Mapping):
            raise ResultFormatError(f"{where}: field 'result' must be an object")
        details = core.get("details")
        test = PooledTest(
            method=c.field(core, "method", str, where),
            statistic=c.number(core, "statistic", where),
            p_value=c.p_value(core, "p_value", where),
            n_scored=_opt_int(core, "n_scored", where),
            details=dict(details) if isinstance(details, Mapping) else {},
        )
        suspect = raw.get("suspect", core.get("suspect"))
        return cls(
            suspect=SubjectResult(
                subject=suspect if isinstance(suspect, str) else None,
                mode=None,
                role="suspect",
                detection=test,
                curve=_curve(raw.get("curve", core.get("curve")), where),
            )
        )


def write_radioactivity(path: Path, result: RadioactivityResult) -> None:
    """Write ``result`` to ``path`` (JSON, two-space indent; NumPy scalars written as numbers).

    The bytes depend only on ``result`` (same result, same file).
    """
    path.write_bytes(
        orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )


def read_radioactivity(path: Path) -> RadioactivityResult:
    """Read a radioactivity result file (either shape, see the module docstring).

    Raises:
        ResultFormatError: the file is missing, not JSON, of another format or a newer
            version, or a field is missing or malformed; the message names the file and field.
    """
    return RadioactivityResult.from_dict(c.read_json(path, hint=_HINT), where=str(path))
