"""Signal: chain-of-thought elicitation and rubric/reward-grading requests.

**What it catches.** Distillation campaigns want training signal, not answers: reasoning traces
("think step by step and show all your reasoning", "explain the hidden reasoning an expert would
follow") and preference or reward labels ("act as a reward model", "which answer is better",
"score against this rubric"). Two small classifiers (logistic regression on word unigrams and
bigrams, trained here on :mod:`distillguard.monitor._corpus`) give each request a probability of
each intent; an account's *elicitation share* is the share of its requests with probability above
one half, tested against the base rate of the log with a one-sided binomial test.

**When it fires on legitimate traffic.** Students and tutors asking for worked solutions, teams
running LLM-as-judge evaluations (evaluation runners), annotation vendors. Those accounts are
usually alone or in their organisation; the campaign score needs the link graph as well.

**Needs content:** yes (the last user message).

Scoring is vectorised: tokens are produced in SQL and joined with the weight table, never a Python
loop per record.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import sparse

from distillguard.monitor._corpus import LABELS, generate_corpus

__all__ = [
    "ElicitationModel",
    "HeldOutReport",
    "elicitation_model",
    "tokens_of",
]

#: Words of a prompt fed to the classifiers: the first HEAD and the last TAIL.
HEAD_WORDS = 48
TAIL_WORDS = 16
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_DIGITS = re.compile(r"[0-9]+")


def tokens_of(text: str) -> list[str]:
    """Unigrams and bigrams of ``text`` exactly as :data:`TOKEN_SQL` produces them."""
    words = _NON_ALNUM.sub(" ", _DIGITS.sub("0", text.lower())).split()
    if len(words) > HEAD_WORDS + TAIL_WORDS:
        words = words[:HEAD_WORDS] + words[-TAIL_WORDS:]
    bigrams = [f"{a}_{b}" for a, b in itertools.pairwise(words)]
    return sorted(set(words + bigrams))


#: DuckDB SQL expression: the list of distinct tokens of column ``prompt`` (see :func:`tokens_of`).
TOKEN_SQL = f"""
list_distinct(list_concat(w, list_transform(range(1, len(w)), lambda i: w[i] || '_' || w[i + 1])))
FROM (SELECT *, CASE WHEN len(w0) > {HEAD_WORDS + TAIL_WORDS}
                     THEN list_concat(w0[1:{HEAD_WORDS}], w0[-{TAIL_WORDS}:]) ELSE w0 END AS w
      FROM (SELECT *, list_filter(string_split(regexp_replace(regexp_replace(lower(prompt),
              '[0-9]+', '0', 'g'), '[^a-z0-9]+', ' ', 'g'), ' '), lambda x: x <> '') AS w0
            FROM {{source}}))
"""


@dataclass(frozen=True)
class HeldOutReport:
    """Accuracy of one classifier on held-out generated text (a different seed)."""

    label: str
    n: int
    accuracy: float
    precision: float
    recall: float


@dataclass(frozen=True)
class ElicitationModel:
    """Two binary logistic regressions (``cot``, ``grade``) over shared token weights."""

    vocabulary: tuple[str, ...]
    weights: np.ndarray  # shape (len(vocabulary), 2)
    bias: tuple[float, float]
    held_out: tuple[HeldOutReport, HeldOutReport]

    def weight_table(self) -> pa.Table:
        """``token``, ``w_cot``, ``w_grade``: the table joined with prompt tokens in SQL."""
        return pa.table(
            {
                "token": pa.array(self.vocabulary, pa.string()),
                "w_cot": pa.array(self.weights[:, 0], pa.float64()),
                "w_grade": pa.array(self.weights[:, 1], pa.float64()),
            }
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), 2): columns ``cot`` and ``grade`` (for tests)."""
        x = _design(texts, {t: i for i, t in enumerate(self.vocabulary)})
        z = x @ self.weights + np.asarray(self.bias)
        return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _design(texts: list[str], index: dict[str, int]) -> sparse.csr_matrix:
    rows: list[int] = []
    cols: list[int] = []
    for r, text in enumerate(texts):  # training/test time only, a few thousand texts
        for tok in tokens_of(text):
            j = index.get(tok)
            if j is not None:
                rows.append(r)
                cols.append(j)
    data = np.ones(len(rows), dtype=np.float64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), len(index)))


def _fit(x: sparse.csr_matrix, y: np.ndarray, *, l2: float, steps: int) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by full-batch gradient descent with momentum."""
    n, d = x.shape
    w = np.zeros(d)
    b = 0.0
    vw = np.zeros(d)
    vb = 0.0
    lr = 0.5
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        g = p - y
        gw = (x.T @ g) / n + l2 * w
        gb = float(g.mean())
        vw = 0.9 * vw - lr * gw
        vb = 0.9 * vb - lr * gb
        w += vw
        b += vb
    return w, b


def _evaluate(label: str, p: np.ndarray, y: np.ndarray) -> HeldOutReport:
    pred = p >= 0.5
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    return HeldOutReport(
        label=label,
        n=len(y),
        accuracy=float(np.mean(pred == (y == 1))),
        precision=tp / max(tp + fp, 1),
        recall=tp / max(tp + fn, 1),
    )


@functools.cache
def elicitation_model(
    *, seed: int = 0, n_train: int = 6000, n_test: int = 3000
) -> ElicitationModel:
    """Train (once per process, deterministically) and evaluate the elicitation classifiers.

    The training text comes from :func:`generate_corpus` with ``seed``; the held-out text from
    ``seed + 1``: different sentences, same generator, so the reported accuracy is an upper bound
    of what to expect on real traffic.
    """
    train = generate_corpus(n_train, seed=seed)
    test = generate_corpus(n_test, seed=seed + 1)
    counts: dict[str, int] = {}
    for item in train:
        for tok in tokens_of(item.text):
            counts[tok] = counts.get(tok, 0) + 1
    vocab = tuple(sorted(t for t, c in counts.items() if c >= 3))
    index = {t: i for i, t in enumerate(vocab)}
    x = _design([t.text for t in train], index)
    xt = _design([t.text for t in test], index)
    labels = np.array([t.label for t in train])
    labels_t = np.array([t.label for t in test])
    weights = np.zeros((len(vocab), 2))
    biases: list[float] = []
    reports: list[HeldOutReport] = []
    for col, name in enumerate(("cot", "grade")):
        k = LABELS.index(name)
        w, b = _fit(x, (labels == k).astype(np.float64), l2=1e-4, steps=300)
        weights[:, col] = w
        biases.append(b)
        p = 1.0 / (1.0 + np.exp(-(xt @ w + b)))
        reports.append(_evaluate(name, p, (labels_t == k).astype(np.int64)))
    return ElicitationModel(
        vocabulary=vocab,
        weights=weights,
        bias=(biases[0], biases[1]),
        held_out=(reports[0], reports[1]),
    )
