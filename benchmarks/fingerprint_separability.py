"""Study: could ANY weighting of the attribution channels meet issue 9's target on the dev folder?

The attribution test (``distillguard.fingerprint.attribute``) turns each feature channel into a
null-standardised statistic per (model, reference) pair and averages the channels. This script
asks whether a better weighting could exist at all, with an oracle that is allowed to look at
the answers: a linear programme finds the channel weights (and a threshold) that maximise the
margin by which

- every distilled suspect's statistic towards its documented teacher family (its closest member)
  exceeds the threshold and its statistic towards every other family ("positives"), while
- every independent suspect's statistic towards every reference, and every reference's statistic
  towards every remaining reference when it is held out with its family and provider (the
  leave-one-out false-accusation check), stays below the threshold ("negatives").

A negative best margin means that no weighting of these channels separates the eight dev
suspects and the held-out references as the target requires, whatever the calibration: some
independent model or unrelated pair always scores at least as high as some distilled suspect
towards its teacher. Weights are non-negative and sum to 1 (``--signed``: free in [-1, 1],
which overfits eight models with as many weights; reported for completeness).

    python benchmarks/fingerprint_separability.py [--no-embeddings] [--signed]

Needs ``../shared/data/alpaca_eval_dev`` (prints "skipped" without it). About 4 minutes on the
2-core VM without embeddings (every fingerprint computed once; 22 leave-one-out refits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog

from distillguard.fingerprint import (
    FingerprintOptions,
    compute_fingerprint,
    embeddings_available,
    read_families,
    read_outputs,
)
from distillguard.fingerprint.attribution import CHANNELS, similarity_matrices
from distillguard.fingerprint.features import Fingerprint
from distillguard.fingerprint.outputs import FamilyMap
from distillguard.fingerprint.stats import NullModel, double_center

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_eval_dev"

F64 = npt.NDArray[np.float64]


def channel_statistics(
    refs: list[Fingerprint], rows: list[Fingerprint], families: FamilyMap
) -> tuple[F64, list[str]]:
    """(rows x refs x channels) null-standardised statistics, as ``attribute`` computes them
    before averaging; ``rows`` are the references followed by the models under test."""
    n = len(refs)
    names = [r.name for r in refs]
    mats = similarity_matrices(refs + rows[n:], n_references=n)
    used = [c for c in CHANNELS if c in mats]
    unrelated = np.ones((len(rows), n), dtype=bool)
    for a in range(n):
        for b in range(n):
            unrelated[a, b] = not families.related(names[a], names[b])
    out = []
    for c in used:
        resid = double_center(mats[c], unrelated, n_references=n)
        out.append(NullModel.fit(resid[:n][unrelated[:n]], units=n).standardise(resid))
    return np.stack(out, axis=-1), used


def best_margin(
    pos: F64, neg: F64, ranks: list[tuple[F64, F64]], *, signed: bool
) -> tuple[F64, float, float]:
    """Maximise m subject to w.p >= tau + m (positives), w.q <= tau - m (negatives) and
    w.p >= w.r + m (the teacher family above every other family of the same suspect)."""
    k = pos.shape[1]
    cost = np.zeros(k + 2)
    cost[-1] = -1.0  # variables: w (k), tau, m; maximise m
    rows_a: list[F64] = []
    for p in pos:
        rows_a.append(np.r_[-p, 1.0, 1.0])
    for q in neg:
        rows_a.append(np.r_[q, -1.0, 1.0])
    for p, r in ranks:
        rows_a.append(np.r_[-(p - r), 0.0, 1.0])
    a_ub = np.array(rows_a)
    b_ub = np.zeros(len(rows_a))
    bounds: list[tuple[float | None, float | None]]
    if signed:
        bounds = [(-1.0, 1.0)] * k + [(None, None), (None, None)]
        res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    else:
        bounds = [(0.0, None)] * k + [(None, None), (None, None)]
        a_eq = np.r_[np.ones(k), 0.0, 0.0][None, :]
        res = linprog(
            cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs"
        )
    x = np.asarray(res.x, dtype=np.float64)
    return x[:k], float(x[-2]), float(x[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-embeddings", action="store_true")
    parser.add_argument("--signed", action="store_true", help="also report free-sign weights")
    args = parser.parse_args()
    if not (DATA / "lineage.json").is_file():
        print(f"skipped: {DATA} not found")
        return 0
    lineage = json.loads((DATA / "lineage.json").read_text())
    families = read_families(DATA / "lineage.json")
    emb = embeddings_available() and not args.no_embeddings
    options = FingerprintOptions(embeddings=emb, embedding_max_tokens=64)
    t0 = time.perf_counter()
    ref_names = list(lineage["reference_models"])
    sus = {k: v["trained_on_outputs_of"] for k, v in lineage["suspects"].items()}
    fps = {
        name: compute_fingerprint(
            read_outputs(DATA / "outputs" / f"{name}.jsonl.gz"), options=options
        )
        for name in [*ref_names, *sus]
    }
    print(f"fingerprints of {len(fps)} models (embeddings={emb}): {time.perf_counter() - t0:.0f} s")

    refs = [fps[r] for r in ref_names]
    z, used = channel_statistics(refs, [*refs, *(fps[s] for s in sus)], families)
    n = len(refs)
    pos: list[F64] = []
    neg: list[F64] = []
    ranks: list[tuple[F64, F64]] = []
    for i, teacher in enumerate(sus.values()):
        row = z[n + i]
        if teacher is None:
            neg.extend(row[j] for j in range(n))
            continue
        members = [j for j in range(n) if families.families[ref_names[j]] == teacher]
        best = max(members, key=lambda j: float(row[j].mean()))
        pos.append(row[best])
        ranks.extend(
            (row[best], row[j]) for j in range(n) if families.families[ref_names[j]] != teacher
        )
    n_independent = len(neg)
    for held in ref_names:
        kept = [r for r in ref_names if not families.related(r, held)]
        kept_fps = [fps[r] for r in kept]
        zh, _ = channel_statistics(kept_fps, [*kept_fps, fps[held]], families)
        neg.extend(zh[len(kept), j] for j in range(len(kept)))
    p_arr, q_arr = np.array(pos), np.array(neg)

    print(f"channels: {', '.join(used)}")
    print(
        f"positives: {len(p_arr)} distilled suspects; negatives: {n_independent} "
        f"independent-suspect pairs + {len(q_arr) - n_independent} held-out reference pairs; "
        f"{len(ranks)} ranking constraints"
    )
    for k, c in enumerate(used):
        weakest = float(p_arr[:, k].min())
        print(
            f"  {c:15s} distilled towards teacher: {np.round(np.sort(p_arr[:, k]), 2).tolist()}; "
            f"negatives at or above the weakest: {int((q_arr[:, k] >= weakest).sum())} of "
            f"{len(q_arr)} ({int((q_arr[:n_independent, k] >= weakest).sum())} of "
            f"{n_independent} from independent suspects); largest negative "
            f"{float(q_arr[:, k].max()):.2f}"
        )
    cases = [
        ("all constraints", q_arr, ranks),
        ("the eight dev suspects only (no held-out references)", q_arr[:n_independent], ranks),
        ("no ranking constraints", q_arr, []),
    ]
    for label, negatives, rk in cases:
        for signed in (False, True) if args.signed else (False,):
            w, tau, m = best_margin(p_arr, negatives, rk, signed=signed)
            weights = ", ".join(f"{c} {v:.2f}" for c, v in zip(used, w, strict=True))
            kind = "free-sign" if signed else "non-negative"
            if signed and m <= 1e-9:
                # all-zero weights give margin 0: nothing better exists
                print(f"{label}, {kind} weights: no separating weighting (best margin 0)")
                continue
            print(
                f"{label}, {kind} weights: best margin {m:+.2f} null SDs at threshold "
                f"{tau:.2f} ({weights})"
            )
    print(
        "a negative margin: no weighting of these channels separates the distilled suspects "
        "from the independent ones and the held-out references"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
