"""What the console shows, as typed value objects, and the queries behind them.

* :class:`ScanIndex`: a batch scan's results (``campaigns.json``, ``account_scores.parquet``)
  held as Arrow tables split per campaign and sorted by score, so that a page of a 24,000-account
  campaign is a vectorised filter and a slice (:meth:`ScanIndex.page`).
* :class:`ConsoleQueries`: indexed SQL over the store (SQLite and PostgreSQL alike): traffic per
  minute, actions, a campaign's timeline and infrastructure, an account's exchanges (keyset
  pagination on ``exchanges (account_id, ts)``), the console's audit trail.

Campaign membership is written to the console's own table ``console_members`` (indexed by
campaign) when a scan is loaded, so that a campaign's timeline is one join instead of 27 queries
with 900-id ``IN`` lists.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from distillguard.results import CAMPAIGNS_FILE, Campaign, read_scan
from distillguard.store import (
    InfraUse,
    Store,
    StoredExchange,
    account_exchange_count,
    account_exchanges,
    infrastructure,
    one_exchange_per_account,
)

__all__ = [
    "AccountRow",
    "AccountsPage",
    "AuditEntry",
    "ConsoleQueries",
    "ScanIndex",
    "Timeline",
    "TrafficSummary",
]

CONSOLE_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS console_members (
        scan_key {text} NOT NULL, campaign_id {text} NOT NULL, account_id {text} NOT NULL,
        score {double} NOT NULL, PRIMARY KEY (scan_key, campaign_id, account_id)
    )""",
    """CREATE TABLE IF NOT EXISTS console_audit (
        audit_id {text} PRIMARY KEY, ts {bigint} NOT NULL, analyst {text} NOT NULL,
        action {text} NOT NULL, target {text} NOT NULL, reason {text} NOT NULL,
        outcome {text} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS console_audit_ts ON console_audit (ts)",
    "CREATE INDEX IF NOT EXISTS console_audit_target ON console_audit (target, ts)",
    # the overview counts recent actions by time; the gateway indexes them by account only
    "CREATE INDEX IF NOT EXISTS console_gateway_actions_ts ON gateway_actions (ts)",
    # server-side sessions: a cookie is valid only while its row exists (logout deletes it,
    # a new admin token deletes every row made under the old one); ids are stored hashed
    """CREATE TABLE IF NOT EXISTS console_sessions (
        session_hash {text} PRIMARY KEY, analyst {text} NOT NULL, expires_at {bigint} NOT NULL,
        token_fp {text} NOT NULL
    )""",
)

_SORTS = ("score", "account_id")


@dataclass(frozen=True)
class AccountRow:
    """One account of a campaign page (from the scan)."""

    account_id: str
    score: float
    flagged: bool
    campaign_id: str | None
    reasons: tuple[str, ...]
    exchanges: int | None


@dataclass(frozen=True)
class AccountsPage:
    """A page of a filtered account list and where it sits."""

    rows: tuple[AccountRow, ...]
    total: int
    page: int
    pages: int
    page_size: int


@dataclass(frozen=True)
class Timeline:
    """Exchanges and active accounts per bucket (``bucket_s`` seconds wide)."""

    bucket_s: int
    starts: tuple[datetime, ...]
    exchanges: tuple[int, ...]
    accounts: tuple[int, ...]


@dataclass(frozen=True)
class TrafficSummary:
    """Requests per minute over a window, and recent actions by kind."""

    window_end: datetime | None
    per_minute: tuple[int, ...]
    statuses: tuple[tuple[int, int], ...]
    actions: tuple[tuple[str, str, int], ...]

    @property
    def last_minute(self) -> int:
        """Requests in the window's last minute."""
        return self.per_minute[-1] if self.per_minute else 0


@dataclass(frozen=True)
class AuditEntry:
    """One console action: who, when, what, on what, why, and how it ended."""

    audit_id: str
    ts: datetime
    analyst: str
    action: str
    target: str
    reason: str
    outcome: str


@dataclass
class ScanIndex:
    """A batch scan's results, ready for paginated, filtered pages."""

    folder: Path
    key: str
    campaigns: tuple[Campaign, ...]
    summary: dict[str, Any]
    by_campaign: dict[str, pa.Table]
    top: pa.Table
    position: dict[str, tuple[str | None, int]] = field(repr=False)

    @classmethod
    def load(cls, folder: Path) -> ScanIndex:
        """Read a scan output folder (format v1 "Results of a scan").

        Raises:
            InputError: a file is missing or malformed.
        """
        results = read_scan(folder)
        table = results.accounts
        if "exchanges" not in table.column_names:
            table = table.append_column("exchanges", pa.nulls(table.num_rows, pa.int64()))
        table = table.select(
            ["account_id", "score", "flagged", "campaign_id", "reasons", "exchanges"]
        )
        table = table.sort_by([("score", "descending"), ("account_id", "ascending")])
        by_campaign: dict[str, pa.Table] = {}
        campaign_col = table["campaign_id"]
        for c in results.campaigns:
            mask = pc.fill_null(pc.equal(campaign_col, c.campaign_id), False)
            by_campaign[c.campaign_id] = table.filter(mask)
        position: dict[str, tuple[str | None, int]] = {}
        for cid, sub in by_campaign.items():
            for i, a in enumerate(sub["account_id"].to_pylist()):
                position[a] = (cid, i)
        stamp = (folder / CAMPAIGNS_FILE).stat().st_mtime_ns
        key = hashlib.sha256(f"{folder.resolve()}|{stamp}".encode()).hexdigest()[:16]
        campaigns = tuple(sorted(results.campaigns, key=lambda c: -c.score))
        return cls(
            folder=folder,
            key=key,
            campaigns=campaigns,
            summary=dict(results.summary),
            by_campaign=by_campaign,
            top=table.slice(0, 200),
            position=position,
        )

    def campaign(self, campaign_id: str) -> Campaign | None:
        """A campaign by id."""
        return next((c for c in self.campaigns if c.campaign_id == campaign_id), None)

    def page(
        self,
        campaign_id: str,
        *,
        page: int,
        page_size: int,
        query: str = "",
        min_score: float | None = None,
        flagged_only: bool = False,
        only_ids: frozenset[str] | None = None,
        sort: str = "score",
    ) -> AccountsPage:
        """One page of a campaign's accounts, filtered by id substring, minimum score, flag and
        an optional set of ids (e.g. those under an action)."""
        table = self.by_campaign.get(campaign_id)
        if table is None:
            return AccountsPage((), 0, 1, 1, page_size)
        mask = None

        def both(a: Any, b: Any) -> Any:
            return b if a is None else pc.and_(a, b)

        if query:
            mask = both(mask, pc.match_substring(table["account_id"], query, ignore_case=True))
        if min_score is not None:
            mask = both(mask, pc.greater_equal(table["score"], min_score))
        if flagged_only:
            mask = both(mask, table["flagged"])
        if only_ids is not None:
            mask = both(
                mask, pc.is_in(table["account_id"], pa.array(sorted(only_ids), pa.string()))
            )
        if mask is not None:
            table = table.filter(pc.fill_null(mask, False))
        if sort == "account_id":
            table = table.sort_by([("account_id", "ascending")])
        total = table.num_rows
        pages = max(1, -(-total // page_size))
        page = min(max(1, page), pages)
        chunk = table.slice((page - 1) * page_size, page_size)
        return AccountsPage(_rows(chunk), total, page, pages, page_size)

    def account(self, account_id: str) -> AccountRow | None:
        """The scan's row of an account (campaign members only)."""
        where = self.position.get(account_id)
        if where is None or where[0] is None:
            return None
        return _rows(self.by_campaign[where[0]].slice(where[1], 1))[0]

    def top_accounts(self, n: int) -> tuple[AccountRow, ...]:
        """The ``n`` highest-scored accounts of the scan."""
        return _rows(self.top.slice(0, n))

    def members(self) -> list[tuple[str, str, float]]:
        """``(campaign_id, account_id, score)`` for every campaign member."""
        out: list[tuple[str, str, float]] = []
        for cid, sub in self.by_campaign.items():
            ids = sub["account_id"].to_pylist()
            scores = sub["score"].to_pylist()
            out.extend((cid, a, float(s)) for a, s in zip(ids, scores, strict=True))
        return out

    def top_of(self, campaign_id: str, n: int) -> list[str]:
        """The ``n`` highest-scored accounts of a campaign."""
        sub = self.by_campaign.get(campaign_id)
        return [] if sub is None else sub["account_id"].slice(0, n).to_pylist()


def _rows(table: pa.Table) -> tuple[AccountRow, ...]:
    cols = table.to_pydict()
    return tuple(
        AccountRow(
            account_id=str(a),
            score=float(s),
            flagged=bool(f),
            campaign_id=c,
            reasons=tuple(r or ()),
            exchanges=None if n is None else int(n),
        )
        for a, s, f, c, r, n in zip(
            cols["account_id"],
            cols["score"],
            cols["flagged"],
            cols["campaign_id"],
            cols["reasons"],
            cols["exchanges"],
            strict=True,
        )
    )


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


class ConsoleQueries:
    """The console's SQL over a store; every method takes the store's own cursor."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"ConsoleQueries({self.store!r})"

    def ensure_tables(self) -> None:
        """Create the console's tables and indexes (idempotent)."""
        self.store.ensure_tables("console", 1, CONSOLE_DDL)

    def load_members(self, index: ScanIndex) -> int:
        """Write a scan's campaign membership (replacing that of earlier scans)."""
        rows = [(index.key, c, a, s) for c, a, s in index.members()]
        s = self.store
        with s.transaction() as cur:
            cur.execute(s.q("DELETE FROM console_members WHERE scan_key <> ?"), (index.key,))
            cur.execute(
                s.q("SELECT COUNT(*) FROM console_members WHERE scan_key = ?"), (index.key,)
            )
            if int(cur.fetchone()[0]) == len(rows):
                return len(rows)
            cur.execute(s.q("DELETE FROM console_members WHERE scan_key = ?"), (index.key,))
            cur.executemany(
                s.q(
                    "INSERT INTO console_members (scan_key, campaign_id, account_id, score) "
                    "VALUES (?, ?, ?, ?)"
                ),
                rows,
            )
        return len(rows)

    def traffic(self, *, minutes: int = 60, now: datetime | None = None) -> TrafficSummary:
        """Requests per minute over the ``minutes`` before the latest exchange (or ``now``),
        statuses in that window and the actions of the last 24 hours."""
        s = self.store
        with s.transaction() as cur:
            if now is None:
                cur.execute("SELECT MAX(ts) FROM exchanges")
                row = cur.fetchone()
                end_us = None if row is None or row[0] is None else int(row[0])
            else:
                end_us = int(now.timestamp() * 1e6)
            if end_us is None:
                return TrafficSummary(None, (0,) * minutes, (), ())
            start_us = end_us - minutes * 60_000_000
            cur.execute(
                s.q(
                    "SELECT (ts - ? - 1) / 60000000 AS m, COUNT(*) FROM exchanges "
                    "WHERE ts > ? AND ts <= ? GROUP BY m"
                ),
                (start_us, start_us, end_us),
            )
            counts = [0] * minutes
            for m, n in cur.fetchall():
                counts[min(minutes - 1, int(m))] += int(n)
            cur.execute(
                s.q(
                    "SELECT status, COUNT(*) FROM exchanges WHERE ts > ? AND ts <= ? "
                    "GROUP BY status ORDER BY status"
                ),
                (start_us, end_us),
            )
            statuses = tuple((int(a), int(b)) for a, b in cur.fetchall())
            since = int(time.time() * 1e6) - 86_400_000_000
            cur.execute(
                s.q(
                    "SELECT action, source, COUNT(*) FROM gateway_actions WHERE ts > ? "
                    "GROUP BY action, source ORDER BY COUNT(*) DESC"
                ),
                (since,),
            )
            actions = tuple((str(a), str(b), int(n)) for a, b, n in cur.fetchall())
        return TrafficSummary(_dt(end_us), tuple(counts), statuses, actions)

    def timeline(self, scan_key: str, campaign_id: str, *, buckets: int = 48) -> Timeline:
        """A campaign's exchanges and active accounts over its lifetime (about ``buckets``
        buckets, whole hours)."""
        s = self.store
        with s.transaction() as cur:
            cur.execute(
                s.q(
                    "SELECT MIN(e.ts), MAX(e.ts) FROM console_members m JOIN exchanges e "
                    "ON e.account_id = m.account_id WHERE m.scan_key = ? AND m.campaign_id = ?"
                ),
                (scan_key, campaign_id),
            )
            lo, hi = cur.fetchone()
            if lo is None:
                return Timeline(3600, (), (), ())
            span_h = max(1, -(-(int(hi) - int(lo)) // 3_600_000_000))
            bucket_us = 3_600_000_000 * max(1, -(-span_h // buckets))
            cur.execute(
                s.q(
                    "SELECT e.ts / ? AS b, COUNT(*), COUNT(DISTINCT e.account_id) "
                    "FROM console_members m JOIN exchanges e ON e.account_id = m.account_id "
                    "WHERE m.scan_key = ? AND m.campaign_id = ? GROUP BY b ORDER BY b"
                ),
                (bucket_us, scan_key, campaign_id),
            )
            rows = cur.fetchall()
        return Timeline(
            bucket_s=bucket_us // 1_000_000,
            starts=tuple(_dt(int(b) * bucket_us) for b, _, _ in rows),
            exchanges=tuple(int(n) for _, n, _ in rows),
            accounts=tuple(int(a) for _, _, a in rows),
        )

    def infrastructure(self, accounts: Sequence[str]) -> list[InfraUse]:
        """The networks, ASNs, client and payment fingerprints these accounts used
        (:func:`distillguard.store.infrastructure`)."""
        return infrastructure(self.store, accounts)

    def sample_exchanges(self, accounts: Sequence[str], *, limit: int) -> list[StoredExchange]:
        """The latest exchange of each of the first ``limit`` accounts that have one."""
        return one_exchange_per_account(self.store, accounts, limit=limit, pick="latest")

    def exchanges(
        self, account_id: str, *, before: tuple[int, str] | None, limit: int
    ) -> list[StoredExchange]:
        """An account's exchanges, newest first, after the keyset cursor ``(ts, exchange_id)``."""
        return account_exchanges(self.store, account_id, before=before, limit=limit)

    def exchange_count(self, account_id: str) -> int:
        """How many exchanges an account has (index range count)."""
        return account_exchange_count(self.store, account_id)

    def start_session(
        self, *, session_hash: str, analyst: str, expires_at: int, token_fp: str, now: int
    ) -> None:
        """Record a new console session (and drop expired ones)."""
        s = self.store
        with s.transaction() as cur:
            cur.execute(s.q("DELETE FROM console_sessions WHERE expires_at <= ?"), (now,))
            cur.execute(
                s.q(
                    "INSERT INTO console_sessions (session_hash, analyst, expires_at, token_fp) "
                    "VALUES (?, ?, ?, ?)"
                ),
                (session_hash, analyst, expires_at, token_fp),
            )

    def session_alive(self, *, session_hash: str, token_fp: str, now: int) -> bool:
        """True while the session was started under this admin token and not ended or expired."""
        s = self.store
        with s.transaction() as cur:
            cur.execute(
                s.q(
                    "SELECT 1 FROM console_sessions WHERE session_hash = ? AND token_fp = ? "
                    "AND expires_at > ?"
                ),
                (session_hash, token_fp, now),
            )
            return cur.fetchone() is not None

    def end_session(self, session_hash: str) -> None:
        """End one session (logout)."""
        s = self.store
        with s.transaction() as cur:
            cur.execute(s.q("DELETE FROM console_sessions WHERE session_hash = ?"), (session_hash,))

    def end_sessions_of_other_tokens(self, token_fp: str) -> int:
        """End every session started under another admin token; returns how many."""
        s = self.store
        with s.transaction() as cur:
            cur.execute(
                s.q("SELECT COUNT(*) FROM console_sessions WHERE token_fp <> ?"), (token_fp,)
            )
            count = int(cur.fetchone()[0])
            if count:
                cur.execute(s.q("DELETE FROM console_sessions WHERE token_fp <> ?"), (token_fp,))
            return count

    def record_audit(
        self, *, analyst: str, action: str, target: str, reason: str, outcome: str
    ) -> AuditEntry:
        """Append one entry to the console's audit trail."""
        entry = AuditEntry(
            audit_id=f"aud_{uuid.uuid4().hex}",
            ts=datetime.now(UTC),
            analyst=analyst,
            action=action,
            target=target,
            reason=reason,
            outcome=outcome,
        )
        s = self.store
        with s.transaction() as cur:
            cur.execute(
                s.q(
                    "INSERT INTO console_audit (audit_id, ts, analyst, action, target, reason, "
                    "outcome) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                (
                    entry.audit_id,
                    int(entry.ts.timestamp() * 1e6),
                    analyst,
                    action,
                    target,
                    reason,
                    outcome,
                ),
            )
        return entry

    def audit_trail(self, *, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The latest console actions (optionally on one target), newest first."""
        s = self.store
        cols = "audit_id, ts, analyst, action, target, reason, outcome"
        with s.transaction() as cur:
            if target is None:
                cur.execute(
                    s.q(f"SELECT {cols} FROM console_audit ORDER BY ts DESC LIMIT ?"), (limit,)
                )
            else:
                cur.execute(
                    s.q(
                        f"SELECT {cols} FROM console_audit WHERE target = ? "
                        "ORDER BY ts DESC LIMIT ?"
                    ),
                    (target, limit),
                )
            rows = cur.fetchall()
        return [
            AuditEntry(
                str(r[0]), _dt(int(r[1])), str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6])
            )
            for r in rows
        ]

    def actions_of(self, account_id: str, *, limit: int = 50) -> list[tuple[Any, ...]]:
        """The gateway's action rows of an account, newest first."""
        s = self.store
        with s.transaction() as cur:
            cur.execute(
                s.q(
                    "SELECT action_id, ts, account_id, exchange_id, action, reason, source, risk, "
                    "cluster_id FROM gateway_actions WHERE account_id = ? ORDER BY ts DESC LIMIT ?"
                ),
                (account_id, limit),
            )
            return list(cur.fetchall())
