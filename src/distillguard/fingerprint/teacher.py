"""The question a provider asks: did this suspect learn from *our* model? (one-vs-rest test)

:func:`~distillguard.fingerprint.attribution.attribute` asks "which family, if any" and pays for
testing every family at once (Holm over ~30 families). A provider usually has one question: did
the suspect learn from our family T? :func:`teacher_test` answers it with one test, at level α,
whose null comes from references that **cannot have learned from T**:

- references of another provider released **before** T's first public release (they could not
  have been trained on T's outputs), or
- references of a provider in ``documented_providers`` (default :data:`DOCUMENTED_PROVIDERS`:
  providers that describe their post-training data as their own and whose terms forbid training
  on competitors' outputs; a claim, not a measurement: where it is false, the null holds a student
  of T, gets wider and the test more conservative, never less).

Release dates come from the families file (an entry's ``released`` field, ISO date) or, for the
AlpacaEval references, from the table shipped in ``fingerprint/data/releases.json``.

The statistic is the combined stylometric statistic of :func:`attribute` towards T's closest
member; each null reference contributes its own statistic towards T's closest member (so the
choice of member is calibrated without a correction). With identity profiles, the identity test
(:mod:`~distillguard.fingerprint.identity`) is run against the same null (its signature formulas
must be specific against every reference of another provider), and the two p-values are combined
by Bonferroni. The provider-level answer repeats the test with every reference of
T's provider as the teacher set, combined with the family's p-value (see :class:`TeacherResult`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from distillguard.errors import InputError
from distillguard.fingerprint.attribution import (
    PreparedStatistics,
    _check_inputs,
    _identity_of,
    _statistics,
    combine_channels,
)
from distillguard.fingerprint.features import Fingerprint
from distillguard.fingerprint.identity import IdentityProfile, identity_test
from distillguard.fingerprint.outputs import FamilyMap
from distillguard.fingerprint.stats import NullModel, bonferroni

__all__ = [
    "DOCUMENTED_PROVIDERS",
    "OneVsRest",
    "TeacherResult",
    "family_release",
    "model_release",
    "teacher_null",
    "teacher_test",
]

logger = logging.getLogger(__name__)

#: Providers whose references serve as the null of every other provider's teacher test.
DOCUMENTED_PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "google", "meta")
_MIN_NULL = 4


@lru_cache(maxsize=1)
def _shipped() -> dict[str, dict[str, str]]:
    ref = resources.files("distillguard.fingerprint").joinpath("data", "releases.json")
    data = json.loads(ref.read_text(encoding="utf-8"))
    return {"models": dict(data["models"]), "families": dict(data["families"])}


def _date(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        logger.warning("ignoring release date %r (not an ISO date)", text)
        return None


def model_release(name: str, families: FamilyMap) -> dt.date | None:
    """A reference's first public release: the families file's ``released``, else the table."""
    return _date(families.released.get(name) or _shipped()["models"].get(name))


def family_release(members: Sequence[str], families: FamilyMap) -> dt.date | None:
    """The earliest release among ``members`` and their families' entries in the table."""
    dates = [model_release(m, families) for m in members]
    table = _shipped()["families"]
    dates += [_date(table.get(families.families[m])) for m in members]
    known = [d for d in dates if d is not None]
    return min(known) if known else None


def teacher_null(
    teacher: Sequence[str],
    references: Sequence[str],
    families: FamilyMap,
    *,
    documented_providers: Sequence[str] = DOCUMENTED_PROVIDERS,
) -> dict[str, str]:
    """The references that cannot have learned from the ``teacher`` models, with the reason."""
    first = family_release(teacher, families)
    out: dict[str, str] = {}
    for name in references:
        if name in teacher or any(families.related(name, t) for t in teacher):
            continue
        released = model_release(name, families)
        if first is not None and released is not None and released < first:
            out[name] = f"released {released.isoformat()}, before {first.isoformat()}"
        elif families.providers.get(name) in documented_providers:
            out[name] = f"documented provider {families.providers[name]}"
    return out


@dataclass(frozen=True)
class OneVsRest:
    """One one-vs-rest answer (a family, or every model of a provider).

    Attributes:
        target: the family or provider tested.
        members: the references that stand for it.
        learned: ``p_value < alpha``.
        p_value: the combined p-value (stylometric and identity, Bonferroni over the two).
        p_style: the stylometric p-value (Student t over the null references).
        statistic: the suspect's standardised statistic against the null references.
        reference: the member the suspect resembles most.
        identity: the identity test against the member with the smallest identity p-value.
        null: the null references and why each cannot have learned from the target.
    """

    target: str
    members: tuple[str, ...]
    learned: bool
    p_value: float
    p_style: float
    statistic: float
    reference: str
    identity: Mapping[str, Any] | None
    null: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        out: dict[str, Any] = {
            "target": self.target,
            "members": list(self.members),
            "learned": self.learned,
            "p_value": self.p_value,
            "p_style": self.p_style,
            "statistic": round(self.statistic, 4),
            "reference": self.reference,
            "null": dict(self.null),
        }
        if self.identity is not None:
            out["identity"] = dict(self.identity)
        return out


@dataclass(frozen=True)
class TeacherResult:
    """The answers of :func:`teacher_test`: the family and its provider.

    ``provider_answer.p_value`` is ``min(1, 2 min(p_family, provider_set_p))``: the family's
    p-value is valid for "learned from no model of the provider" too (that null implies the
    family's), ``provider_set_p`` is the test with every model of the provider as the teacher
    set, and Bonferroni over the two keeps the level.
    """

    suspect: str
    teacher: str
    provider: str | None
    alpha: float
    family: OneVsRest
    provider_answer: OneVsRest | None
    provider_set_p: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the ``teacher`` field of ``fingerprint attribute --teacher``)."""
        return {
            "suspect": self.suspect,
            "teacher": self.teacher,
            "provider": self.provider,
            "alpha": self.alpha,
            "learned_from_teacher": self.family.learned,
            "learned_from_provider": (
                self.provider_answer.learned if self.provider_answer is not None else None
            ),
            "family": self.family.to_dict(),
            "provider_answer": (
                self.provider_answer.to_dict() if self.provider_answer is not None else None
            ),
            "provider_set_p": self.provider_set_p,
            "method": "one-vs-rest: closest member vs references that cannot have learned "
            "from the teacher (released before it or documented provider); Student t null; "
            "identity channel by exact test, Bonferroni over the two",
        }


def teacher_test(
    suspect: Fingerprint,
    references: Sequence[Fingerprint],
    families: FamilyMap,
    teacher: str,
    *,
    alpha: float = 0.01,
    channels: Sequence[str] | None = None,
    suspect_identity: IdentityProfile | None = None,
    reference_identity: Mapping[str, IdentityProfile] | None = None,
    documented_providers: Sequence[str] = DOCUMENTED_PROVIDERS,
    prepared: PreparedStatistics | None = None,
) -> TeacherResult:
    """Did the suspect learn from ``teacher`` (a family)? And from its provider? See the module.

    ``prepared`` (from :func:`~distillguard.fingerprint.attribution.prepare_statistics`) saves
    recomputing the similarity matrices that :func:`attribute` already computed.

    Raises:
        InputError: unknown family, or fewer than 4 references that cannot have learned from it.
    """
    _check_inputs(suspect, references, families, alpha)
    names = [r.name for r in references]
    members = [n for n in names if families.families[n] == teacher]
    if not members:
        known = ", ".join(sorted({families.families[n] for n in names}))
        raise InputError(f"no reference of family {teacher!r}", hint=f"families: {known}")
    st = _statistics(suspect, references, families, channels, prepared)
    ident = _identity_of(suspect_identity, reference_identity, names, st.common)

    def one(target: str, group: list[str]) -> OneVsRest:
        null = teacher_null(group, names, families, documented_providers=documented_providers)
        if len(null) < _MIN_NULL:
            raise InputError(
                f"only {len(null)} references cannot have learned from {target!r} "
                f"(at least {_MIN_NULL} needed)",
                hint="add references released before it or from documented providers",
            )
        cols = [names.index(m) for m in group]
        rows = [names.index(u) for u in null]
        n = len(names)
        values = np.array([max(st.combined[u, c] for c in cols) for u in rows])
        model = NullModel.fit(values, units=len(rows))
        best = max(cols, key=lambda c: st.combined[n, c])
        s_value = float(st.combined[n, best])
        p_style = model.p_value(s_value)
        id_info: dict[str, Any] | None = None
        p_id: float | None = None
        if ident is not None:
            s_prof, r_prof = ident
            null_prof = [r_prof[u] for u in null]
            others = [
                r_prof[u]
                for u in names
                if u not in group and not any(families.related(u, m) for m in group)
            ]
            tests = [identity_test(s_prof, r_prof[m], null_prof, selection=others) for m in group]
            top = min(tests, key=lambda t: t.p_value)
            p_id = bonferroni(top.p_value, len(tests))
            id_info = {**top.to_dict(), "p_family": p_id}
        p = combine_channels(p_style, p_id)
        return OneVsRest(
            target=target,
            members=tuple(group),
            learned=p < alpha,
            p_value=p,
            p_style=p_style,
            statistic=float(model.standardise(s_value)),
            reference=names[best],
            identity=id_info,
            null=null,
        )

    family_answer = one(teacher, members)
    provider = families.providers.get(members[0])
    provider_answer = None
    provider_set_p: float | None = None
    if provider is not None:
        group = [n for n in names if families.providers.get(n) == provider]
        try:
            provider_set = one(provider, group)
        except InputError as exc:
            logger.info("provider-level test of %s not run: %s", provider, exc)
        else:
            # "learned from no model of P" implies "not from T": the family's p-value is valid
            # for the provider too; the smaller of the two, Bonferroni over the two
            provider_set_p = provider_set.p_value
            p = min(1.0, 2.0 * min(family_answer.p_value, provider_set.p_value))
            provider_answer = replace(provider_set, p_value=p, learned=p < alpha)
    logger.info(
        "teacher test of %s against %s: p %.3g", suspect.name, teacher, family_answer.p_value
    )
    return TeacherResult(
        suspect=suspect.name,
        teacher=teacher,
        provider=provider,
        alpha=alpha,
        family=family_answer,
        provider_answer=provider_answer,
        provider_set_p=provider_set_p,
    )
