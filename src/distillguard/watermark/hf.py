"""Hugging Face transformers integration: a ``LogitsProcessor``, a ``generate`` helper, and a
tiny local model builder for tests, benchmarks and the lab.

Requires the ``hf`` extra (``pip install 'distillguard[hf]'``). Nothing is downloaded: models and
tokenizers are local folders or built in memory.

Example::

    from distillguard.watermark import KGWConfig, KGWWatermark
    from distillguard.watermark.hf import generate_watermarked

    wm = KGWWatermark(KGWConfig(), key=keyring.watermark_key())
    out = generate_watermarked(model, tokenizer, ["Explain TCP."], scheme=wm, max_new_tokens=200)
    wm.detect(out.token_ids[0], prompt_len=out.prompt_lengths[0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distillguard.errors import DependencyMissingError, InputError
from distillguard.watermark._base import WatermarkScheme
from distillguard.watermark._kgw import KGWWatermark

try:
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList
except ImportError as exc:  # pragma: no cover - the hf extra is installed in dev
    raise DependencyMissingError(
        "the transformers integration needs torch and transformers",
        hint="pip install 'distillguard[hf]'",
    ) from exc

__all__ = [
    "GenerationOutput",
    "WatermarkLogitsProcessor",
    "build_tiny_model",
    "build_word_tokenizer",
    "generate_watermarked",
]


class WatermarkLogitsProcessor(LogitsProcessor):
    """Applies a watermark scheme to each row of a batch at each generation step.

    Args:
        scheme: any :class:`~distillguard.watermark._base.WatermarkScheme` (for a multi-bit
            payload, an :class:`~distillguard.watermark._mpac.MPACWatermark` bound to it).
        schemes_per_row: optional one scheme per batch row (e.g. a payload per account).
    """

    def __init__(
        self,
        scheme: WatermarkScheme,
        *,
        schemes_per_row: Sequence[WatermarkScheme] | None = None,
    ) -> None:
        self.scheme = scheme
        self.rows = list(schemes_per_row) if schemes_per_row is not None else None

    def _scheme(self, row: int) -> WatermarkScheme:
        if self.rows is None:
            return self.scheme
        return self.rows[row]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Watermark the next-token scores of every row."""
        batch, vocab = scores.shape
        width = self.scheme.context_width
        tails = input_ids[:, -width:].tolist()
        if self.rows is None and isinstance(self.scheme, KGWWatermark):
            # fast path: one vectorised green-mask computation for the whole batch
            bias = torch.from_numpy(self.scheme.bias_rows(tails, vocab))
            if scores.dtype != torch.float32 or scores.device.type != "cpu":
                bias = bias.to(scores.device, scores.dtype)
            return scores + bias
        out = scores.clone()
        for row in range(batch):
            scheme = self._scheme(row)
            row_np = scores[row].detach().to("cpu", torch.float64).numpy()
            new = scheme.process_logits(tails[row], row_np)
            out[row] = torch.from_numpy(np.ascontiguousarray(new)).to(out.device, out.dtype)
        return out


@dataclass(frozen=True)
class GenerationOutput:
    """What :func:`generate_watermarked` returns.

    Attributes:
        texts: the generated completions (prompt excluded), decoded.
        token_ids: per row, prompt followed by completion ids (padding removed).
        prompt_lengths: per row, the number of prompt tokens at the start of ``token_ids``.
    """

    texts: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    prompt_lengths: tuple[int, ...]


def generate_watermarked(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    scheme: WatermarkScheme | None,
    max_new_tokens: int = 128,
    min_new_tokens: int | None = None,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    schemes_per_row: Sequence[WatermarkScheme] | None = None,
) -> GenerationOutput:
    """Generate completions of ``prompts`` with ``model.generate`` and a watermark.

    ``scheme=None`` generates without a watermark (the baseline). Prompts are left-padded so
    that every row's context ends at its last prompt token. Generation stops at the end-of-text
    token unless ``min_new_tokens`` forces a length (as benchmarks do).
    """
    if not prompts:
        raise InputError("no prompts")
    if seed is not None:
        torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    processors = LogitsProcessorList()
    if scheme is not None:
        processors.append(WatermarkLogitsProcessor(scheme, schemes_per_row=schemes_per_row))
    with torch.no_grad():
        out = model.generate(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_k=top_k if do_sample else None,
            top_p=None,
            logits_processor=processors,
            pad_token_id=tokenizer.pad_token_id,
        )
    width = enc["input_ids"].shape[1]
    texts, ids, plens = [], [], []
    for row in range(out.shape[0]):
        mask = enc["attention_mask"][row].bool()
        prompt = enc["input_ids"][row][mask].tolist()
        completion = out[row, width:].tolist()
        texts.append(tokenizer.decode(completion, skip_special_tokens=True))
        ids.append(tuple(prompt + completion))
        plens.append(len(prompt))
    return GenerationOutput(texts=tuple(texts), token_ids=tuple(ids), prompt_lengths=tuple(plens))


def build_word_tokenizer(words: Sequence[str], path: Path | None = None) -> Any:
    """A word-level fast tokenizer over ``words`` (plus ``<unk>``, ``<pad>``, ``<eos>``).

    Saved to ``path`` when given, so it can be loaded again with ``--tokenizer PATH``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<pad>": 1, "<eos>": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders

    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    if path is not None:
        tok.save_pretrained(str(path))
    return tok


def build_tiny_model(
    vocab_size: int, *, layers: int = 2, width: int = 64, heads: int = 2, seed: int = 0
) -> Any:
    """A randomly initialised GPT-2 with a small vocabulary, in evaluation mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=1024,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=1,
    )
    model = GPT2LMHeadModel(config)
    model.eval()  # type: ignore[no-untyped-call]
    return model
