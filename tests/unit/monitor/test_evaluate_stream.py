"""The streamed evaluation: time-ordered external sort, replay and baselines in bounded memory."""

from __future__ import annotations

import random
from pathlib import Path
from types import GeneratorType

import duckdb
import numpy as np
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.monitor.evaluate import (
    _baseline_account,
    baseline_flags,
    exchanges_before_flagged,
    time_ordered,
)
from distillguard.monitor.online import OnlineConfig
from distillguard.records import Exchange, Message
from distillguard.testing import make_exchange


def _ex(i: int, offset_s: float) -> Exchange:
    return make_exchange(
        f"ex-{i}", account_id=f"a{i % 5}", offset_s=offset_s, messages=(Message("user", "hi"),)
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=0, max_size=120),
    st.integers(1, 30),
    st.integers(1, 17),
)
def test_time_ordered_is_a_stable_sort_by_time_whatever_the_chunk(
    offsets: list[int], chunk: int, batch: int
) -> None:
    import tempfile

    exs = [_ex(i, float(o)) for i, o in enumerate(offsets)]  # ties on purpose (0..50 s)
    batches = [exs[lo : lo + batch] for lo in range(0, len(exs), batch)]
    with tempfile.TemporaryDirectory() as tmp:
        out = list(time_ordered(iter(batches), work=Path(tmp), chunk=chunk))
        assert not list(Path(tmp).iterdir())  # spilled runs are removed at the end
    expected = sorted(exs, key=lambda e: e.ts)  # Python's sort is stable: ties keep input order
    assert [e.exchange_id for e in out] == [e.exchange_id for e in expected]


def test_time_ordered_removes_its_runs_when_closed_early(tmp_path: Path) -> None:
    exs = [_ex(i, float(100 - i)) for i in range(50)]
    gen = time_ordered(iter([exs]), work=tmp_path, chunk=7)
    assert isinstance(gen, GeneratorType)
    first = next(gen)
    assert first.exchange_id == "ex-49"
    assert list(tmp_path.iterdir())  # runs spilled while the merge is open
    gen.close()
    assert not list(tmp_path.iterdir())


def test_replay_does_not_depend_on_the_sort_chunk(tiny_log: Path) -> None:
    labels = pq.read_table(tiny_log / "labels.parquet")
    truth = dict(
        zip(labels["account_id"].to_pylist(), labels["campaign_id"].to_pylist(), strict=True)
    )
    cfg = OnlineConfig(rescore_min=1000, rescore_factor=0.0)
    in_memory = exchanges_before_flagged(tiny_log, truth, config=cfg)
    spilled = exchanges_before_flagged(tiny_log, truth, config=cfg, sort_chunk=997)
    assert {k: v.to_dict() for k, v in in_memory.items()} == {
        k: v.to_dict() for k, v in spilled.items()
    }
    t = spilled["hydra-tiny"]
    assert t.total_exchanges > 0 and t.exchanges_before_flagged is not None


def test_streamed_baselines_match_a_direct_computation(tiny_log: Path) -> None:
    ids = sorted(pq.read_table(tiny_log / "labels.parquet")["account_id"].to_pylist())
    flags = baseline_flags(tiny_log, ids, per_account=16)
    # reference: every account's first 16 prompts read at once, each account scored alone
    rel = duckdb.sql(
        f"""SELECT account_id, list(messages[-1].content ORDER BY ts, exchange_id) AS p FROM (
              SELECT * FROM read_parquet('{tiny_log}/exchanges/*.parquet') QUALIFY row_number()
              OVER (PARTITION BY account_id ORDER BY ts, exchange_id) <= 16) GROUP BY ALL"""
    )
    assert rel is not None
    by = dict(rel.fetchall())
    prada = np.zeros(len(ids), dtype=bool)
    counts = np.zeros(len(ids))
    for i, a in enumerate(ids):
        p = by.get(a) or []
        if len(p) >= 3:
            prada[i], counts[i] = _baseline_account(p, prada_delta=0.9, seat_similarity=0.9)
    assert np.array_equal(flags["PRADA"], prada)
    med = float(np.median(counts))
    bulk = counts[counts <= med + 3 * max(float(np.median(np.abs(counts - med))) * 1.4826, 1.0)]
    assert np.array_equal(flags["SEAT"], counts > float(np.quantile(bulk, 0.995)))
    assert flags["PRADA"].any()  # the tiny campaign's clockwork sweep is visible to PRADA
    random.Random(0).shuffle(ids)  # the account order of the caller is respected
    again = baseline_flags(tiny_log, ids, per_account=16)
    pos = {a: i for i, a in enumerate(sorted(ids))}
    assert all(again["PRADA"][j] == prada[pos[a]] for j, a in enumerate(ids))
