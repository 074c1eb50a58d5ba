"""Canary test: false-positive rate on clean suspects and power on memorising ones.

Every run goes through the real probe path (questions over HTTP to an in-process ASGI suspect,
answers scored, one-sided Fisher exact test). Clean suspects "know" a random 30% of all
canary-like facts, planted or decoy alike (the null with many hits); memorising suspects state
k of the 8 planted canaries. The baseline, measured in the same runs, is the naive rule "flag if
the suspect states any planted canary", which has no control of false accusations.

    .venv/bin/python benchmarks/bench_canaries.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import time

import httpx

from distillguard.fingerprint.canaries import CanaryFact, CanaryGenerator, probe_canaries
from distillguard.fingerprint.testing import SuspectApp

ALPHA = 0.01


def _app(known: list[CanaryFact]) -> SuspectApp:
    by_entity = {f.entity: f for f in known}

    def answer(prompt: str) -> str:
        for entity, fact in by_entity.items():
            if entity in prompt:
                return fact.sentence
        return "I do not know that."

    return SuspectApp(answer=answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    runs = 100 if args.quick else 500
    gen = CanaryGenerator(secret=bytes(range(32)), kid="bench")
    planted = gen.account_facts("acct_bench", count=8)
    start = time.perf_counter()
    ours_fp = naive_fp = 0
    for seed in range(runs):
        rng = random.Random(seed)
        decoys = gen.decoys(24, nonce=f"seed{seed}")
        known = [f for f in planted + decoys if rng.random() < 0.3]
        r = probe_canaries(
            endpoint="http://suspect/v1",
            model="s",
            planted=planted,
            generator=gen,
            transport=httpx.ASGITransport(app=_app(known)),
            seed=seed,
            alpha=ALPHA,
        )
        ours_fp += r.verdict
        naive_fp += r.planted_hits > 0
    elapsed = time.perf_counter() - start
    print(f"clean suspects: {runs} runs, 8 planted + 24 decoys each, alpha {ALPHA}")
    print(f"  ours  FPR {ours_fp / runs:.3f} ({ours_fp}/{runs})")
    print(f"  naive FPR {naive_fp / runs:.3f} ({naive_fp}/{runs})  (flag if any planted recalled)")
    if ours_fp:
        print(f"  ratio naive/ours FPR: {naive_fp / ours_fp:.1f}x")
    else:
        print("  ratio naive/ours FPR: ours had no false positive")
    print(f"  {elapsed / runs * 1000:.1f} ms per probe (32 questions)")
    per_k = max(20, runs // 10)
    print(f"memorising suspects (states k of 8 planted canaries, 0 decoys), {per_k} runs each:")
    for k in range(1, 9):
        hits = 0
        for seed in range(per_k):
            rng = random.Random(1000 + seed)
            known = rng.sample(planted, k)
            r = probe_canaries(
                endpoint="http://suspect/v1",
                model="s",
                planted=planted,
                generator=gen,
                transport=httpx.ASGITransport(app=_app(known)),
                seed=seed,
                alpha=ALPHA,
            )
            hits += r.verdict
        print(f"  k={k}: power {hits / per_k:.2f}")


if __name__ == "__main__":
    main()
