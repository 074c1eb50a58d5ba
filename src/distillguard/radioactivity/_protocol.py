"""The suspect/control protocol of the radioactivity test, one typed function for every caller.

A test has two halves: a **suspect** (a model read in open mode, an endpoint asked in closed mode,
or texts it wrote) scored under our key, and a **control** that tells whether the setup itself is
independent of the key. The control is either

* a subject known to be clean (a model, an endpoint or texts that never saw our outputs) scored
  under the *same* key, or
* the suspect itself scored under an *unused* key: the subject is queried once and each batch it
  gives is scored under both keys as it arrives, so nothing is asked or generated twice.

:func:`run_test` runs both halves and returns the :class:`~distillguard.radioactivity.
RadioactivityReport` (verdict positive only when the suspect rejects and the control does not);
:func:`score_under_keys` is the primitive below it (one query, several keys), which the lab also
uses for its null runs under many unused keys. The subjects say how they are queried:
:class:`OpenSubject`, :class:`ClosedSubject`, :class:`TextsSubject`.

Misfires: the unused-key control only checks the *key*; a suspect whose texts or prompts carry our
watermark under the tested key (e.g. reading our own watermarked answers in open mode) makes even
an independent model look radioactive, and only a clean-subject control (or ``skip_echo``) catches
that. Tracing needs an MPAC scheme.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.radioactivity._closed_mode import Encoder, SuspectClient
from distillguard.radioactivity._open_mode import predictions
from distillguard.radioactivity._pipeline import (
    CurvePoint,
    KgramFilter,
    RadioactivityScorer,
    TokenText,
)
from distillguard.radioactivity._results import ModeResult, RadioactivityReport
from distillguard.radioactivity._tracing import trace_payload
from distillguard.watermark import MPACWatermark, PayloadTokenScores, WatermarkScheme

__all__ = [
    "ClosedSubject",
    "Mode",
    "OpenSubject",
    "Subject",
    "TextsSubject",
    "run_test",
    "score_under_keys",
]

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
Mode = Literal["open", "closed", "texts"]
#: Called with the role (``"suspect"``/``"control"``, or ``"control 2"``... for further keys) and
#: the pooled test after each scored batch.
OnPoint = Callable[[str, CurvePoint], None]


@dataclass(frozen=True)
class OpenSubject:
    """Open mode: a local causal LM read with teacher forcing on ``texts`` (key-independent
    texts: other sources' answers, prompts, or the model's own answers to the logged prompts).

    ``pad_id`` pads batches; ``skip_echo`` leaves out positions where the prediction equals the
    real next token (an exact null even on text that carries our watermark)."""

    name: str
    model: Any
    texts: Sequence[TokenText]
    batch_size: int = 16
    pad_id: int = 0
    max_len: int | None = None
    skip_echo: bool = False
    mode: Mode = field(default="open", init=False)


@dataclass(frozen=True)
class ClosedSubject:
    """Closed mode: an OpenAI-compatible endpoint asked ``prompts`` in batches of ``batch_size``;
    answers are tokenized with ``encode`` (the watermark's tokenizer) and scored whole.

    ``temperatures`` (one per prompt) override the client's (e.g. 0 for a greedy answer)."""

    name: str
    client: SuspectClient
    prompts: Sequence[str]
    encode: Encoder
    temperatures: Sequence[float] | None = None
    batch_size: int = 32
    mode: Mode = field(default="closed", init=False)


@dataclass(frozen=True)
class TextsSubject:
    """Texts the subject wrote, scored in batches of ``batch_size`` (``None``: one batch).

    ``mode`` is ``"texts"`` unless the texts are answers gathered elsewhere (``"closed"``)."""

    name: str
    texts: Sequence[TokenText]
    batch_size: int | None = 256
    mode: Mode = "texts"


Subject = OpenSubject | ClosedSubject | TextsSubject


def _notes(subject: Subject, n_texts: int) -> list[str]:
    if isinstance(subject, OpenSubject):
        notes = ["reading mode: top-1 predictions scored with the real text's window"]
        if subject.skip_echo:
            notes.append("positions where the prediction equals the real next token not scored")
        return notes
    if isinstance(subject, ClosedSubject):
        return [f"{n_texts} prompts answered by the endpoint, answers scored whole"]
    return []


@dataclass(frozen=True)
class _Batch:
    """One batch a subject gave: texts, or (window, prediction) pairs of ``n_texts`` texts."""

    n_texts: int
    texts: Sequence[TokenText] = ()
    windows: I64 | None = None
    predictions: I64 | None = None

    def feed(self, scorer: RadioactivityScorer) -> CurvePoint:
        """Score this batch into ``scorer``; the pooled test so far."""
        if self.windows is not None and self.predictions is not None:
            return scorer.add_pairs(self.windows, self.predictions, n_texts=self.n_texts)
        return scorer.add_texts(self.texts)


def _batches(subject: Subject, width: int) -> Iterator[_Batch]:
    """Query ``subject`` once, a batch at a time."""
    if isinstance(subject, OpenSubject):
        if not subject.texts:
            raise InputError(f"open mode on {subject.name}: no text to read")
        for windows, preds, n in predictions(
            subject.model,
            subject.texts,
            width=width,
            batch_size=subject.batch_size,
            max_len=subject.max_len,
            pad_id=subject.pad_id,
            skip_echo=subject.skip_echo,
        ):
            yield _Batch(n_texts=n, windows=windows, predictions=preds)
    elif isinstance(subject, ClosedSubject):
        yield from _closed_batches(subject)
    else:
        texts = list(subject.texts)
        if not texts:
            raise InputError(f"{subject.name}: no texts to score")
        step = subject.batch_size or len(texts)
        for i in range(0, len(texts), step):
            chunk = texts[i : i + step]
            yield _Batch(n_texts=len(chunk), texts=chunk)


def _closed_batches(subject: ClosedSubject) -> Iterator[_Batch]:
    prompts = list(subject.prompts)
    if not prompts:
        raise InputError(f"closed mode on {subject.name}: no prompt to ask")
    temps = subject.temperatures
    if temps is not None and (len(temps) != len(prompts) or any(t < 0 for t in temps)):
        raise InputError("give one non-negative temperature per prompt")  # before any call
    step = subject.batch_size
    for i in range(0, len(prompts), step):
        answers = asyncio.run(
            subject.client.acomplete(
                prompts[i : i + step], None if temps is None else temps[i : i + step]
            )
        )
        yield _Batch(n_texts=len(answers), texts=[TokenText.of(subject.encode(a)) for a in answers])


def score_under_keys(
    subject: Subject,
    schemes: Sequence[WatermarkScheme],
    *,
    kgram_filter: KgramFilter | None = None,
    roles: Sequence[str] | None = None,
    notes: Sequence[Sequence[str]] | None = None,
    on_point: OnPoint | None = None,
    scorers: Sequence[RadioactivityScorer] | None = None,
) -> list[ModeResult]:
    """Query ``subject`` once and score what it gives under every scheme (one result each).

    ``roles`` default to ``"suspect"`` for the first scheme and ``"control"`` for the others;
    ``notes`` add per-scheme notes to the subject's own. Pass ``scorers`` (one per scheme) to keep
    the pooled per-token scores afterwards (tracing). All schemes must share a context width.
    Misfires: results under several keys of one query are dependent (same texts), so do not
    combine their p-values as if independent."""
    if not schemes:
        raise InputError("score_under_keys needs at least one scheme")
    widths = {s.context_width for s in schemes}
    if len(widths) != 1:
        raise InputError(f"the schemes have different context widths {sorted(widths)}")
    if scorers is None:
        scorers = [RadioactivityScorer(s, kgram_filter=kgram_filter) for s in schemes]
    elif len(scorers) != len(schemes) or any(
        sc.scheme is not s for sc, s in zip(scorers, schemes, strict=True)
    ):
        raise InputError("give one scorer per scheme, each using that scheme")
    if roles is None:
        roles = ["suspect"] + ["control"] * (len(schemes) - 1)
    if len(roles) != len(schemes) or (notes is not None and len(notes) != len(schemes)):
        raise InputError("give one role (and one list of notes) per scheme")
    n_texts = 0
    for batch in _batches(subject, widths.pop()):
        n_texts += batch.n_texts
        for role, scorer in zip(roles, scorers, strict=True):
            point = batch.feed(scorer)
            if on_point is not None:
                on_point(role, point)
    base = _notes(subject, n_texts)
    logger.debug(
        "%s (%s): %d texts scored under %d keys", subject.name, subject.mode, n_texts, len(schemes)
    )
    return [
        ModeResult.from_scorer(
            scorer,
            subject=subject.name,
            mode=subject.mode,
            role=role,
            n_texts=n_texts,
            notes=[*base, *(notes[i] if notes is not None else ())],
        )
        for i, (role, scorer) in enumerate(zip(roles, scorers, strict=True))
    ]


def run_test(
    suspect: Subject,
    scheme: WatermarkScheme,
    *,
    control: Subject | WatermarkScheme,
    alpha: float = 1e-3,
    kgram_filter: KgramFilter | None = None,
    trace: bool = False,
    candidates: Mapping[str, int] | None = None,
    on_point: OnPoint | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RadioactivityReport:
    """The radioactivity test of ``suspect`` under ``scheme``, with its control.

    ``control`` is a clean :data:`Subject` (scored under ``scheme``) or an unused key's scheme
    (the suspect's own batches scored under it, in the same pass). With ``trace`` the payload the
    suspect learned is decoded from its pooled scores (``scheme`` must be MPAC) and tested
    against ``candidates`` (label -> payload) when given.

    Misfires: see the module docs; an unused-key control does not catch texts that carry our
    watermark under the tested key."""
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    keep = RadioactivityScorer(scheme, kgram_filter=kgram_filter)
    if isinstance(control, OpenSubject | ClosedSubject | TextsSubject):
        (result,) = score_under_keys(suspect, [scheme], scorers=[keep], on_point=on_point)
        (control_result,) = score_under_keys(
            control, [scheme], kgram_filter=kgram_filter, roles=["control"], on_point=on_point
        )
    else:
        if control.key_id == scheme.key_id:
            raise InputError("the control key must differ from the tested key")
        ctl = RadioactivityScorer(control, kgram_filter=kgram_filter)
        result, control_result = score_under_keys(
            suspect,
            [scheme, control],
            scorers=[keep, ctl],
            notes=[
                [],
                [
                    f"the suspect scored under an unused key ({control.key_id}): nothing "
                    "asked or generated twice"
                ],
            ],
            on_point=on_point,
        )
        control_result = _renamed(control_result, f"{suspect.name} (key {control.key_id})")
    tracing = None
    if trace:
        if keep.n_scored == 0:
            raise InputError("nothing scored to trace")
        pooled = keep.pooled_scores()
        if not isinstance(scheme, MPACWatermark) or not isinstance(pooled, PayloadTokenScores):
            raise InputError("tracing needs an MPAC scheme", hint="set watermark.scheme = 'mpac'")
        tracing = trace_payload(scheme, pooled, candidates=candidates).to_dict()
    return RadioactivityReport(
        suspect=result,
        control=control_result,
        alpha=alpha,
        tracing=tracing,
        extra=dict(extra or {}),
    )


def _renamed(result: ModeResult, subject: str) -> ModeResult:
    return replace(result, subject=subject)
