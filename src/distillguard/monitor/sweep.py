"""Signal: capability sweeps (systematic coverage of topics against the natural topic mix).

**What it catches.** A campaign that wants a student model to cover the teacher's capabilities
sends a planned distribution of topics (coding, maths, agentic tool use, data analysis, vision)
rather than the mix real users send. Each prompt is tagged with a coarse topic by keyword rules
(:data:`TOPIC_RULES`, in SQL); an account's *topic divergence* is the Jensen-Shannon divergence
(base 2, 0..1) between its topic distribution and the log's overall mix, and its *coverage* the
number of distinct topics it touched.

**When it fires on legitimate traffic.** Specialised users (a coding assistant's account is all
coding; a vision app is all vision) diverge from the mix too, which is why the divergence alone is
weak evidence; it counts when the account is linked to others that diverge the same way.

**Needs content:** yes (the last user message).
"""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pyarrow as pa

__all__ = ["TOPICS", "TOPIC_RULES", "sweep_features", "topic_divergence", "topic_mix", "topic_of"]

#: (topic, regular expression over the lower-cased prompt), first match wins; else "general".
TOPIC_RULES: tuple[tuple[str, str], ...] = (
    ("vision", r"\[image|image|photo|screenshot|diagram|picture|scan\b"),
    ("agentic", r"\btool|browser|operate|click|navigate|agent|api call|terminal|bash\b|shell"),
    ("coding", r"\bcode|function|python|javascript|sql\b|bug|compile|refactor|implement|class "),
    ("math", r"\bprove|equation|integral|probability|theorem|solve|derivative|\d+\s*[x*+/-]\s*\d"),
    ("data_analysis", r"dataset|csv|regression|statistic|outlier|table of|data\b|analy[sz]"),
)


def _case() -> str:
    parts = " ".join(
        f"WHEN regexp_matches(lower(prompt), '{rx}') THEN '{name}'" for name, rx in TOPIC_RULES
    )
    return f"CASE {parts} ELSE 'general' END"


def sweep_features(con: duckdb.DuckDBPyConnection, source: str = "sample") -> pa.Table:
    """``account_id``, ``topic_divergence`` (JSD to the log's mix) and ``topics_covered``."""
    sql = f"""
    WITH t AS (SELECT account_id, {_case()} AS topic FROM {source}),
    acc AS (SELECT account_id, topic, count(*) AS c FROM t GROUP BY ALL),
    tot AS (SELECT account_id, sum(c) AS n FROM acc GROUP BY account_id),
    gmix AS (SELECT topic, count(*) / (SELECT count(*) FROM t) AS q FROM t GROUP BY topic),
    grid AS (SELECT tot.account_id, gmix.topic, gmix.q, coalesce(acc.c, 0) / tot.n AS p
             FROM tot CROSS JOIN gmix
             LEFT JOIN acc ON acc.account_id = tot.account_id AND acc.topic = gmix.topic)
    SELECT account_id,
           greatest(0.0, sum(CASE WHEN p > 0 THEN 0.5 * p * log2(p / ((p + q) / 2)) ELSE 0 END
                             ORDER BY topic)
             + sum(0.5 * q * log2(q / ((p + q) / 2)) ORDER BY topic)) AS topic_divergence,
           count(*) FILTER (WHERE p > 0) AS topics_covered
    FROM grid GROUP BY account_id ORDER BY account_id
    """
    return con.sql(sql).to_arrow_table()


#: Every topic label, ``general`` last (the column order of per-account topic counts).
TOPICS: tuple[str, ...] = (*(name for name, _ in TOPIC_RULES), "general")

_COMPILED = tuple((TOPICS.index(name), re.compile(rx)) for name, rx in TOPIC_RULES)


def topic_of(prompt: str) -> int:
    """The topic index (into :data:`TOPICS`) of one prompt, as the SQL rules tag it."""
    low = prompt.lower()
    for idx, rx in _COMPILED:
        if rx.search(low):
            return idx
    return len(TOPICS) - 1


def topic_mix(counts: np.ndarray) -> np.ndarray:
    """The overall topic mix (column shares) of per-account topic ``counts``."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c.sum(axis=0) / total if total > 0 else np.zeros(c.shape[1])


def topic_divergence(counts: np.ndarray, *, mix: np.ndarray | None = None) -> np.ndarray:
    """Jensen-Shannon divergence (base 2) of each row of ``counts`` (accounts x topics) to the
    overall ``mix`` (by default the mix of ``counts`` itself, :func:`topic_mix`): the NumPy form
    of :func:`sweep_features` for engines that count topics themselves. Rows without prompts
    get 0."""
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum(axis=1, keepdims=True)
    q = topic_mix(c) if mix is None else np.asarray(mix, dtype=np.float64)
    if q.sum() == 0:
        return np.zeros(len(c))
    p = c / np.maximum(n, 1)
    m = (p + q[None, :]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        tp = np.where(p > 0, 0.5 * p * np.log2(p / m), 0.0)
        tq = np.where(q[None, :] > 0, 0.5 * q[None, :] * np.log2(q[None, :] / m), 0.0)
    d = np.maximum(0.0, tp.sum(axis=1) + tq.sum(axis=1))
    return np.where(n[:, 0] > 0, d, 0.0)
