"""Benchmark: the radioactivity scoring pipeline (tape, k-gram filter, exact test, curve).

Scores a stream of suspect answers (random token ids, vocabulary 32,000, 200 tokens each, so
the model's forward passes are excluded) with :class:`RadioactivityScorer`: one deduplication
tape over the whole run, a k-gram filter of the 20,000 windows most frequent in 2,000 "harvest"
texts, the exact binomial test and the streaming p-value curve, in batches of 1,000 answers.
KGW, context width 2 (the blocks of the filter and the tape are then not trivially small).

Baseline in the same run: a naive per-token Python implementation of the same pipeline (a
Python ``set`` of (window, token) tuples as the tape, a ``set`` of windows as the filter, the
scheme's own scoring called once per token, the binomial tail at the end), on a prefix of the
same stream. Both produce the same green count on that prefix (checked). Medians over repeats.

    .venv/bin/python benchmarks/bench_radioactivity.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

import numpy as np

from distillguard.keyring import WatermarkKey
from distillguard.radioactivity import KgramFilter, RadioactivityScorer, TokenText
from distillguard.watermark import KGWConfig, KGWWatermark

VOCAB = 32_000
LENGTH = 200
WIDTH = 2


def _texts(n: int, seed: int) -> list[TokenText]:
    rng = np.random.default_rng(seed)
    # a Zipf-like unigram so that windows repeat as in real text (dedup has work to do)
    ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
    p = 1.0 / ranks
    p /= p.sum()
    ids = rng.choice(VOCAB, size=(n, LENGTH), p=p)
    return [TokenText.of(row) for row in ids]


def run_ours(
    wm: KGWWatermark, flt: KgramFilter, texts: list[TokenText]
) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, green count)."""
    t, c = time.perf_counter(), time.process_time()
    sc = RadioactivityScorer(wm, kgram_filter=flt)
    for i in range(0, len(texts), 1000):
        sc.add_texts(texts[i : i + 1000])
    res = sc.result()
    return time.perf_counter() - t, time.process_time() - c, res.statistic


def run_naive(
    wm: KGWWatermark, windows: set[tuple[int, ...]], texts: list[TokenText]
) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, green count)."""
    from distillguard.watermark._stats import binomial_sf

    t, c = time.perf_counter(), time.process_time()
    seen: set[tuple[int, ...]] = set()
    greens = n = 0
    for text in texts:
        toks = text.tokens.tolist()
        for p in range(WIDTH, len(toks)):
            window = tuple(toks[p - WIDTH : p])
            if window not in windows:
                continue
            key = (*window, toks[p])
            if key in seen:
                continue
            seen.add(key)
            s = wm.score_tokens(np.asarray(key, dtype=np.int64), dedup=False)
            greens += int(s.scores[0])
            n += 1
    binomial_sf(greens, n, wm.config.gamma)
    return time.perf_counter() - t, time.process_time() - c, float(greens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run")
    args = parser.parse_args()
    n_texts = 5_000 if args.quick else 20_000
    n_naive = 100 if args.quick else 300
    repeats = 3 if args.quick else 5
    key = WatermarkKey(kid="bench", created_at=datetime.now(UTC), secret=bytes(range(32)))
    wm = KGWWatermark(KGWConfig(context_width=WIDTH), key=key)
    harvest = _texts(2_000, 1)
    flt = KgramFilter.from_texts(harvest, width=WIDTH, top=20_000)
    window_set: set[tuple[int, ...]] = set()
    counts: dict[tuple[int, ...], int] = {}
    for t in harvest:
        toks = t.tokens.tolist()
        for p in range(WIDTH, len(toks)):
            w = tuple(toks[p - WIDTH : p])
            counts[w] = counts.get(w, 0) + 1
    # the same top-20,000 windows as the filter (ties at the cut resolved by the filter itself)
    from distillguard.radioactivity import window_hashes

    for w in counts:
        probe = window_hashes(np.asarray([*w, 0], dtype=np.int64), width=WIDTH)
        if flt.contains(probe)[WIDTH]:
            window_set.add(w)
    stream = _texts(n_texts, 2)
    tokens = n_texts * LENGTH
    naive_tokens = n_naive * LENGTH
    ours, naive, ours_cpu, naive_cpu = [], [], [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        dt, cpu, _stat = run_ours(wm, flt, stream)
        ours.append(tokens / dt)
        ours_cpu.append(tokens / cpu)
        dt_n, cpu_n, green_naive = run_naive(wm, window_set, stream[:n_naive])
        naive.append(naive_tokens / dt_n)
        naive_cpu.append(naive_tokens / cpu_n)
    _dt, _cpu, green_ours_prefix = run_ours(wm, flt, stream[:n_naive])
    assert green_ours_prefix == green_naive, (green_ours_prefix, green_naive)
    med = statistics.median
    load = os.getloadavg()[0]
    print(f"stream: {n_texts} texts x {LENGTH} tokens = {tokens:,} tokens, filter {len(flt):,}")
    print(
        f"pipeline (tape + filter + test + curve): {med(ours):,.0f} tokens/s wall, "
        f"{med(ours_cpu):,.0f} tokens per CPU-second (medians of {repeats})"
    )
    print(
        f"naive per-token Python baseline:         {med(naive):,.0f} tokens/s wall, "
        f"{med(naive_cpu):,.0f} tokens per CPU-second ({naive_tokens:,} tokens)"
    )
    ratios = [a / b for a, b in zip(ours_cpu, naive_cpu, strict=True)]
    print(
        f"ratio (CPU-seconds, median per repeat): {med(ratios):,.0f}x; "
        f"target >= 1,000,000 tokens/s per core: "
        f"{'met' if med(ours_cpu) >= 1_000_000 else 'NOT met'} (load average {load:.1f})"
    )


if __name__ == "__main__":
    main()
