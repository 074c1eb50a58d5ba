"""The exchange recorder: sync and batch durability, grouping, failures, both store backends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest

from distillguard.errors import StorageError
from distillguard.gateway.recorder import ExchangeRecorder
from distillguard.ledger import Ledger
from distillguard.records import Exchange
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange


def _exchanges(n: int, prefix: str = "ex") -> list[Exchange]:
    return [make_exchange(f"{prefix}-{i}", account_id=f"acct-{i % 3}") for i in range(n)]


@pytest.mark.parametrize(
    ("durability", "inline"), [("sync", False), ("batch", False), ("batch", True)]
)
def test_every_acknowledged_exchange_is_stored_with_its_leaf(
    store_url: str, durability: Literal["sync", "batch"], inline: bool
) -> None:
    rec = ExchangeRecorder(
        store_url=store_url,
        durability=durability,
        max_batch=64,
        max_delay_s=0.002,
        inline=inline,
    )
    exchanges = _exchanges(60)

    async def go() -> list[int]:
        done = await asyncio.gather(
            *(rec.record(e, account=make_account(e.account_id)) for e in exchanges)
        )
        return [d.seq for d in done]

    seqs = asyncio.run(go())
    rec.close()
    assert sorted(seqs) == list(range(1, 61))
    if durability == "sync":
        assert rec.stats.transactions == 60 and rec.stats.largest_batch == 1
    else:
        assert rec.stats.transactions < 60 and rec.stats.largest_batch > 1
    store = open_store(store_url)
    try:
        assert store.count("exchanges") == 60
        assert store.count("accounts") == 3
        ledger = Ledger.open(store)
        assert ledger.size == 60
        for e in exchanges[::7]:
            assert ledger.leaf_for(e.exchange_id) is not None
    finally:
        store.close()


@pytest.mark.parametrize("inline", [False, True])
def test_blocking_record_and_rows_in_the_same_transaction(tmp_path: Path, inline: bool) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"

    def prepare(store):  # type: ignore[no-untyped-def]
        store.ensure_tables("t", 1, ["CREATE TABLE IF NOT EXISTS side (id {text})"])

    rec = ExchangeRecorder(
        store_url=url, durability="batch" if inline else "sync", prepare=prepare, inline=inline
    )

    def row(store, cur):  # type: ignore[no-untyped-def]
        cur.execute(store.q("INSERT INTO side (id) VALUES (?)"), ("x",))

    def bad_row(store, cur):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    assert rec.record_blocking(make_exchange("a"), rows=[row]).seq == 1
    with pytest.raises(StorageError):
        rec.record_blocking(make_exchange("b"), rows=[bad_row])
    rec.close()
    store = open_store(url)
    try:
        assert store.count("exchanges") == 1  # "b" rolled back with its failing row
        with store.transaction() as cur:
            cur.execute("SELECT count(*) FROM side")
            assert cur.fetchone()[0] == 1
        assert Ledger.open(store).size == 1
    finally:
        store.close()


@pytest.mark.parametrize("inline", [False, True])
def test_closed_recorder_refuses(tmp_path: Path, inline: bool) -> None:
    rec = ExchangeRecorder(store_url=f"sqlite:///{tmp_path / 's.sqlite'}", inline=inline)
    rec.close()
    assert not rec.alive
    with pytest.raises(StorageError):
        rec.record_blocking(make_exchange("a"))


def test_unreachable_store_fails_at_start() -> None:
    with pytest.raises(StorageError):
        ExchangeRecorder(store_url="postgresql://nobody@127.0.0.1:1/none")
