"""The result of a fingerprint attribution: its model, its writer and its reader.

The file is what ``distillguard --json fingerprint attribute`` prints (one JSON object)::

    {"suspect", "verdict", "provider_verdict", "alpha", "ranking": [FAMILY...],
     "provider_ranking": [PROVIDER...], "n_prompts", "channels", "null": {"pairs", "units"},
     "method", "explanation": {...}, ...extra keys ("teacher", "baseline")}

Version 1 carries no ``format`` marker; a later version adds
``"format": "distillguard-attribution/N"`` and this reader refuses N > 1. Files written by hand
may hold only ``ranking`` (each entry ``family``, ``statistic``, ``p_value``) and ``verdict``: the
fields they lack read as ``None`` (or empty).
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
    "ATTRIBUTION_FORMAT",
    "DEFAULT_ATTRIBUTION_METHOD",
    "AttributionResult",
    "FamilyScore",
    "ProviderScore",
    "dumps_attribution",
    "read_attribution",
    "write_attribution",
]

#: The format's name and the newest version this release reads (version 1 has no marker).
ATTRIBUTION_FORMAT: Final = "distillguard-attribution/1"
#: The method :func:`distillguard.fingerprint.attribute` names in its results.
DEFAULT_ATTRIBUTION_METHOD: Final = (
    "double-centred paired similarity vs unrelated-reference null, Holm"
)
_NAME, _VERSION = "distillguard-attribution", 1
_HINT: Final = "write one with `distillguard --json fingerprint attribute ... > FILE`"


def _opt(obj: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = obj.get(name)
    if value is None:
        return None
    return c.field(obj, name, kind, where)


def _opt_count(obj: Mapping[str, Any], name: str, where: str) -> int | None:
    value: int | None = _opt(obj, name, int, where)
    if value is not None and value < 0:
        raise ResultFormatError(f"{where}: field {name!r} is negative")
    return value


def _opt_p(obj: Mapping[str, Any], name: str, where: str) -> float | None:
    return None if obj.get(name) is None else c.p_value(obj, name, where)


def _object(obj: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ResultFormatError(f"{where}: field {name!r} must be an object")
    return dict(value)


@dataclass(frozen=True)
class FamilyScore:
    """The attribution test of the suspect against one reference family.

    Attributes:
        family: the family's name.
        statistic: standardised excess similarity of the suspect to the family's closest member,
            in standard deviations of the unrelated-pairs null (written rounded to 4 decimals).
        p_value: Holm-adjusted p-value (family-wise over all families).
        p_raw: the family's p-value before the correction across families.
        reference: the family member the suspect resembles most.
        channels: the per-channel standardised statistics for that member (written rounded to
            3 decimals).
        provider: the family's provider, where known.
        p_style: the stylometric (paired-similarity) p-value of the family, Bonferroni over its
            members, before combining with the identity channel.
        identity: the identity test of the family's member with the smallest identity p-value
            (``p_family`` = Bonferroni over members), when identity profiles were given.

    ``p_raw`` and ``reference`` are ``None`` only when read from a file that lacks them.
    """

    family: str
    statistic: float
    p_value: float
    p_raw: float | None = None
    reference: str | None = None
    channels: Mapping[str, float] = field(default_factory=dict)
    provider: str | None = None
    p_style: float | None = None
    identity: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        out: dict[str, Any] = {
            "family": self.family,
            "statistic": round(self.statistic, 4),
            "p_value": self.p_value,
            "p_raw": self.p_raw,
            "reference": self.reference,
            "channels": {k: round(v, 3) for k, v in self.channels.items()},
            "provider": self.provider,
            "p_style": self.p_style,
        }
        if self.identity is not None:
            out["identity"] = dict(self.identity)
        return out

    @classmethod
    def from_dict(cls, obj: Any, *, where: str) -> FamilyScore:
        """Read one ranking entry.

        Raises:
            ResultFormatError: not an object, ``family``/``statistic``/``p_value`` missing or
                malformed, or an optional field of the wrong type.
        """
        if not isinstance(obj, Mapping):
            raise ResultFormatError(f"{where} is not an object")
        channels = _object(obj, "channels", where)
        for name in channels:
            c.number(channels, name, f"{where}: channels")
        identity = obj.get("identity")
        if identity is not None and not isinstance(identity, Mapping):
            raise ResultFormatError(f"{where}: field 'identity' must be an object")
        return cls(
            family=c.field(obj, "family", str, where),
            statistic=c.number(obj, "statistic", where),
            p_value=c.p_value(obj, "p_value", where),
            p_raw=_opt_p(obj, "p_raw", where),
            reference=_opt(obj, "reference", str, where),
            channels={k: float(v) for k, v in channels.items()},
            provider=_opt(obj, "provider", str, where),
            p_style=_opt_p(obj, "p_style", where),
            identity=None if identity is None else dict(identity),
        )


@dataclass(frozen=True)
class ProviderScore:
    """The provider-level answer: did the suspect learn from *some* model of this provider?

    Attributes:
        provider: the provider.
        p_value: the smallest Holm-adjusted p-value of the provider's families.
        p_raw: that family's p-value before the correction across families.
        family: the provider's family with the smallest p-value.
    """

    provider: str
    p_value: float
    p_raw: float | None
    family: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "provider": self.provider,
            "p_value": self.p_value,
            "p_raw": self.p_raw,
            "family": self.family,
        }

    @classmethod
    def from_dict(cls, obj: Any, *, where: str) -> ProviderScore:
        """Read one provider ranking entry.

        Raises:
            ResultFormatError: not an object, or a field missing or malformed.
        """
        if not isinstance(obj, Mapping):
            raise ResultFormatError(f"{where} is not an object")
        return cls(
            provider=c.field(obj, "provider", str, where),
            p_value=c.p_value(obj, "p_value", where),
            p_raw=_opt_p(obj, "p_raw", where),
            family=c.field(obj, "family", str, where),
        )


_KNOWN: Final = (
    "format",
    "suspect",
    "verdict",
    "provider_verdict",
    "alpha",
    "ranking",
    "provider_ranking",
    "n_prompts",
    "channels",
    "null",
    "method",
    "explanation",
)


@dataclass(frozen=True)
class AttributionResult:
    """A fingerprint attribution: a verdict (a family or ``None``) and the full ranking.

    Attributes:
        suspect: the suspect's name.
        verdict: the attributed family, or ``None`` when no family's test rejects at ``alpha``.
        alpha: the family-wise significance level.
        ranking: every family, smallest p-value first.
        n_prompts: the probes both the suspect and the references answered.
        channels: the feature channels used.
        null_pairs, null_units: the size of the unrelated-reference null.
        explanation: why (closest member, shared phrases, identity sentences...).
        method: the test.
        provider_verdict: the attributed provider, or ``None``.
        provider_ranking: every provider, smallest p-value first.
        extra: further top-level members (``teacher``, ``baseline``), written last in order.

    Fields other than ``verdict`` and ``ranking`` are ``None`` (or empty) only when read from a
    file that lacks them.
    """

    suspect: str | None
    verdict: str | None
    alpha: float | None
    ranking: tuple[FamilyScore, ...]
    n_prompts: int | None = None
    channels: tuple[str, ...] = ()
    null_pairs: int | None = None
    null_units: int | None = None
    explanation: Mapping[str, Any] = field(default_factory=dict)
    method: str | None = DEFAULT_ATTRIBUTION_METHOD
    provider_verdict: str | None = None
    provider_ranking: tuple[ProviderScore, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``distillguard fingerprint attribute --json``."""
        return {
            "suspect": self.suspect,
            "verdict": self.verdict,
            "provider_verdict": self.provider_verdict,
            "alpha": self.alpha,
            "ranking": [s.to_dict() for s in self.ranking],
            "provider_ranking": [s.to_dict() for s in self.provider_ranking],
            "n_prompts": self.n_prompts,
            "channels": list(self.channels),
            "null": {"pairs": self.null_pairs, "units": self.null_units},
            "method": self.method,
            "explanation": dict(self.explanation),
            **dict(self.extra),
        }

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "attribution result") -> AttributionResult:
        """Read an attribution result object.

        Raises:
            ResultFormatError: not an object, a ``format`` marker of another name or a newer
                version, no ``ranking`` list, or a field of the wrong type; the message starts
                with ``where``.
        """
        if not isinstance(raw, Mapping):
            raise ResultFormatError(f"{where}: expected an object")
        c.check_format(raw.get("format"), name=_NAME, version=_VERSION, where=where)
        verdict = raw.get("verdict")
        if verdict is not None and not isinstance(verdict, str):
            raise ResultFormatError(f"{where}: field 'verdict' must be a family name or null")
        ranking = c.field(raw, "ranking", list, where)
        providers = raw.get("provider_ranking") or []
        if not isinstance(providers, list):
            raise ResultFormatError(f"{where}: field 'provider_ranking' must be a list")
        channels = raw.get("channels") or []
        if not isinstance(channels, list) or not all(isinstance(x, str) for x in channels):
            raise ResultFormatError(f"{where}: field 'channels' must list channel names")
        null = _object(raw, "null", where)
        return cls(
            suspect=_opt(raw, "suspect", str, where),
            verdict=verdict,
            alpha=_opt_p(raw, "alpha", where),
            ranking=tuple(
                FamilyScore.from_dict(x, where=f"{where}: ranking[{i}]")
                for i, x in enumerate(ranking)
            ),
            n_prompts=_opt_count(raw, "n_prompts", where),
            channels=tuple(channels),
            null_pairs=_opt_count(null, "pairs", f"{where}: null"),
            null_units=_opt_count(null, "units", f"{where}: null"),
            explanation=_object(raw, "explanation", where),
            method=_opt(raw, "method", str, where),
            provider_verdict=_opt(raw, "provider_verdict", str, where),
            provider_ranking=tuple(
                ProviderScore.from_dict(x, where=f"{where}: provider_ranking[{i}]")
                for i, x in enumerate(providers)
            ),
            extra={k: v for k, v in raw.items() if k not in _KNOWN},
        )


def dumps_attribution(result: AttributionResult) -> bytes:
    """The file's bytes: :meth:`AttributionResult.to_dict` as ``--json`` prints it (two-space
    indent, non-string keys allowed, a final newline)."""
    return orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + (
        b"\n"
    )


def write_attribution(path: Path, result: AttributionResult) -> None:
    """Write ``result`` to ``path`` (the bytes ``distillguard --json fingerprint attribute``
    prints for it)."""
    path.write_bytes(dumps_attribution(result))


def read_attribution(path: Path) -> AttributionResult:
    """Read an attribution result file.

    Raises:
        ResultFormatError: the file is missing, not JSON, of another format or a newer
            version, or a field is missing or malformed; the message names the file and field.
    """
    return AttributionResult.from_dict(c.read_json(path, hint=_HINT), where=str(path))
