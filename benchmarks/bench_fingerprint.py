"""Benchmark: attribute every suspect of both splits against their 34 references, vs the baseline.

Reference folders: ``shared/data/alpaca_eval_dev`` and ``shared/data/alpaca_eval_more`` (22 + 12
references, 8 + 9 suspects with what their model cards say). For each suspect, timed with the
reference fingerprints in a warm on-disk cache (as ``fingerprint attribute`` runs the second
time): reading the references, the suspect's fingerprint and identity profile, ``attribute``
(family and provider verdicts, identity channel on) and the one-vs-rest ``teacher_test`` for the
family its card names (or, for human-data suspects, for the top-ranked family); the naive TF-IDF
baseline is timed in the same run.

Without ``--quick`` it also runs the leave-one-out checks on the 34 references:

- ``holdout_checks`` with the identity channel: every reference held out with its family and
  provider removed (any family or provider verdict is a false accusation), and every member of a
  family with several versions held out alone (it should be attributed to its own family);
- ``teacher_holdouts``: every reference held out and tested one-vs-rest against every family
  whose null it belongs to (any "learned" is a false accusation);
- the one-vs-rest test of every human-data suspect against every family (false accusations).

    python benchmarks/bench_fingerprint.py [--quick | --holdouts-only] [--cache-dir DIR]
        [--no-identity]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from distillguard.errors import InputError
from distillguard.fingerprint import FingerprintOptions, attribute, compute_fingerprint
from distillguard.fingerprint.attribution import prepare_statistics
from distillguard.fingerprint.baseline import naive_baseline
from distillguard.fingerprint.cache import FingerprintCache, default_cache_dir
from distillguard.fingerprint.evaluation import holdout_checks, teacher_holdouts
from distillguard.fingerprint.identity import identity_profile
from distillguard.fingerprint.outputs import read_outputs
from distillguard.fingerprint.references import (
    load_references,
    read_families_files,
    reference_files,
)
from distillguard.fingerprint.teacher import teacher_test

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPLITS = ("alpaca_eval_dev", "alpaca_eval_more")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="time two suspects, no holdouts")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--no-identity", action="store_true")
    parser.add_argument(
        "--holdouts-only",
        action="store_true",
        help="skip the timed suspects (human-data "
        "suspects are still fingerprinted for their one-vs-rest checks)",
    )
    args = parser.parse_args()
    dirs = [SHARED / s for s in SPLITS]
    if not all((d / "lineage.json").is_file() for d in dirs):
        print(f"skipped: {dirs} not found")
        return 0
    use_id = not args.no_identity
    fam = read_families_files([d / "lineage.json" for d in dirs])
    files = reference_files([d / "outputs" for d in dirs], fam)
    options = FingerprintOptions()
    cache = FingerprintCache(args.cache_dir or default_cache_dir())
    t = time.perf_counter()
    load_references(files, options=options, cache=cache)
    took = time.perf_counter() - t
    print(f"references: {len(files)}; first load (cache cold or warm): {took:.1f} s")
    suspects: list[tuple[str, Path, dict[str, Any]]] = []
    for d in dirs:
        lineage = json.loads((d / "lineage.json").read_text())
        for name, meta in lineage["suspects"].items():
            suspects.append((d.name, d / "outputs" / f"{name}.jsonl.gz", meta))
    if args.quick:
        suspects = [suspects[0], suspects[-1]]
    if args.holdouts_only:
        suspects = [s for s in suspects if s[2].get("trained_on_outputs_of") is None]
    print(f"load average {os.getloadavg()[0]:.1f}")
    ours_t, base_t = [], []
    rows = []
    refs = None
    for split, path, meta in suspects:
        truth = meta.get("trained_on_outputs_of")
        conf = meta.get("confidence", "documented" if truth else "human")
        t = time.perf_counter()
        refs = load_references(files, options=options, cache=cache)  # warm cache
        out = read_outputs(path)
        fp = compute_fingerprint(out, options=options)
        s_id = identity_profile(out) if use_id else None
        r_id = refs.identity if use_id else None
        prepared = prepare_statistics(fp, refs.fingerprints, fam)
        res = attribute(
            fp,
            refs.fingerprints,
            fam,
            alpha=0.01,
            suspect_identity=s_id,
            reference_identity=r_id,
            prepared=prepared,
        )
        asked = truth or res.ranking[0].family
        tt = teacher_test(
            fp,
            refs.fingerprints,
            fam,
            asked,
            alpha=0.01,
            suspect_identity=s_id,
            reference_identity=r_id,
            prepared=prepared,
        )
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        base = naive_baseline(out, list(refs.outputs), fam)
        base_t.append(time.perf_counter() - t)
        truth_provider = next(
            (fam.providers.get(n) for n, f in fam.families.items() if f == truth), None
        )
        rows.append((out.name, truth, truth_provider, res, tt, base.family, conf, fp, s_id))
        pa = tt.provider_answer
        print(
            f"  {split[12:]:4s} {out.name[:30]:30s} card={truth!s:16s} {conf:18s} "
            f"family={res.verdict!s:16s} provider={res.provider_verdict!s:9s} "
            f"top={res.ranking[0].family} p={res.ranking[0].p_value:.2g} | "
            f"teacher {asked}: {'LEARNED' if tt.family.learned else 'no'} p={tt.family.p_value:.2g}"
            f" provider {tt.provider}: {'LEARNED' if pa and pa.learned else 'no'} "
            f"p={pa.p_value if pa else float('nan'):.2g} | baseline={base.family} "
            f"| {ours_t[-1]:.1f} s",
            flush=True,
        )
    ours, basem = statistics.median(ours_t), statistics.median(base_t)
    print(
        f"per suspect (attribute + teacher test, identity {use_id}, cache warm): median "
        f"{ours:.1f} s, max {max(ours_t):.1f} s (target <= 60 s); naive baseline median "
        f"{basem:.1f} s; load average {os.getloadavg()[0]:.1f}"
    )
    distilled = [r for r in rows if r[1] is not None]
    human = [r for r in rows if r[1] is None]
    fam_ok = sum(r[3].verdict == r[1] for r in distilled)
    prov_ok = sum(r[3].provider_verdict == r[2] for r in distilled)
    teach_ok = sum(r[4].family.learned for r in distilled)
    tprov_ok = sum(bool(r[4].provider_answer and r[4].provider_answer.learned) for r in distilled)
    false_fam = sum(r[3].verdict is not None for r in human)
    false_prov = sum(r[3].provider_verdict is not None for r in human)
    wrong = sum(r[3].verdict not in (None, r[1]) for r in distilled)
    print(
        f"distilled ({len(distilled)}): family right {fam_ok}, wrong family {wrong}, provider "
        f"right {prov_ok}; --teacher <card's family> learned {teach_ok}, its provider {tprov_ok}"
    )
    print(
        f"human data ({len(human)}): false family verdicts {false_fam}, false provider "
        f"verdicts {false_prov}; baseline right {sum(r[5] == r[1] for r in rows)}/{len(rows)}"
    )
    if args.quick or refs is None:
        return 0
    identity = dict(refs.identity) if use_id else None
    all_fams = sorted(set(fam.families.values()))
    tests = false = 0
    for name, _, _, _, _, _, _, fp, s_id in human:
        prepared = prepare_statistics(fp, refs.fingerprints, fam)
        for f in all_fams:
            try:
                tt = teacher_test(
                    fp,
                    refs.fingerprints,
                    fam,
                    f,
                    alpha=0.01,
                    suspect_identity=s_id,
                    reference_identity=identity,
                    prepared=prepared,
                )
            except InputError:
                continue
            tests += 1
            if tt.family.learned:
                false += 1
                print(f"  human-data {name} falsely 'learned from' {f} (p {tt.family.p_value:.2g})")
    print(f"human-data suspects, one-vs-rest against every family: {false}/{tests} false")
    t = time.perf_counter()
    checks = teacher_holdouts(refs.fingerprints, fam, alpha=0.01, identity=identity)
    fa = [tc for tc in checks if tc.learned]
    prov = [tc for tc in checks if tc.provider_learned is not None]
    print(
        f"teacher holdouts ({time.perf_counter() - t:.0f} s): {len(fa)}/{len(checks)} false "
        f"'learned' (family), {sum(bool(tc.provider_learned) for tc in prov)}/{len(prov)} "
        "(provider)"
    )
    for tc in fa:
        print(f"  {tc.held_out} -> {tc.teacher} p={tc.p_value:.2g}")
    t = time.perf_counter()
    report = holdout_checks(refs.fingerprints, fam, alpha=0.01, identity=identity)
    print(f"leave-one-out checks ({time.perf_counter() - t:.0f} s):")
    for c in report.checks:
        print(
            f"  {c.kind:12s} {c.held_out:28s} expected={c.expected!s:16s} "
            f"verdict={c.verdict!s:18s} provider={c.provider_verdict!s:10s} "
            f"top={c.top_family} p={c.top_p_value:.3g}"
        )
    false_prov_ref = sum(
        c.provider_verdict is not None for c in report.checks if c.kind == "unrelated"
    )
    print(
        f"false accusations: {report.false_accusations}/{report.unrelated_tests} held-out "
        f"references (provider verdicts {false_prov_ref}); same family found: "
        f"{report.same_family_hits}/{report.same_family_tests}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
