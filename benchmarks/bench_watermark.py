"""Benchmark: watermark detection throughput and generation overhead.

1. Detection, tokens/s on one core: ``KGWWatermark.detect`` (keyed PRF over the context window and
   candidate, dedup, exact binomial tail) on a 1,000,000-token sequence (vocabulary 50,257, as
   GPT-2). Baseline in the same run: a faithful per-token implementation of the reference KGW
   detector (``extended_watermark_processor``-style: for every token, seed a ``torch.Generator``
   with ``hash_key * previous token``, draw ``torch.randperm(vocab)``, take the first
   ``gamma * vocab`` ids as the green list, test membership, then the z-score).
2. Generation overhead: tokens/s of ``model.generate`` on a tiny random GPT-2 (2 layers, width 64,
   vocabulary 2,048, one thread) with and without the KGW ``LogitsProcessor``, interleaved,
   medians over repeats; overhead = 1 - watermarked / plain.

    .venv/bin/python benchmarks/bench_watermark.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from datetime import UTC, datetime

import numpy as np

from distillguard.keyring import WatermarkKey
from distillguard.watermark import KGWConfig, KGWWatermark

VOCAB = 50_257


def reference_kgw_detect(tokens: list[int], *, gamma: float, hash_key: int) -> float:
    """Per-token reference detector: a seeded vocabulary permutation per token; returns z."""
    import torch

    rng = torch.Generator(device="cpu")
    greens = 0
    scored = 0
    size = int(VOCAB * gamma)
    for i in range(1, len(tokens)):
        rng.manual_seed(hash_key * tokens[i - 1])
        greenlist = torch.randperm(VOCAB, generator=rng)[:size]
        if tokens[i] in greenlist:
            greens += 1
        scored += 1
    return (greens - gamma * scored) / math.sqrt(scored * gamma * (1 - gamma))


def bench_detection(quick: bool) -> tuple[float, float]:
    key = WatermarkKey(kid="bench", created_at=datetime.now(UTC), secret=b"b" * 32)
    rng = np.random.default_rng(0)
    n = 1_000_000
    tokens = rng.integers(0, VOCAB, n)
    ours: dict[str, list[float]] = {"kgw h=1": [], "kgw self-hash h=4": []}
    schemes = {
        "kgw h=1": KGWWatermark(KGWConfig(), key=key),
        "kgw self-hash h=4": KGWWatermark(KGWConfig.robust(), key=key),
    }
    for s in schemes.values():
        s.detect(tokens[:1000])  # build the per-token tables once
    # The reference costs a vocabulary permutation per token (~0.4 ms): it runs on enough tokens
    # to take seconds, finely interleaved with ours so that both see the same load: each repeat
    # alternates one pass of ours over the 1,000,000 tokens with 1,000 reference tokens, 5 (quick)
    # or 20 times; the rates are summed over the repeat and the ratio taken per repeat.
    rounds = 5 if quick else 20
    chunk = 1000
    ref_tokens = tokens[: rounds * chunk].tolist()
    ref_rates: list[float] = []
    ratios: dict[str, list[float]] = {name: [] for name in schemes}
    for _ in range(3 if quick else 5):
        spent = dict.fromkeys(schemes, 0.0)
        ref_spent = 0.0
        for k in range(rounds):
            for name, scheme in schemes.items():
                t0 = time.perf_counter()
                res = scheme.detect(tokens)
                spent[name] += time.perf_counter() - t0
                assert res.n_scored > 0.8 * n
            t0 = time.perf_counter()
            reference_kgw_detect(
                ref_tokens[k * chunk : (k + 1) * chunk], gamma=0.25, hash_key=15485863
            )
            ref_spent += time.perf_counter() - t0
        ref_rates.append(len(ref_tokens) / ref_spent)
        for name in schemes:
            ours[name].append(rounds * n / spent[name])
            ratios[name].append(ours[name][-1] / ref_rates[-1])
    ref = statistics.median(ref_rates)
    print(
        f"detection (per repeat: ours {rounds} x {n:,} tokens, reference {len(ref_tokens):,} "
        f"tokens, interleaved; vocabulary 50,257, one core, medians of {len(ref_rates)} repeats):"
    )
    for name, rates in ours.items():
        med = statistics.median(rates)
        r = ratios[name]
        print(
            f"  ours {name:<20} {med:>14,.0f} tokens/s   ratio to reference "
            f"{statistics.median(r):,.0f}x (per repeat {min(r):,.0f}-{max(r):,.0f}x)"
        )
    print(f"  reference per-token KGW   {ref:>14,.0f} tokens/s")
    load = os.getloadavg()
    print(f"  load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return statistics.median(ours["kgw h=1"]), ref


def bench_generation(quick: bool) -> float:
    import torch

    from distillguard.watermark.hf import (
        WatermarkLogitsProcessor,
        build_tiny_model,
        build_word_tokenizer,
    )

    torch.set_num_threads(1)
    tok = build_word_tokenizer([f"w{i}" for i in range(2045)])
    model = build_tiny_model(len(tok), layers=2, width=64)
    key = WatermarkKey(kid="bench", created_at=datetime.now(UTC), secret=b"g" * 32)
    wm = KGWWatermark(KGWConfig(), key=key)
    new = 64 if quick else 200
    ids = tok(["w1 w2 w3 w4"] * 4, return_tensors="pt")

    def run(processor: WatermarkLogitsProcessor | None) -> float:
        from transformers import LogitsProcessorList

        procs = LogitsProcessorList([processor] if processor is not None else [])
        torch.manual_seed(0)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(
                **ids,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=True,
                top_k=0,
                logits_processor=procs,
                pad_token_id=tok.pad_token_id,
            )
        return 4 * new / (time.perf_counter() - t0)

    run(None)
    plain, marked = [], []
    for _ in range(5 if quick else 9):
        plain.append(run(None))
        marked.append(run(WatermarkLogitsProcessor(wm)))
    ratios = [m / p for m, p in zip(marked, plain, strict=True)]
    overhead = 1 - statistics.median(ratios)
    # the processor's own cost per step, timed alone (robust to the machine's load swings)
    proc = WatermarkLogitsProcessor(wm)
    step_ids = torch.randint(0, len(tok), (4, 32))
    step_scores = torch.randn(4, len(tok))
    calls = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(200):
            step_ids[:, -1] = torch.randint(0, len(tok), (4,))  # fresh contexts as in generation
            proc(step_ids, step_scores)
        calls.append((time.perf_counter() - t0) / 200)
    per_call = statistics.median(calls)
    step = 4 / statistics.median(plain)
    print("generation (tiny GPT-2, batch 4, one thread, median of interleaved runs):")
    print(f"  plain        {statistics.median(plain):>10,.0f} tokens/s")
    print(f"  watermarked  {statistics.median(marked):>10,.0f} tokens/s")
    print(f"  overhead     {overhead:>10.1%}  (median of per-pair ratios; target <= 3%)")
    print(
        f"  processor alone: {per_call * 1e6:,.0f} us per step = {per_call / step:.1%} of a plain "
        f"step ({step * 1e3:.2f} ms for the batch of 4)"
    )
    return overhead


def main() -> None:
    import torch

    torch.set_num_threads(1)  # one core for every figure (and no idle OpenMP spinning)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter runs")
    parser.add_argument("--skip-generation", action="store_true", help="detection only")
    args = parser.parse_args()
    bench_detection(args.quick)
    if not args.skip_generation:
        bench_generation(args.quick)


if __name__ == "__main__":
    main()
