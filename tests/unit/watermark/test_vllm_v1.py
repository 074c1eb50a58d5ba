"""The vLLM V1 batch-level logits processor, driven through the V1 interface as vLLM drives it:
a persistent batch whose requests are added (params, prompt ids, a live reference to the output
ids), removed, moved and swapped between rows, a ``(batch, vocab)`` logits tensor per step.
vLLM itself needs a GPU machine; the batch updates here are built with the same fields as
vLLM's ``BatchUpdate`` (batch_size, removed, added, moved) and the same order of application.
Each row is compared with the per-request processor (V0), whose output is tested against the
scheme in test_hf.py."""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.keyring import Keyring, WatermarkKey
from distillguard.watermark import (
    AaronsonConfig,
    AaronsonWatermark,
    KGWConfig,
    KGWWatermark,
    MPACConfig,
    MPACWatermark,
    WatermarkScheme,
)
from distillguard.watermark.vllm import (
    DISABLE_ARG,
    PAYLOAD_ARG,
    KeyringWatermarkProcessor,
    VLLMWatermarkProcessor,
    WatermarkBatchProcessor,
    watermark_processor,
)

VOCAB = 300
FIXED_KEY = WatermarkKey(kid="wm-v1", created_at=datetime(2026, 1, 1, tzinfo=UTC), secret=b"k" * 32)


class MoveDirectionality(enum.Enum):
    """As vLLM's: a one-way move or a two-way swap of two rows."""

    UNIDIRECTIONAL = enum.auto()
    SWAP = enum.auto()


@dataclass(frozen=True)
class BatchUpdate:
    """As vLLM's: the current batch size, then removed, added, moved (applied in that order)."""

    batch_size: int
    removed: Sequence[int]
    added: Sequence[tuple[Any, ...]]
    moved: Sequence[tuple[int, int, MoveDirectionality]]


@dataclass
class Params:
    """The part of vLLM's SamplingParams the processor reads."""

    extra_args: dict[str, Any] | None = None


class V1Interface(abc.ABC):
    """vLLM V1's LogitsProcessor interface, as documented: constructed by the engine with
    (vllm_config, device, is_pin_memory); apply, is_argmax_invariant and update_state abstract;
    validate_params and needs_output_token_ids with defaults."""

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        return None

    @abc.abstractmethod
    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None: ...

    @abc.abstractmethod
    def apply(self, logits: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def is_argmax_invariant(self) -> bool: ...

    def needs_output_token_ids(self) -> bool:
        return False

    @abc.abstractmethod
    def update_state(self, batch_update: Any) -> None: ...


@dataclass
class Request:
    prompt: list[int]
    params: Params
    output: list[int] = field(default_factory=list)


class Engine:
    """A persistent batch the way vLLM keeps one: rows hold requests; each step the processor
    gets the batch's changes, then the logits."""

    def __init__(self, processor: Any, *, old_tuples: bool = False) -> None:
        self.processor = processor
        self.rows: list[Request | None] = []
        self.removed: list[int] = []
        self.added: list[tuple[Any, ...]] = []
        self.moved: list[tuple[int, int, MoveDirectionality]] = []
        self.old_tuples = old_tuples

    def add(self, request: Request) -> None:
        free = [i for i, r in enumerate(self.rows) if r is None]
        index = free[0] if free else len(self.rows)
        if index == len(self.rows):
            self.rows.append(None)
        self.rows[index] = request
        if self.old_tuples:
            self.added.append((index, request.params, request.output))
        else:
            self.added.append((index, request.params, request.prompt, request.output))

    def remove(self, index: int) -> None:
        """A request that finished: only one that was in the batch at the last step (vLLM
        registers removals at the start of a step, before this step's additions)."""
        if any(a[0] == index for a in self.added) or any(m[1] == index for m in self.moved):
            return
        if self.rows[index] is not None:
            self.rows[index] = None
            self.removed.append(index)

    def move(self, a: int, b: int) -> None:
        """One-way: the request at a goes to the (empty) row b."""
        self.rows[b], self.rows[a] = self.rows[a], None
        self.moved.append((a, b, MoveDirectionality.UNIDIRECTIONAL))

    def swap(self, a: int, b: int) -> None:
        self.rows[a], self.rows[b] = self.rows[b], self.rows[a]
        self.moved.append((a, b, MoveDirectionality.SWAP))

    def step(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Send the batch update, apply the processor; (logits before, logits after)."""
        while self.rows and self.rows[-1] is None:
            self.rows.pop()
        update = None
        if self.removed or self.added or self.moved:
            update = BatchUpdate(len(self.rows), self.removed, self.added, self.moved)
            self.removed, self.added, self.moved = [], [], []
        self.processor.update_state(update)
        logits = torch.from_numpy(rng.normal(size=(max(len(self.rows), 1), VOCAB))).float()
        before = logits.clone()
        after = self.processor.apply(logits)
        # every request then generates one token (the processor sees it through its reference)
        for r in self.rows:
            if r is not None:
                r.output.append(int(rng.integers(VOCAB)))
        return before, after


def reference_row(
    scheme: WatermarkScheme | None, request: Request, row: torch.Tensor, *, old: bool = False
) -> torch.Tensor:
    if scheme is None:
        return row
    prompt = [] if old else request.prompt
    if len(prompt) + len(request.output) < scheme.context_width:
        return row  # not enough context yet: the step is unmarked
    return VLLMWatermarkProcessor(scheme).apply(prompt, request.output, row.clone())


def expected_scheme(base: WatermarkScheme, request: Request) -> WatermarkScheme | None:
    extra = request.params.extra_args or {}
    if extra.get(DISABLE_ARG) is False:
        return None
    if isinstance(base, MPACWatermark):  # multi-bit: marked only with a payload
        return base.for_payload(extra[PAYLOAD_ARG]) if PAYLOAD_ARG in extra else None
    return base


def check_step(
    engine: Engine,
    base: WatermarkScheme,
    rng: np.random.Generator,
    *,
    atol: float = 1e-4,
) -> None:
    # the reference must see the outputs as they are during the step, before the new token
    snapshot = [
        None if r is None else Request(r.prompt, r.params, list(r.output)) for r in engine.rows
    ]
    before, after = engine.step(rng)
    for i, r in enumerate(snapshot):
        if r is None:
            continue
        want = reference_row(expected_scheme(base, r), r, before[i], old=engine.old_tuples)
        assert torch.allclose(after[i], want, atol=atol), f"row {i}"


@pytest.fixture
def kgw(key: WatermarkKey) -> KGWWatermark:
    return KGWWatermark(KGWConfig(context_width=2, delta=3.0), key=key)


def test_the_class_meets_the_v1_interface(kgw: KGWWatermark) -> None:
    cls = watermark_processor(kgw)

    class Checked(cls, V1Interface):  # type: ignore[valid-type, misc]
        pass

    proc = Checked(None, torch.device("cpu"), False)  # abstract methods all implemented
    assert proc.is_argmax_invariant() is False  # it changes what greedy decoding picks
    assert proc.needs_output_token_ids() is True  # it reads the real generated ids
    assert issubclass(cls, WatermarkBatchProcessor) and cls.scheme is kgw
    proc.update_state(None)  # no change in the batch
    logits = torch.randn(3, VOCAB)
    assert proc.apply(logits) is logits  # nothing to mark: untouched


def test_no_scheme_is_refused() -> None:
    with pytest.raises(TypeError, match="no scheme"):
        WatermarkBatchProcessor(None, "cpu", False)


def test_validate_params() -> None:
    cls = WatermarkBatchProcessor
    cls.validate_params(Params())
    cls.validate_params(Params({DISABLE_ARG: False, PAYLOAD_ARG: 12}))
    cls.validate_params(object())  # params without extra_args
    for bad in ({DISABLE_ARG: "no"}, {PAYLOAD_ARG: -1}, {PAYLOAD_ARG: "7"}, {PAYLOAD_ARG: True}):
        with pytest.raises(ValueError, match="distillguard_"):
            cls.validate_params(Params(bad))


def test_rows_follow_adds_removes_moves_and_swaps(kgw: KGWWatermark) -> None:
    rng = np.random.default_rng(1)
    engine = Engine(watermark_processor(kgw)(None, "cpu", False))
    a, b, c, d = (Request([1, 2, 3], Params()) for _ in range(4))
    off = Request([4, 5], Params({DISABLE_ARG: False}))
    for r in (a, b, c):
        engine.add(r)
    check_step(engine, kgw, rng)
    engine.add(off)
    engine.swap(0, 2)
    check_step(engine, kgw, rng)
    engine.remove(1)
    engine.move(3, 1)  # vLLM condenses: the last row fills the hole
    check_step(engine, kgw, rng)
    engine.add(d)
    engine.remove(0)
    check_step(engine, kgw, rng)
    check_step(engine, kgw, rng)  # a step without changes (batch_update None)


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add_off", "remove", "move", "swap", "step"]),
        st.integers(0, 7),
        st.integers(0, 7),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(ops=ops, seed=st.integers(0, 2**32 - 1), old=st.booleans())
def test_any_sequence_of_batch_changes_matches_the_per_request_processor(
    ops: list[tuple[str, int, int]], seed: int, old: bool
) -> None:
    scheme = KGWWatermark(KGWConfig(context_width=3, delta=2.5), key=FIXED_KEY)
    rng = np.random.default_rng(seed)
    engine = Engine(watermark_processor(scheme)(None, "cpu", False), old_tuples=old)
    for op, x, y in ops:
        n = len(engine.rows)
        if op in ("add", "add_off"):
            extra = {DISABLE_ARG: False} if op == "add_off" else None
            prompt = [int(t) for t in rng.integers(VOCAB, size=int(rng.integers(1, 6)))]
            engine.add(Request(prompt, Params(extra)))
        elif op == "remove" and n:
            engine.remove(x % n)
        elif op == "move" and n:
            empty = [i for i, r in enumerate(engine.rows) if r is None]
            src = x % n
            if empty and engine.rows[src] is not None:
                engine.move(src, empty[y % len(empty)])
        elif op == "swap" and n >= 2:
            engine.swap(x % n, y % n) if x % n != y % n else None
        else:
            check_step(engine, scheme, rng)
    check_step(engine, scheme, rng)


def test_payload_per_request_and_other_schemes(make_key: Any) -> None:
    mpac = MPACWatermark(MPACConfig(bits=8, context_width=1), key=make_key(3))
    rng = np.random.default_rng(5)
    engine = Engine(watermark_processor(mpac)(None, "cpu", False))
    engine.add(Request([1, 2], Params({PAYLOAD_ARG: 0x5A})))
    engine.add(Request([3], Params({PAYLOAD_ARG: 0xA5})))
    engine.add(Request([9, 9, 9], Params()))
    for _ in range(4):
        check_step(engine, mpac, rng)
    # the two payloads give different logits for the same context
    p1, p2 = mpac.for_payload(0x5A), mpac.for_payload(0xA5)  # every bit differs
    row = torch.randn(VOCAB)
    assert not torch.allclose(
        VLLMWatermarkProcessor(p1).apply([1], [2], row),
        VLLMWatermarkProcessor(p2).apply([1], [2], row),
    )
    aaronson = AaronsonWatermark(AaronsonConfig(context_width=2), key=make_key(4))
    engine = Engine(watermark_processor(aaronson)(None, "cpu", False))
    engine.add(Request([5, 6, 7], Params()))
    engine.add(Request([8], Params({DISABLE_ARG: False})))
    for _ in range(3):
        check_step(engine, aaronson, rng)


def test_generation_through_the_processor_is_detected(kgw: KGWWatermark) -> None:
    """Sampling 200 tokens per request from the processed logits of a 4-request batch gives
    text the detector flags (p < 1e-6), and the unmarked request is not flagged (p > 1e-3)."""
    gen = torch.Generator().manual_seed(11)
    proc = watermark_processor(kgw)(None, "cpu", False)
    requests = [Request([i + 1, i + 2], Params()) for i in range(3)]
    requests.append(Request([50, 51], Params({DISABLE_ARG: False})))
    proc.update_state(
        BatchUpdate(4, [], [(i, r.params, r.prompt, r.output) for i, r in enumerate(requests)], [])
    )
    for _ in range(200):
        logits = proc.apply(torch.zeros(4, VOCAB))  # a flat model: only the watermark speaks
        tokens = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen).squeeze(1)
        proc.update_state(None)
        for r, t in zip(requests, tokens.tolist(), strict=True):
            r.output.append(int(t))
    for r in requests[:3]:
        assert kgw.detect(r.prompt + r.output, prompt_len=len(r.prompt)).p_value < 1e-6
    clean = requests[3]
    assert kgw.detect(clean.prompt + clean.output, prompt_len=len(clean.prompt)).p_value > 1e-3


def test_keyring_processor_builds_the_configured_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dg"
    Keyring.create(home / "keyring.json")
    config = tmp_path / "distillguard.toml"
    config.write_text('[watermark]\nscheme = "kgw"\ndelta = 3.5\n')
    monkeypatch.setenv("DISTILLGUARD_HOME", str(home))
    monkeypatch.setenv("DISTILLGUARD_CONFIG", str(config))
    monkeypatch.setattr(KeyringWatermarkProcessor, "_loaded", None)
    proc = KeyringWatermarkProcessor(None, "cpu", False)
    scheme = KeyringWatermarkProcessor._loaded
    assert isinstance(scheme, KGWWatermark) and scheme.config.delta == 3.5
    from distillguard.config import load_settings
    from distillguard.keyring import open_keyring

    assert scheme.key_id == open_keyring(load_settings()).watermark_key().kid
    # one load per process: a second engine instance reuses it
    assert KeyringWatermarkProcessor(None, "cpu", False)._scheme is scheme
    assert proc.is_argmax_invariant() is False
