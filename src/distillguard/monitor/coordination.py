"""Signal: synchronised activity across accounts.

**What it catches.** Accounts driven by one scheduler send in waves: the same minutes of each hour,
the same hours of each day, starting and stopping together. Per community of the link graph, the
exchanges' minute-of-hour (5-minute slots) histogram is tested against uniform with a chi-square
test; ``sync_p`` is its p-value and ``minute_entropy`` its normalised entropy (1 = uniform).
Per account, :mod:`distillguard.monitor.behaviour` gives the same entropy for one account.

**When it fires on legitimate traffic.** Cron jobs of one organisation (an enterprise batch at
01:00 every night, an evaluation runner's scheduled benchmark), and tiny communities (few
exchanges, so the histogram is noisy: the test accounts for that through its degrees of freedom).

**Needs content:** no (timestamps only).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from scipy import stats

__all__ = ["community_synchrony", "synchrony_from_histograms"]


def community_synchrony(con: duckdb.DuckDBPyConnection, membership: pa.Table) -> pa.Table:
    """``community``, ``sync_p``, ``minute_entropy`` for each community of ``membership``
    (columns ``account_id``, ``community``)."""
    con.register("_membership", membership)
    try:
        rows = con.sql(
            """
            SELECT m.community, minute(e.ts AT TIME ZONE 'UTC') // 5 AS slot, count(*) AS c
            FROM ex e JOIN _membership m USING (account_id) GROUP BY ALL
            """
        ).to_arrow_table()
    finally:
        con.unregister("_membership")
    comm = np.asarray(rows["community"].to_numpy(), dtype=np.int64)
    slot = np.asarray(rows["slot"].to_numpy(), dtype=np.int64)
    cnt = np.asarray(rows["c"].to_numpy(), dtype=np.float64)
    ids = np.unique(comm)
    if len(ids) == 0:
        return pa.table(
            {
                "community": pa.array([], pa.int64()),
                "sync_p": pa.array([], pa.float64()),
                "minute_entropy": pa.array([], pa.float64()),
            }
        )
    pos = np.searchsorted(ids, comm)
    hist = np.zeros((len(ids), 12))
    np.add.at(hist, (pos, slot), cnt)
    total = hist.sum(axis=1, keepdims=True)
    expected = total / 12.0
    chi2 = ((hist - expected) ** 2 / np.maximum(expected, 1e-12)).sum(axis=1)
    p = stats.chi2.sf(chi2, df=11)
    frac = hist / np.maximum(total, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(frac > 0, frac * np.log(frac), 0.0), axis=1) / np.log(12)
    return pa.table({"community": ids, "sync_p": p, "minute_entropy": ent})


def synchrony_from_histograms(
    minute_hist: np.ndarray, community: np.ndarray, n_communities: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(sync_p, minute_entropy)`` per community from per-account 5-minute-slot histograms.

    ``minute_hist`` has shape (accounts, 12); ``community`` is a dense community index per account
    (0..``n_communities`` - 1). Same test as :func:`community_synchrony`, which reads the
    exchanges instead; a community without exchanges gets ``p = 1``.
    """
    hist = np.zeros((n_communities, 12))
    np.add.at(hist, np.asarray(community, dtype=np.int64), np.asarray(minute_hist, dtype=float))
    total = hist.sum(axis=1, keepdims=True)
    expected = total / 12.0
    chi2 = ((hist - expected) ** 2 / np.maximum(expected, 1e-12)).sum(axis=1)
    p = np.where(total[:, 0] > 0, stats.chi2.sf(chi2, df=11), 1.0)
    frac = hist / np.maximum(total, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(frac > 0, frac * np.log(frac), 0.0), axis=1) / np.log(12)
    return np.asarray(p, dtype=np.float64), np.asarray(ent, dtype=np.float64)
