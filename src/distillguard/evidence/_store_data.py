"""What the report reads from the store: activity over time, shared infrastructure, exchanges.

Every query is aggregated in SQL over chunks of account ids (one query per 900 accounts, not one
per record), and works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from distillguard._internal.net import network_of
from distillguard.store import Store, StoredExchange

__all__ = [
    "Activity",
    "InfraLink",
    "activity",
    "infrastructure_links",
    "representative_exchanges",
]

_CHUNK = 900


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


@dataclass(frozen=True)
class Activity:
    """Exchanges and active accounts per time bucket (``bucket_us`` microseconds wide)."""

    bucket_us: int
    starts_us: tuple[int, ...]
    exchanges: tuple[int, ...]
    accounts: tuple[int, ...]


def activity(store: Store, accounts: Sequence[str], *, bucket_us: int) -> Activity:
    """Exchanges and distinct active accounts per bucket, for these accounts."""
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


@dataclass(frozen=True)
class InfraLink:
    """An account uses an infrastructure key (``kind``: payment, net24, asn, client)."""

    account_id: str
    kind: str
    key: str
    exchanges: int


def infrastructure_links(store: Store, accounts: Sequence[str]) -> list[InfraLink]:
    """The infrastructure each account used: /24 (/48) networks, ASNs, client fingerprints
    (from its exchanges, aggregated in SQL) and its payment fingerprint."""
    counts: dict[tuple[str, str, str], int] = {}
    with store.transaction() as cur:
        for chunk in _chunks(accounts):
            marks = ",".join("?" * len(chunk))
            cur.execute(
                store.q(
                    "SELECT account_id, ip, asn, client_fingerprint, COUNT(*) FROM exchanges "
                    f"WHERE account_id IN ({marks}) GROUP BY account_id, ip, asn, "
                    "client_fingerprint"
                ),
                tuple(chunk),
            )
            for account_id, ip, asn, client, n in cur.fetchall():
                for kind, key in (
                    ("net", network_of(str(ip))),
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
    return [InfraLink(a, kind, key, n) for (a, kind, key), n in sorted(counts.items())]


def representative_exchanges(
    store: Store, accounts: Sequence[str], *, limit: int
) -> list[StoredExchange]:
    """One exchange per account (its longest completion), for the first ``limit`` accounts that
    have one."""
    out: list[StoredExchange] = []
    with store.transaction() as cur:
        ids: list[str] = []
        for account_id in accounts:
            if len(ids) >= limit:
                break
            cur.execute(
                store.q(
                    "SELECT exchange_id FROM exchanges WHERE account_id = ? "
                    "ORDER BY completion_tokens DESC, exchange_id LIMIT 1"
                ),
                (account_id,),
            )
            row = cur.fetchone()
            if row is not None:
                ids.append(str(row[0]))
    for exchange_id in ids:
        stored = store.get_exchange(exchange_id)
        if stored is not None:
            out.append(stored)
    return out
