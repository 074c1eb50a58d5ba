"""Open mode ("reading mode", Sander et al. 2024): the suspect's weights are available.

Texts are fed through the suspect with teacher forcing; at every position ``p`` the suspect's top-1
prediction for token ``p`` is scored for the watermark with the *real* text's window
``tokens[p-h:p]`` as context. A model fine-tuned on our watermarked outputs has learned to prefer
green continuations, so its predictions are green more often than ``gamma``; an independent model's
predictions are not (each deduplicated (window, prediction) pair is a fresh PRF input).

Which texts to feed: any text independent of the key works. With the weights in hand the best
text is often the suspect's **own answers** to the prompts our logs show the harvesting accounts
asked (:func:`own_answers`: one greedy answer and a few sampled ones, generated locally): a student
that memorised our watermarked answers gives them back, and reading them scores its preferences
along its own paths. Under the null they are as key-independent as any text (a model that never
saw the watermark writes them without the key). Text that carries our watermark under the tested
key makes even an independent model's correct predictions green more often (it predicts the real,
green token), so the null is only exact on text *independent* of the key (other models' answers,
human text, our prompts, the suspect's own answers), or with ``skip_echo`` (positions where the
prediction equals the real next token are not scored). The control run catches a violation:
see ``docs/radioactivity.md``.

Requires the ``hf`` extra (torch, transformers). The suspect must use the watermark's tokenizer
(token ids are scored as they are); for a suspect with another tokenizer use closed mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard.errors import DependencyMissingError, InputError
from distillguard.radioactivity._pipeline import (
    CurvePoint,
    KgramFilter,
    RadioactivityScorer,
    TokenText,
    answer_plan,
)
from distillguard.radioactivity._results import ModeResult
from distillguard.watermark import WatermarkScheme

__all__ = ["load_suspect", "own_answers", "predictions", "score_open"]

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]


def load_suspect(path: Path) -> tuple[Any, Any]:
    """A local causal LM and its tokenizer (``from_pretrained`` on a folder; never downloads)."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - the hf extra is installed in dev
        raise DependencyMissingError(
            "open mode needs torch and transformers", hint="pip install 'distillguard[hf]'"
        ) from exc
    if not Path(path).is_dir():
        raise InputError(f"model folder {path} does not exist", hint="give a local model folder")
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    model.eval()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return model, tokenizer


def own_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    samples: int = 4,
    temperature: float = 0.2,
    greedy: bool = True,
    max_new_tokens: int = 128,
    seed: int = 0,
    batch_size: int = 64,
) -> list[TokenText]:
    """The model's own answers to ``prompts`` (the prompt kept as context, not scored): one
    greedy answer per prompt when ``greedy``, and ``samples`` answers sampled at ``temperature``.

    They are texts for :func:`score_open` to read. Under the null they do not depend on the
    watermark key (the model and the prompts do not), so the test stays exact; generation
    happens locally, so many samples cost only compute."""
    from distillguard.watermark.hf import generate_watermarked

    if samples < 0 or (samples == 0 and not greedy):
        raise InputError("own_answers needs greedy=True or samples >= 1")
    if samples and temperature <= 0:
        raise InputError("sampling needs a temperature > 0")
    if not prompts:
        raise InputError("no prompts to answer")
    plans = answer_plan(prompts, samples=samples, temperature=temperature, greedy=greedy)
    pad = tokenizer.pad_token_id
    stops = [i for i in (pad, tokenizer.eos_token_id) if i is not None]
    out: list[TokenText] = []
    for rows, temp in plans:
        for j in range(0, len(rows), batch_size):
            gen = generate_watermarked(
                model,
                tokenizer,
                rows[j : j + batch_size],
                scheme=None,
                max_new_tokens=max_new_tokens,
                do_sample=temp > 0,
                temperature=temp if temp > 0 else 1.0,
                seed=seed + j + (1 if temp > 0 else 0) * 1_000_003,
            )
            for ids, plen in zip(gen.token_ids, gen.prompt_lengths, strict=True):
                arr = np.asarray(ids, dtype=np.int64)
                cut = np.flatnonzero(np.isin(arr[plen:], stops))
                if cut.shape[0]:  # up to and including the first end-of-text
                    arr = arr[: plen + int(cut[0]) + 1]
                out.append(TokenText.of(arr, plen))
    return out


def predictions(
    model: Any,
    texts: Sequence[TokenText],
    *,
    width: int,
    batch_size: int = 16,
    max_len: int | None = None,
    pad_id: int = 0,
    skip_echo: bool = False,
) -> Iterator[tuple[I64, I64, int]]:
    """Teacher-force ``texts`` through ``model``; yields, per batch of texts,
    ``(windows, predictions, n_texts)``: the real ``width``-token window before each scored
    position (shape ``(n, width)``) and the model's top-1 prediction there (shape ``(n,)``)."""
    import torch

    if batch_size < 1:
        raise InputError("batch_size must be at least 1")
    limit = max_len or int(getattr(model.config, "n_positions", 1024))
    for i in range(0, len(texts), batch_size):
        batch = [t for t in texts[i : i + batch_size]]
        rows = [t.tokens[:limit] for t in batch]
        longest = max((r.shape[0] for r in rows), default=0)
        if longest <= width:
            yield np.zeros((0, width), np.int64), np.zeros(0, np.int64), len(batch)
            continue
        ids = np.full((len(rows), longest), pad_id, dtype=np.int64)
        att = np.zeros((len(rows), longest), dtype=np.int64)
        for r, row in enumerate(rows):
            ids[r, : row.shape[0]] = row
            att[r, : row.shape[0]] = 1
        with torch.no_grad():
            logits = model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(att)
            ).logits
        pred = logits[:, :-1, :].argmax(dim=-1).cpu().numpy().astype(np.int64)
        wins: list[I64] = []
        preds: list[I64] = []
        for r, (row, t) in enumerate(zip(rows, batch, strict=True)):
            n = row.shape[0]
            first = max(width, t.prompt_len)
            if first >= n:
                continue
            pos = np.arange(first, n)
            p = pred[r, pos - 1]
            w = np.stack([row[pos - width + j] for j in range(width)], axis=1)
            if skip_echo:
                keep = p != row[pos]
                p, w = p[keep], w[keep]
            wins.append(w)
            preds.append(p)
        if preds:
            yield np.concatenate(wins), np.concatenate(preds), len(batch)
        else:
            yield np.zeros((0, width), np.int64), np.zeros(0, np.int64), len(batch)


def score_open(
    model: Any,
    texts: Sequence[TokenText],
    scheme: WatermarkScheme,
    *,
    subject: str,
    role: str = "suspect",
    kgram_filter: KgramFilter | None = None,
    batch_size: int = 16,
    max_len: int | None = None,
    pad_id: int = 0,
    skip_echo: bool = False,
    on_point: Callable[[CurvePoint], None] | None = None,
    scorer: RadioactivityScorer | None = None,
) -> ModeResult:
    """The open-mode test of ``model`` under ``scheme`` on ``texts`` (see the module docs).

    Pass a ``scorer`` to keep the pooled per-token scores afterwards (e.g. for tracing)."""
    if not texts:
        raise InputError("open mode needs at least one text to read")
    if scorer is None:
        scorer = RadioactivityScorer(scheme, kgram_filter=kgram_filter)
    elif scorer.scheme is not scheme:
        raise InputError("the scorer given must use the same scheme")
    n_texts = 0
    for windows, preds, n in predictions(
        model,
        texts,
        width=scheme.context_width,
        batch_size=batch_size,
        max_len=max_len,
        pad_id=pad_id,
        skip_echo=skip_echo,
    ):
        n_texts += n
        point = scorer.add_pairs(windows, preds, n_texts=n)
        if on_point is not None:
            on_point(point)
    notes = ["reading mode: top-1 predictions scored with the real text's window"]
    if skip_echo:
        notes.append("positions where the prediction equals the real next token not scored")
    logger.debug("open mode on %s: %d texts, %d scored", subject, n_texts, scorer.n_scored)
    return ModeResult.from_scorer(
        scorer, subject=subject, mode="open", role=role, n_texts=n_texts, notes=notes
    )
