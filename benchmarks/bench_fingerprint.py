"""Benchmark: attribute one suspect (805 outputs) against 22 references, vs the naive baseline.

Times the full attribution of each dev-folder suspect from files (reference fingerprints
computed once, as a built library would hold them; the suspect's fingerprint, embeddings
included when the ``ml`` extra is installed, is computed inside the timed part), and the naive
TF-IDF baseline in the same run, and prints both accuracies.

Without ``--quick`` it also runs the leave-one-out checks on the references
(:func:`distillguard.fingerprint.evaluation.holdout_checks`): every reference held out with its
family and provider removed (any verdict is a false accusation), and every member of a family with
several versions held out alone (it should be attributed to its own family). It also times loading
the 22 reference fingerprints from the on-disk cache against computing them.

    python benchmarks/bench_fingerprint.py [--quick] [--no-embeddings]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from distillguard.fingerprint import (
    FingerprintOptions,
    attribute,
    compute_fingerprint,
    embeddings_available,
    read_families,
    read_outputs,
)
from distillguard.fingerprint.baseline import naive_baseline
from distillguard.fingerprint.cache import FingerprintCache
from distillguard.fingerprint.evaluation import holdout_checks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_eval_dev"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="time one suspect only")
    parser.add_argument("--no-embeddings", action="store_true")
    args = parser.parse_args()
    if not (DATA / "lineage.json").is_file():
        print(f"skipped: {DATA} not found")
        return 0
    lineage = json.loads((DATA / "lineage.json").read_text())
    fam = read_families(DATA / "lineage.json")
    emb = embeddings_available() and not args.no_embeddings
    options = FingerprintOptions(embeddings=emb, embedding_max_tokens=64)
    t0 = time.perf_counter()
    ref_out = [
        read_outputs(DATA / "outputs" / f"{r}.jsonl.gz") for r in lineage["reference_models"]
    ]
    ref_fps = [compute_fingerprint(o, options=options) for o in ref_out]
    print(f"library build (22 references, embeddings={emb}): {time.perf_counter() - t0:.1f} s")
    suspects = list(lineage["suspects"].items())
    if args.quick:
        suspects = suspects[:1]
    ours_t, base_t, ours_ok, base_ok = [], [], 0, 0
    for name, meta in suspects:
        truth = meta["trained_on_outputs_of"]
        t = time.perf_counter()
        out = read_outputs(DATA / "outputs" / f"{name}.jsonl.gz")
        result = attribute(compute_fingerprint(out, options=options), ref_fps, fam, alpha=0.01)
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        base = naive_baseline(out, ref_out, fam)
        base_t.append(time.perf_counter() - t)
        ours_ok += result.verdict == truth
        base_ok += base.family == truth
        print(
            f"  {name:28s} truth={truth!s:18s} ours={result.verdict!s:18s} baseline={base.family}"
        )
    ours, basem = statistics.median(ours_t), statistics.median(base_t)
    print(f"attribution per suspect: median {ours:.1f} s (target <= 60 s)")
    print(
        f"naive baseline per suspect: median {basem:.1f} s; ratio ours/baseline {ours / basem:.2f}"
    )
    print(f"correct: ours {ours_ok}/{len(suspects)}, baseline {base_ok}/{len(suspects)}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = FingerprintCache(Path(tmp))
        paths = [DATA / "outputs" / f"{r}.jsonl.gz" for r in lineage["reference_models"]]
        t = time.perf_counter()
        for path in paths:
            cache.fingerprint_file(path, options=options)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        for path in paths:
            cache.fingerprint_file(path, options=options)
        warm = time.perf_counter() - t
    print(f"reference fingerprints: computed {cold:.1f} s, from cache {warm:.1f} s")
    if args.quick:
        return 0
    t = time.perf_counter()
    report = holdout_checks(ref_fps, fam, alpha=0.01)
    print(f"leave-one-out checks ({time.perf_counter() - t:.0f} s):")
    for c in report.checks:
        print(
            f"  {c.kind:12s} {c.held_out:28s} expected={c.expected!s:16s} "
            f"verdict={c.verdict!s:18s} top={c.top_family} p={c.top_p_value:.3g}"
        )
    print(
        f"false accusations: {report.false_accusations}/{report.unrelated_tests} held-out "
        f"references; same family found: {report.same_family_hits}/{report.same_family_tests}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
