"""How detectable each text watermark is on kinds of text that are hard to watermark.

Kinds (from the AlpacaEval model outputs in ``shared/data/alpaca_eval_dev/outputs``): **code**
(answers with a fenced code block), **short answers** (at most 25 words), **structured
reasoning** (numbered or bulleted steps), and **prose** (the rest, over 60 words) as reference.

Two measurements, both with DistillGuard's own detectors (:mod:`distillguard.watermark`):

1. Post-hoc lexical scheme (CATER-like, ``CaterWatermark``) on the *real* answers: embed, then
   detect; and detect on the unmarked answers for the false-positive rate.
2. Generation-time schemes (KGW γ=0.25 δ=2, Aaronson, SynthID depth 16, context width 1) need a
   model's next-token distributions. Without a model at hand, each kind gets its own word-level
   trigram language model fitted on that kind's answers (the built-in ``WordTokenizer``), with
   back-off to bigrams and unigrams; generations start from a real answer's first two words and
   have that answer's length, so each kind keeps its own length and entropy profile (code and
   structured steps are far more predictable than prose). A trigram model is *more* uncertain
   than a real LLM, so these TPRs are optimistic upper bounds for low-entropy kinds.

TPR is the share of marked texts with an exact p-value <= 1e-3; FPR is measured on unmarked
texts (real answers for CATER, plain sampling from the same model for the others). The table is
printed and, with ``--write``, replaces the block between the text-kind markers in
``docs/multimodal.md``.

    .venv/bin/python benchmarks/text_kinds.py [--quick] [--write]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import re
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from distillguard.keyring import WatermarkKey
from distillguard.watermark import (
    AaronsonConfig,
    AaronsonWatermark,
    CaterConfig,
    CaterWatermark,
    KGWConfig,
    KGWWatermark,
    SynthIDConfig,
    SynthIDWatermark,
    WordTokenizer,
)

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ROOT / "shared" / "data" / "alpaca_eval_dev" / "outputs"
DOC = ROOT / "docs" / "multimodal.md"
BEGIN = "<!-- textkinds:begin -->"
END = "<!-- textkinds:end -->"
ALPHA = 1e-3
_STEP = re.compile(r"^\s*(\d+[.)]|[-*•]\s|step\s*\d+)", re.I | re.M)
Scheme = KGWWatermark | AaronsonWatermark | SynthIDWatermark


def _outputs_dir() -> Path:
    for base in (ROOT, *ROOT.parents):
        candidate = base / "shared" / "data" / "alpaca_eval_dev" / "outputs"
        if candidate.is_dir():
            return candidate
    raise SystemExit("shared/data/alpaca_eval_dev/outputs not found")


def load_kinds(limit_files: int) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = defaultdict(list)
    for path in sorted(_outputs_dir().glob("*.jsonl.gz"))[:limit_files]:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                text = str(json.loads(line).get("output") or "").strip()
                words = len(text.split())
                if not text:
                    continue
                if "```" in text:
                    kinds["code"].append(text)
                elif words <= 25:
                    kinds["short answer"].append(text)
                elif len(_STEP.findall(text)) >= 3:
                    kinds["structured reasoning"].append(text)
                elif words > 60:
                    kinds["prose"].append(text)
    return kinds


class TrigramModel:
    """Count-based word trigram model with back-off, over ``WordTokenizer`` ids."""

    def __init__(self, docs: list[NDArray[np.int64]]) -> None:
        self.tri: dict[tuple[int, int], Counter[int]] = defaultdict(Counter)
        self.bi: dict[int, Counter[int]] = defaultdict(Counter)
        uni: Counter[int] = Counter()
        for d in docs:
            ids = d.tolist()
            uni.update(ids)
            for a, b in itertools.pairwise(ids):
                self.bi[a][b] += 1
            for a, b, c in zip(ids, ids[1:], ids[2:], strict=False):
                self.tri[(a, b)][c] += 1
        top = uni.most_common(200)
        self.uni_ids = np.array([t for t, _ in top], dtype=np.int64)
        self.uni_logits = np.log(np.array([c for _, c in top], dtype=np.float64))

    def next(self, a: int, b: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        table = self.tri.get((a, b)) or self.bi.get(b)
        if not table:
            return self.uni_ids, self.uni_logits
        ids = np.fromiter(table.keys(), dtype=np.int64, count=len(table))
        counts = np.fromiter(table.values(), dtype=np.float64, count=len(table))
        return ids, np.log(counts)

    def entropy_bits(self, docs: list[NDArray[np.int64]]) -> float:
        """Mean next-word entropy (bits) along the given texts."""
        values = []
        for d in docs:
            ids = d.tolist()
            for a, b in itertools.pairwise(ids):
                _, logits = self.next(a, b)
                p = np.exp(logits - logits.max())
                p /= p.sum()
                values.append(float(-(p * np.log2(p)).sum()))
        return statistics.fmean(values) if values else 0.0


def generate(
    model: TrigramModel,
    start: NDArray[np.int64],
    length: int,
    scheme: Scheme | None,
    rng: np.random.Generator,
) -> NDArray[np.int64]:
    out = [int(start[0]), int(start[1])]
    while len(out) < length:
        ids, logits = model.next(out[-2], out[-1])
        if scheme is not None:
            logits = scheme.process_candidates(out[-1:], ids, logits)
        finite = np.isfinite(logits)
        p = np.where(finite, np.exp(logits - logits[finite].max()), 0.0)
        p /= p.sum()
        out.append(int(ids[rng.choice(ids.shape[0], p=p)]))
    return np.array(out, dtype=np.int64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer texts")
    parser.add_argument("--write", action="store_true", help="write the table into the docs")
    args = parser.parse_args()
    per_kind = 40 if args.quick else 150
    key = WatermarkKey(kid="wm-kinds", created_at=datetime.now(UTC), secret=bytes(range(32)))
    tok = WordTokenizer()
    kinds = load_kinds(limit_files=20)
    rng = np.random.default_rng(2026)
    schemes: dict[str, Scheme] = {
        "KGW γ=0.25 δ=2": KGWWatermark(KGWConfig(gamma=0.25, delta=2.0, context_width=1), key=key),
        "Aaronson": AaronsonWatermark(AaronsonConfig(context_width=1), key=key),
        "SynthID d=16": SynthIDWatermark(SynthIDConfig(depth=16, context_width=1), key=key),
    }
    cater = CaterWatermark(CaterConfig(), key=key)
    rows: list[list[str]] = []
    for kind in ("code", "short answer", "structured reasoning", "prose"):
        texts = kinds.get(kind, [])
        if len(texts) < 10:
            print(f"{kind}: only {len(texts)} texts, skipped")
            continue
        order = rng.permutation(len(texts))
        sample = [texts[i] for i in order[:per_kind]]
        docs = [tok.encode(t) for t in texts]
        model = TrigramModel(docs)
        sample_docs = [tok.encode(t) for t in sample]
        entropy = model.entropy_bits(sample_docs[:30])
        lengths = [len(d) for d in sample_docs if len(d) >= 3]
        med_len = int(statistics.median(lengths))
        # CATER on the real answers.
        marked = [cater.embed(t) for t in sample]
        p_marked = [cater.detect(m.text).p_value for m in marked]
        p_clean = [cater.detect(t).p_value for t in sample]
        slots = [cater.detect(m.text).n_scored for m in marked]
        rows.append(
            [
                kind,
                "CATER (post-hoc, real answers)",
                str(len(sample)),
                str(med_len),
                f"{statistics.median(slots):.0f}",
                f"{np.mean(np.array(p_marked) <= ALPHA):.2f}",
                f"{np.mean(np.array(p_clean) <= ALPHA):.3f}",
                f"{statistics.median(p_marked):.1e}",
            ]
        )
        starts = [(d, len(d)) for d in sample_docs if len(d) >= 3]
        for name, scheme in schemes.items():
            p_wm, p_null, scored = [], [], []
            for d, length in starts:
                g = generate(model, d, length, scheme, rng)
                res = scheme.detect(g, prompt_len=2)
                p_wm.append(res.p_value)
                scored.append(res.n_scored)
                plain = generate(model, d, length, None, rng)
                p_null.append(scheme.detect(plain, prompt_len=2).p_value)
            rows.append(
                [
                    kind,
                    f"{name} (trigram LM, {entropy:.1f} bits/word)",
                    str(len(starts)),
                    str(med_len),
                    f"{statistics.median(scored):.0f}",
                    f"{np.mean(np.array(p_wm) <= ALPHA):.2f}",
                    f"{np.mean(np.array(p_null) <= ALPHA):.3f}",
                    f"{statistics.median(p_wm):.1e}",
                ]
            )
        for r in rows[-4:]:
            print(" | ".join(r), flush=True)
    header = [
        "| kind | scheme | texts | median words | median scored | TPR (p ≤ 1e-3) | FPR | "
        "median p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    table = "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} with `benchmarks/text_kinds.py`"
            f"{' --quick' if args.quick else ''}.",
            "",
            *header,
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    )
    print(f"\n{table}")
    if args.write:
        text = DOC.read_text(encoding="utf-8")
        if BEGIN not in text or END not in text:
            print(f"markers not found in {DOC}; nothing written")
            return 1
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}", encoding="utf-8")
        print(f"wrote the table into {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
