"""vLLM adapters: a batch-level logits processor for the V1 engine, and the older per-request one.

**V1 engine** (the current vLLM): logits processors are classes that the engine instantiates
itself, ``Processor(vllm_config, device, is_pin_memory)``, and calls once per step for the whole
persistent batch: ``update_state(batch_update)`` tells which requests were added (with their
``SamplingParams``, prompt token ids and a live reference to their output token ids), removed or
moved between batch rows, then ``apply(logits)`` transforms the ``(batch, vocab)`` logits.
:class:`WatermarkBatchProcessor` implements that interface: it keeps one entry per batch row,
and at each step computes the green masks of every watermarked row in one vectorised call (KGW:
the PRF over the vocabulary, cached per context window) and adds ``delta`` to them in one tensor
operation; other schemes are applied row by row. The processor is not argmax-invariant (it
changes which token greedy decoding picks) and needs the real output token ids.

A class binds the scheme (vLLM constructs the object, so the scheme cannot be an argument)::

    from vllm import LLM, SamplingParams
    from distillguard.watermark import KGWConfig, KGWWatermark
    from distillguard.watermark.vllm import watermark_processor

    wm = KGWWatermark(KGWConfig(), key=keyring.watermark_key())
    llm = LLM(model="/models/my-model", logits_processors=[watermark_processor(wm)])
    outputs = llm.generate(prompts, SamplingParams(max_tokens=256))

For ``vllm serve`` (another process), name :class:`KeyringWatermarkProcessor`
(``--logits-processors distillguard.watermark.vllm:KeyringWatermarkProcessor``): it builds the
scheme from the DistillGuard configuration (``$DISTILLGUARD_CONFIG``, ``[watermark]`` and the
keyring) when the engine starts.

Per request (``SamplingParams.extra_args``; through vLLM's OpenAI server, the request's
``vllm_xargs``): ``{"distillguard_watermark": false}`` leaves the request unmarked;
``{"distillguard_payload": N}`` binds a multi-bit scheme (MPAC) to payload ``N`` for that
request. :meth:`WatermarkBatchProcessor.validate_params` refuses other types.

This module imports without vLLM (it needs torch): the V1 class derives from vLLM's
``LogitsProcessor`` when vLLM is installed and from ``object`` otherwise, so it is tested here
against the interface with batches that the tests build, and in vLLM where a GPU is available.

Misfires: a request whose prompt (or, prompt given as embeddings, whose output) is shorter than
the scheme's context is not marked until it has ``context_width`` tokens (the detector skips
those tokens too). A multi-bit scheme (MPAC) marks only requests that carry a payload; the others
are left unmarked, with one warning in the log. Speculative decoding that proposes
several tokens per step sees one green list per step, not per proposed token.

**V0 engine** (``SamplingParams.logits_processors``, removed in V1):
:class:`VLLMWatermarkProcessor` is called as ``processor(prompt_token_ids, output_token_ids,
logits)`` per request and step, with ``logits`` a 1-D tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from distillguard.errors import DependencyMissingError
from distillguard.watermark._base import WatermarkScheme
from distillguard.watermark._kgw import KGWWatermark

try:
    import torch
except ImportError as exc:  # pragma: no cover - the ml extra is installed in dev
    raise DependencyMissingError(
        "the vLLM adapter needs torch", hint="pip install 'distillguard[hf]'"
    ) from exc

try:  # pragma: no cover - vLLM is not installed on the test machines (it needs a GPU)
    from vllm.v1.sample.logits_processor import LogitsProcessor as _V1Base
except ImportError:
    _V1Base = object

__all__ = [
    "DISABLE_ARG",
    "PAYLOAD_ARG",
    "KeyringWatermarkProcessor",
    "VLLMWatermarkProcessor",
    "WatermarkBatchProcessor",
    "watermark_processor",
]

logger = logging.getLogger(__name__)

DISABLE_ARG = "distillguard_watermark"
"""``SamplingParams.extra_args`` key: ``False`` leaves the request unmarked."""

PAYLOAD_ARG = "distillguard_payload"
"""``SamplingParams.extra_args`` key: the payload a multi-bit scheme carries for the request."""


def _context(prompt: Sequence[int] | None, output: Sequence[int], width: int) -> list[int]:
    """The last ``width`` tokens of prompt followed by output (fewer if there are fewer)."""
    tail = list(output[-width:]) if width else []
    if len(tail) < width and prompt:
        tail = list(prompt[-(width - len(tail)) :]) + tail
    return tail


class VLLMWatermarkProcessor:
    """A vLLM V0 per-request logits processor applying ``scheme``."""

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
        tail = _context(prompt_token_ids, output_token_ids, self.scheme.context_width)
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


@dataclass(slots=True)
class _Row:
    """One request of the persistent batch: its context source and its scheme."""

    prompt: Sequence[int] | None
    output: Sequence[int]  # vLLM's live list: it grows as the request generates
    scheme: WatermarkScheme


def _extra_args(params: Any) -> Mapping[str, Any]:
    extra = getattr(params, "extra_args", None)
    return extra if isinstance(extra, Mapping) else {}


def _direction(value: Any) -> str:
    """``"SWAP"`` or ``"UNIDIRECTIONAL"`` of vLLM's MoveDirectionality (or its name)."""
    return str(getattr(value, "name", value)).upper()


class WatermarkBatchProcessor(_V1Base):  # type: ignore[misc]
    """vLLM V1 batch-level logits processor applying the class's :attr:`scheme`.

    Use :func:`watermark_processor` (or :class:`KeyringWatermarkProcessor`) to get a class with
    a scheme bound; this base class has none and refuses to be instantiated.

    Args:
        vllm_config: the engine's configuration (unused).
        device: the device of the logits.
        is_pin_memory: whether pinned host memory may be used for host-to-device copies.

    Raises:
        TypeError: no scheme bound to the class.
    """

    scheme: ClassVar[WatermarkScheme | None] = None

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        scheme = type(self).resolve_scheme()
        if scheme is None:
            raise TypeError(
                "WatermarkBatchProcessor has no scheme: use watermark_processor(scheme) or "
                "KeyringWatermarkProcessor"
            )
        self._scheme = scheme
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._pin = bool(is_pin_memory) and self._device.type == "cuda"
        self._rows: dict[int, _Row] = {}
        self._payload_schemes: dict[int, WatermarkScheme] = {}
        self._warned_payload = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._scheme!r}, rows={len(self._rows)})"

    @classmethod
    def resolve_scheme(cls) -> WatermarkScheme | None:
        """The scheme instances of this class apply (the bound :attr:`scheme`)."""
        return cls.scheme

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Refuse ill-typed DistillGuard keys in ``sampling_params.extra_args``.

        Raises:
            ValueError: ``distillguard_watermark`` not a bool, or ``distillguard_payload`` not
                a non-negative int.
        """
        extra = _extra_args(sampling_params)
        if DISABLE_ARG in extra and not isinstance(extra[DISABLE_ARG], bool):
            raise ValueError(f"extra_args[{DISABLE_ARG!r}] must be true or false")
        if PAYLOAD_ARG in extra:
            payload = extra[PAYLOAD_ARG]
            if isinstance(payload, bool) or not isinstance(payload, int) or payload < 0:
                raise ValueError(f"extra_args[{PAYLOAD_ARG!r}] must be a non-negative integer")

    def is_argmax_invariant(self) -> bool:
        """False: adding ``delta`` to the green tokens can change the greedy choice."""
        return False

    def needs_output_token_ids(self) -> bool:
        """True: the green list depends on the last generated tokens."""
        return True

    def _scheme_for(self, params: Any) -> WatermarkScheme | None:
        extra = _extra_args(params)
        if extra.get(DISABLE_ARG) is False:
            return None
        payload = extra.get(PAYLOAD_ARG)
        for_payload = getattr(self._scheme, "for_payload", None)
        if payload is None:
            if for_payload is not None and getattr(self._scheme, "payload", 0) is None:
                # a multi-bit scheme cannot generate without a payload: the request is unmarked
                if not self._warned_payload:
                    logger.warning(
                        "%s needs a payload per request (extra_args[%r]); requests without "
                        "one are not watermarked",
                        type(self._scheme).__name__,
                        PAYLOAD_ARG,
                    )
                    self._warned_payload = True
                return None
            return self._scheme
        if for_payload is None:
            logger.warning(
                "a payload was asked for but %s carries none; the request is marked without it",
                type(self._scheme).__name__,
            )
            return self._scheme
        scheme = self._payload_schemes.get(payload)
        if scheme is None:
            if len(self._payload_schemes) > 4096:
                self._payload_schemes.clear()
            scheme = self._payload_schemes[payload] = for_payload(payload)
        return scheme

    def update_state(self, batch_update: Any) -> None:
        """Apply the batch's changes: removed, then added, then moved (vLLM's order)."""
        if batch_update is None:
            return
        for index in batch_update.removed:
            self._rows.pop(index, None)
        for added in batch_update.added:
            index, params = added[0], added[1]
            if len(added) >= 4:  # (index, params, prompt ids or None, output ids)
                prompt, output = added[2], added[3]
            else:  # older releases: (index, params, output ids)
                prompt, output = None, added[2]
            scheme = self._scheme_for(params)
            if scheme is None:
                self._rows.pop(index, None)
            else:
                self._rows[index] = _Row(prompt=prompt, output=output, scheme=scheme)
        for a, b, direction in batch_update.moved:
            row_a, row_b = self._rows.pop(a, None), self._rows.pop(b, None)
            if _direction(direction) == "SWAP":
                if row_a is not None:
                    self._rows[b] = row_a
                if row_b is not None:
                    self._rows[a] = row_b
            elif row_a is not None:  # one-way: a's request now sits at b
                self._rows[b] = row_a

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Watermark the rows of marked requests (in place; the tensor is returned)."""
        if not self._rows:
            return logits
        batch, vocab = int(logits.shape[0]), int(logits.shape[-1])
        groups: dict[int, tuple[WatermarkScheme, list[int]]] = {}
        for index in sorted(self._rows):
            if index >= batch:  # not in this step's batch (should not happen)
                continue
            row = self._rows[index]
            groups.setdefault(id(row.scheme), (row.scheme, []))[1].append(index)
        for scheme, candidates in groups.values():
            width = scheme.context_width
            indices, windows = [], []
            for i in candidates:
                window = _context(self._rows[i].prompt, self._rows[i].output, width)
                if len(window) == width:  # fewer tokens than the context: this step unmarked
                    indices.append(i)
                    windows.append(window)
            if not indices:
                continue
            if isinstance(scheme, KGWWatermark):
                bias = torch.from_numpy(scheme.bias_rows(windows, vocab))
                if self._pin:
                    bias = bias.pin_memory()
                bias = bias.to(logits.device, logits.dtype, non_blocking=self._pin)
                rows = torch.tensor(indices, device=logits.device)
                logits.index_add_(0, rows, bias)
                continue
            for i, window in zip(indices, windows, strict=True):
                row_np = logits[i].detach().to("cpu", torch.float64).numpy()
                new = scheme.process_logits(window, row_np)
                logits[i] = torch.from_numpy(np.ascontiguousarray(new)).to(
                    logits.device, logits.dtype
                )
        return logits


def watermark_processor(
    scheme: WatermarkScheme, *, name: str = "DistillGuardWatermark"
) -> type[WatermarkBatchProcessor]:
    """A V1 logits processor class applying ``scheme`` (pass it to ``LLM(logits_processors=)``).

    The class is made in this process: use it with the in-process ``LLM`` engine (the engine
    core process inherits it when it forks). For ``vllm serve`` use
    :class:`KeyringWatermarkProcessor`, which the engine can import by name.
    """
    return type(name, (WatermarkBatchProcessor,), {"scheme": scheme, "__module__": __name__})


class KeyringWatermarkProcessor(WatermarkBatchProcessor):
    """The V1 processor with the scheme of the DistillGuard configuration.

    Built once per process from :func:`distillguard.config.load_settings` (``[watermark]``,
    the keyring's active watermark key), when the engine instantiates the class.

    Raises:
        ConfigurationError, KeyringError: no configuration or keyring where the settings say.
    """

    _loaded: ClassVar[WatermarkScheme | None] = None
    _loader: ClassVar[Callable[[], WatermarkScheme] | None] = None

    @classmethod
    def resolve_scheme(cls) -> WatermarkScheme | None:
        """The configured scheme (loaded on first use, then kept)."""
        if cls._loaded is None:
            loader = cls._loader or _scheme_from_configuration
            cls._loaded = loader()
        return cls._loaded


def _scheme_from_configuration() -> WatermarkScheme:
    from distillguard.config import load_settings
    from distillguard.keyring import open_keyring
    from distillguard.watermark._registry import build_scheme

    settings = load_settings()
    return build_scheme(settings.watermark, open_keyring(settings).watermark_key())
