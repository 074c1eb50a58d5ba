"""vLLM adapter: a per-request logits processor for generation-time watermarks.

vLLM (the "V0" engine's ``SamplingParams.logits_processors``) calls each processor as
``processor(prompt_token_ids, output_token_ids, logits)`` for every step of a request, with
``logits`` a 1-D tensor over the vocabulary (on the GPU), and uses the tensor returned::

    from vllm import LLM, SamplingParams
    from distillguard.watermark import KGWConfig, KGWWatermark
    from distillguard.watermark.vllm import VLLMWatermarkProcessor

    wm = KGWWatermark(KGWConfig(), key=keyring.watermark_key())
    params = SamplingParams(max_tokens=256, logits_processors=[VLLMWatermarkProcessor(wm)])
    outputs = LLM(model="/models/my-model").generate(prompts, params)

For engines that only accept class-based processors, wrap :meth:`VLLMWatermarkProcessor.apply`,
which takes the same arguments. The PRF runs on the CPU over the vocabulary (a few vector
operations on a cached per-token table); only the green mask or new row is moved to the device.
This module imports without vLLM (it needs torch only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distillguard.errors import DependencyMissingError
from distillguard.watermark.base import WatermarkScheme
from distillguard.watermark.kgw import KGWWatermark

try:
    import torch
except ImportError as exc:  # pragma: no cover - the hf extra is installed in dev
    raise DependencyMissingError(
        "the vLLM adapter needs torch", hint="pip install 'distillguard[hf]'"
    ) from exc

__all__ = ["VLLMWatermarkProcessor"]


class VLLMWatermarkProcessor:
    """A vLLM per-request logits processor applying ``scheme``."""

    def __init__(self, scheme: WatermarkScheme) -> None:
        self.scheme = scheme

    def __repr__(self) -> str:
        return f"VLLMWatermarkProcessor({self.scheme!r})"

    def apply(
        self,
        prompt_token_ids: Sequence[int],
        output_token_ids: Sequence[int],
        logits: torch.Tensor,
    ) -> torch.Tensor:
        """Watermarked logits for the next token of one request."""
        width = self.scheme.context_width
        tail = list(output_token_ids[-width:])
        if len(tail) < width:
            tail = list(prompt_token_ids[-(width - len(tail)) :]) + tail
        vocab = int(logits.shape[-1])
        if isinstance(self.scheme, KGWWatermark):
            green = torch.from_numpy(self.scheme.green_mask(tail, vocab))
            return logits + self.scheme.config.delta * green.to(logits.device, logits.dtype)
        row = logits.detach().to("cpu", torch.float64).numpy()
        new = self.scheme.process_logits(tail, row)
        return torch.from_numpy(np.ascontiguousarray(new)).to(logits.device, logits.dtype)

    def __call__(
        self,
        prompt_token_ids: Sequence[int],
        output_token_ids: Sequence[int],
        logits: torch.Tensor,
    ) -> torch.Tensor:
        """See :meth:`apply`."""
        return self.apply(prompt_token_ids, output_token_ids, logits)
