"""Leave-one-out checks of the attribution test on the reference library itself.

Two questions a provider should ask before trusting a verdict, answered with its own references:

- **False accusations**: each reference, held out with every reference related to it (same family
  or provider), is a model none of the remaining families taught. Any verdict is a false
  accusation; over many references their share estimates the false-accusation rate.
- **Same family** (a proxy for "a student of T"): each reference of a family with several versions,
  held out alone while its siblings stay in, should be attributed to its own family.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from distillguard.errors import InputError
from distillguard.fingerprint.attribution import attribute, prepare_statistics
from distillguard.fingerprint.features import Fingerprint
from distillguard.fingerprint.identity import IdentityProfile
from distillguard.fingerprint.outputs import FamilyMap
from distillguard.fingerprint.teacher import DOCUMENTED_PROVIDERS, teacher_null, teacher_test

__all__ = ["HoldoutCheck", "HoldoutReport", "TeacherCheck", "holdout_checks", "teacher_holdouts"]

logger = logging.getLogger(__name__)

CheckKind = Literal["unrelated", "same_family"]


@dataclass(frozen=True)
class HoldoutCheck:
    """One held-out reference tested against the others.

    Attributes:
        held_out: the reference used as the suspect.
        kind: ``unrelated`` (its family and provider removed) or ``same_family`` (siblings kept).
        expected: the right verdict (``None`` for ``unrelated``).
        verdict: the test's verdict.
        top_family: the best-ranked family.
        top_p_value: its Holm-adjusted p-value.
    """

    held_out: str
    kind: CheckKind
    expected: str | None
    verdict: str | None
    top_family: str
    top_p_value: float
    provider_verdict: str | None = None

    @property
    def correct(self) -> bool:
        """Whether the verdict is the expected one."""
        return self.verdict == self.expected

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "held_out": self.held_out,
            "kind": self.kind,
            "expected": self.expected,
            "verdict": self.verdict,
            "top_family": self.top_family,
            "top_p_value": self.top_p_value,
            "provider_verdict": self.provider_verdict,
            "correct": self.correct,
        }


@dataclass(frozen=True)
class HoldoutReport:
    """All checks of :func:`holdout_checks` and their summary rates."""

    alpha: float
    checks: tuple[HoldoutCheck, ...]

    def _of(self, kind: CheckKind) -> list[HoldoutCheck]:
        return [c for c in self.checks if c.kind == kind]

    @property
    def false_accusations(self) -> int:
        """Unrelated held-out references that received a verdict."""
        return sum(c.verdict is not None for c in self._of("unrelated"))

    @property
    def unrelated_tests(self) -> int:
        """How many unrelated held-out tests were run."""
        return len(self._of("unrelated"))

    @property
    def same_family_hits(self) -> int:
        """Held-out family members attributed to their own family."""
        return sum(c.correct for c in self._of("same_family"))

    @property
    def same_family_tests(self) -> int:
        """How many same-family held-out tests were run."""
        return len(self._of("same_family"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "alpha": self.alpha,
            "false_accusations": self.false_accusations,
            "unrelated_tests": self.unrelated_tests,
            "same_family_hits": self.same_family_hits,
            "same_family_tests": self.same_family_tests,
            "checks": [c.to_dict() for c in self.checks],
        }


def _run(
    suspect: Fingerprint,
    keep: Sequence[Fingerprint],
    families: FamilyMap,
    *,
    kind: CheckKind,
    expected: str | None,
    alpha: float,
    channels: Sequence[str] | None,
    identity: Mapping[str, IdentityProfile] | None = None,
) -> HoldoutCheck | None:
    sub = FamilyMap(
        families={f.name: families.families[f.name] for f in keep},
        providers={f.name: p for f in keep if (p := families.providers.get(f.name))},
    )
    try:
        result = attribute(
            suspect,
            keep,
            sub,
            alpha=alpha,
            channels=channels,
            suspect_identity=identity[suspect.name] if identity else None,
            reference_identity=identity,
        )
    except InputError as exc:  # too few references or families left: not testable
        logger.info("holdout %s (%s) skipped: %s", suspect.name, kind, exc)
        return None
    top = result.ranking[0]
    return HoldoutCheck(
        held_out=suspect.name,
        kind=kind,
        expected=expected,
        verdict=result.verdict,
        top_family=top.family,
        top_p_value=top.p_value,
        provider_verdict=result.provider_verdict,
    )


def holdout_checks(
    references: Sequence[Fingerprint],
    families: FamilyMap,
    *,
    alpha: float = 0.01,
    channels: Sequence[str] | None = None,
    identity: Mapping[str, IdentityProfile] | None = None,
) -> HoldoutReport:
    """Run both leave-one-out checks (see the module docstring) over every reference.

    A held-out test that leaves too few references or families to calibrate the null is skipped.
    ``identity`` (profiles by model name) adds the identity channel.
    """
    checks: list[HoldoutCheck] = []
    for ref in references:
        unrelated = [r for r in references if not families.related(r.name, ref.name)]
        check = _run(
            ref,
            unrelated,
            families,
            kind="unrelated",
            expected=None,
            alpha=alpha,
            channels=channels,
            identity=identity,
        )
        if check is not None:
            checks.append(check)
    for ref in references:
        fam = families.families[ref.name]
        siblings = [
            r for r in references if r.name != ref.name and families.families[r.name] == fam
        ]
        if not siblings:
            continue
        others = [r for r in references if r.name != ref.name]
        check = _run(
            ref,
            others,
            families,
            kind="same_family",
            expected=fam,
            alpha=alpha,
            channels=channels,
            identity=identity,
        )
        if check is not None:
            checks.append(check)
    return HoldoutReport(alpha=alpha, checks=tuple(checks))


@dataclass(frozen=True)
class TeacherCheck:
    """One held-out reference tested one-vs-rest against a teacher it cannot have learned from.

    ``learned`` is a false accusation: the reference is in the teacher's null (released before
    it, or from a documented provider). ``provider_learned`` likewise for the teacher's provider
    when the reference is in the provider's null too (``None`` otherwise).
    """

    held_out: str
    teacher: str
    learned: bool
    p_value: float
    provider: str | None
    provider_learned: bool | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "held_out": self.held_out,
            "teacher": self.teacher,
            "learned": self.learned,
            "p_value": self.p_value,
            "provider": self.provider,
            "provider_learned": self.provider_learned,
        }


def teacher_holdouts(
    references: Sequence[Fingerprint],
    families: FamilyMap,
    *,
    alpha: float = 0.01,
    identity: Mapping[str, IdentityProfile] | None = None,
    documented_providers: Sequence[str] = DOCUMENTED_PROVIDERS,
) -> list[TeacherCheck]:
    """False accusations of :func:`teacher_test` on the references themselves.

    Each reference u is held out (removed from the library) and tested against every family T
    whose null it belongs to: u cannot have learned from T, so ``learned`` is false. Tests whose
    null would be too small without u are skipped.
    """
    names = [r.name for r in references]
    fams = sorted({families.families[n] for n in names})
    out: list[TeacherCheck] = []
    for ref in references:
        keep = [r for r in references if r.name != ref.name]
        targets = [
            t
            for t in fams
            if ref.name
            in teacher_null(
                [n for n in names if families.families[n] == t],
                names,
                families,
                documented_providers=documented_providers,
            )
        ]
        if not targets:
            continue
        try:
            prepared = prepare_statistics(ref, keep, families)
        except InputError as exc:
            logger.info("teacher holdout of %s skipped: %s", ref.name, exc)
            continue
        for t in targets:
            try:
                res = teacher_test(
                    ref,
                    keep,
                    families,
                    t,
                    alpha=alpha,
                    suspect_identity=identity[ref.name] if identity else None,
                    reference_identity=identity,
                    documented_providers=documented_providers,
                    prepared=prepared,
                )
            except InputError as exc:
                logger.info("teacher holdout %s vs %s skipped: %s", ref.name, t, exc)
                continue
            pa = res.provider_answer
            in_provider_null = pa is not None and ref.name in teacher_null(
                [n for n in names if families.providers.get(n) == res.provider],
                names,
                families,
                documented_providers=documented_providers,
            )
            out.append(
                TeacherCheck(
                    held_out=ref.name,
                    teacher=t,
                    learned=res.family.learned,
                    p_value=res.family.p_value,
                    provider=res.provider,
                    provider_learned=pa.learned if pa is not None and in_provider_null else None,
                )
            )
    return out
