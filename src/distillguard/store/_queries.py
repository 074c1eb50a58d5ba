"""Reads over exchanges and accounts that more than one component needs (the console, the evidence
report): one home for each, on SQLite and PostgreSQL alike.

Queries that take a list of accounts aggregate in SQL over chunks of :data:`CHUNK` ids (one
query per chunk, not one per record), so a campaign of 20,000 accounts costs 23 queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from distillguard._internal.net import network_of
from distillguard.store.base import EXCHANGE_COLUMNS, Store, StoredExchange, exchange_from_row

__all__ = [
    "CHUNK",
    "Activity",
    "InfraUse",
    "account_exchange_count",
    "account_exchanges",
    "activity",
    "infrastructure",
    "one_exchange_per_account",
]

#: Account ids per query (under SQLite's historical limit of 999 bound parameters).
CHUNK = 900
_COLS = ", ".join(EXCHANGE_COLUMNS)


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


@dataclass(frozen=True)
class InfraUse:
    """An account used an infrastructure key.

    ``kind``: ``net`` (the /24 or /48 of its addresses, :func:`network_of`), ``asn``
    (``AS13335``), ``client`` (client fingerprint) or ``payment`` (payment fingerprint);
    ``exchanges``: how many of its exchanges used it (1 for ``payment``, an account property).
    """

    account_id: str
    kind: str
    key: str
    exchanges: int


def infrastructure(store: Store, accounts: Sequence[str]) -> list[InfraUse]:
    """The networks, ASNs, client fingerprints (from their exchanges, aggregated in SQL) and
    payment fingerprints these accounts used, sorted by account, kind and key.

    Misfires: a shared network or ASN is weak evidence on its own (a university NAT, a mobile
    carrier); :func:`network_of` returns a value that is not an address unchanged.
    """
    counts: dict[tuple[str, str, str], int] = {}
    with store.transaction() as cur:
        for chunk in _chunks(accounts):
            marks = ",".join("?" * len(chunk))
            cur.execute(
                store.q(
                    "SELECT account_id, ip, asn, client_fingerprint, COUNT(*) FROM exchanges "
                    f"WHERE account_id IN ({marks}) "
                    "GROUP BY account_id, ip, asn, client_fingerprint"
                ),
                tuple(chunk),
            )
            for account_id, ip, asn, client, n in cur.fetchall():
                for kind, key in (
                    ("net", None if ip is None else network_of(str(ip))),
                    ("asn", None if asn is None else f"AS{int(asn)}"),
                    ("client", None if client is None else str(client)),
                ):
                    if key is not None:
                        k = (str(account_id), kind, key)
                        counts[k] = counts.get(k, 0) + int(n)
            cur.execute(
                store.q(
                    "SELECT account_id, payment_fingerprint FROM accounts "
                    f"WHERE account_id IN ({marks}) AND payment_fingerprint IS NOT NULL"
                ),
                tuple(chunk),
            )
            for account_id, payment in cur.fetchall():
                counts[(str(account_id), "payment", str(payment))] = 1
    return [InfraUse(a, kind, key, n) for (a, kind, key), n in sorted(counts.items())]


@dataclass(frozen=True)
class Activity:
    """Exchanges and active accounts per time bucket (``bucket_us`` microseconds wide); buckets
    without exchanges are absent."""

    bucket_us: int
    starts_us: tuple[int, ...]
    exchanges: tuple[int, ...]
    accounts: tuple[int, ...]


def activity(store: Store, accounts: Sequence[str], *, bucket_us: int) -> Activity:
    """Exchanges and distinct active accounts per bucket of ``bucket_us``, for these accounts."""
    exchanges: dict[int, int] = {}
    active: dict[int, int] = {}
    with store.transaction() as cur:
        for chunk in _chunks(accounts):
            marks = ",".join("?" * len(chunk))
            cur.execute(
                store.q(
                    "SELECT ts / ? AS b, COUNT(*), COUNT(DISTINCT account_id) FROM exchanges "
                    f"WHERE account_id IN ({marks}) GROUP BY b"
                ),
                (bucket_us, *chunk),
            )
            for b, n, a in cur.fetchall():
                exchanges[int(b)] = exchanges.get(int(b), 0) + int(n)
                active[int(b)] = active.get(int(b), 0) + int(a)  # chunks partition accounts
    keys = sorted(exchanges)
    return Activity(
        bucket_us=bucket_us,
        starts_us=tuple(k * bucket_us for k in keys),
        exchanges=tuple(exchanges[k] for k in keys),
        accounts=tuple(active[k] for k in keys),
    )


_ORDER = {
    "latest": "ts DESC, exchange_id DESC",
    "longest": "completion_tokens DESC, exchange_id",
}


def one_exchange_per_account(
    store: Store,
    accounts: Sequence[str],
    *,
    limit: int,
    pick: Literal["latest", "longest"],
) -> list[StoredExchange]:
    """One exchange of each of the first ``limit`` accounts (in the given order) that have one:
    its latest (``pick="latest"``) or its longest completion (``"longest"``; ties by id).

    One indexed query per account, stopping at ``limit`` found.
    """
    out: list[StoredExchange] = []
    sql = store.q(
        f"SELECT {_COLS} FROM exchanges WHERE account_id = ? ORDER BY {_ORDER[pick]} LIMIT 1"
    )
    with store.transaction() as cur:
        for account_id in accounts:
            if len(out) >= limit:
                break
            cur.execute(sql, (account_id,))
            row = cur.fetchone()
            if row is not None:
                out.append(exchange_from_row(row))
    return out


def account_exchanges(
    store: Store, account_id: str, *, before: tuple[int, str] | None, limit: int
) -> list[StoredExchange]:
    """An account's exchanges, newest first: the ``limit`` after the keyset cursor
    ``before = (ts in microseconds, exchange_id)`` of the last one seen (None: from the newest)."""
    with store.transaction() as cur:
        if before is None:
            cur.execute(
                store.q(
                    f"SELECT {_COLS} FROM exchanges WHERE account_id = ? "
                    "ORDER BY ts DESC, exchange_id DESC LIMIT ?"
                ),
                (account_id, limit),
            )
        else:
            cur.execute(
                store.q(
                    f"SELECT {_COLS} FROM exchanges WHERE account_id = ? AND "
                    "(ts < ? OR (ts = ? AND exchange_id < ?)) "
                    "ORDER BY ts DESC, exchange_id DESC LIMIT ?"
                ),
                (account_id, before[0], before[0], before[1], limit),
            )
        return [exchange_from_row(r) for r in cur.fetchall()]


def account_exchange_count(store: Store, account_id: str) -> int:
    """How many exchanges an account has (an index range count)."""
    with store.transaction() as cur:
        cur.execute(store.q("SELECT COUNT(*) FROM exchanges WHERE account_id = ?"), (account_id,))
        return int(cur.fetchone()[0])
