"""Durable record of issued passports and revocations.

:class:`PassportRegistry` is the small interface verifiers and the CLI use; the default
:class:`SQLitePassportRegistry` keeps a SQLite file (``HOME/passports.sqlite``), safe to share by
several processes on one machine (WAL mode). A registry backed by the DistillGuard store (so that
PostgreSQL serves replicas on several machines) implements the same interface.

The registry keeps no token and no secret: the passport id, account, organisation, agent key
(public), scopes, rate tier and times, which is what ``passport list`` shows and what the key
directory publishes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from distillguard.errors import StorageError
from distillguard.passport.credential import Passport

__all__ = [
    "PassportRecord",
    "PassportRegistry",
    "Revocation",
    "SQLitePassportRegistry",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revoked passport."""

    passport_id: str
    revoked_at: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "passport_id": self.passport_id,
            "revoked_at": self.revoked_at,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class PassportRecord:
    """What the registry knows of an issued passport (no token, no secret)."""

    passport_id: str
    account_id: str
    org_id: str
    agent_kid: str
    agent_jwk: dict[str, str]
    issuer_kid: str
    issued_at: int
    expires_at: int
    claims: dict[str, Any]
    revocation: Revocation | None = None

    def status(self, now: float) -> str:
        """``revoked``, ``expired`` or ``active``."""
        if self.revocation is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready form, with the status at ``now``."""
        t = time.time() if now is None else now
        return {
            "passport_id": self.passport_id,
            "account_id": self.account_id,
            "org_id": self.org_id,
            "agent_kid": self.agent_kid,
            "issuer_kid": self.issuer_kid,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "status": self.status(t),
            "revocation": self.revocation.to_dict() if self.revocation else None,
        }


class PassportRegistry(Protocol):
    """Issued passports and the revocation list; every method is thread-safe."""

    def record_issued(self, passport: Passport) -> None:
        """Remember an issued passport."""
        ...

    def get(self, passport_id: str) -> PassportRecord | None:
        """The record of one passport, or None."""
        ...

    def list_passports(self) -> list[PassportRecord]:
        """Every recorded passport, oldest first."""
        ...

    def revoke(self, passport_id: str, *, reason: str, now: int | None = None) -> Revocation:
        """Revoke a passport (idempotent: a second call keeps the first revocation)."""
        ...

    def is_revoked(self, passport_id: str) -> bool:
        """True when the passport is on the revocation list (checked on every request)."""
        ...

    def revocations(self) -> list[Revocation]:
        """The revocation list."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


_DDL = (
    """CREATE TABLE IF NOT EXISTS passports (
        passport_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, org_id TEXT NOT NULL,
        agent_kid TEXT NOT NULL, agent_jwk TEXT NOT NULL, issuer_kid TEXT NOT NULL,
        issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, claims TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS passport_revocations (
        passport_id TEXT PRIMARY KEY, revoked_at INTEGER NOT NULL, reason TEXT NOT NULL)""",
)


class SQLitePassportRegistry:
    """A :class:`PassportRegistry` in a SQLite file.

    Args:
        path: the database file (created with its folder if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            for stmt in _DDL:
                self._db.execute(stmt)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"cannot open the passport registry {self.path}: {exc}",
                hint="check the folder exists and is writable (setting passport.registry_path)",
            ) from None

    def __repr__(self) -> str:
        return f"SQLitePassportRegistry(path={str(self.path)!r})"

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"passport registry {self.path}: {exc}") from None

    def record_issued(self, passport: Passport) -> None:
        """Remember an issued passport (an id recorded twice keeps the first record)."""
        self._run(
            "INSERT OR IGNORE INTO passports VALUES (?,?,?,?,?,?,?,?,?)",
            (
                passport.passport_id,
                passport.account_id,
                passport.org_id,
                passport.agent_kid,
                json.dumps(dict(passport.agent_jwk), sort_keys=True),
                passport.issuer_kid,
                passport.issued_at,
                passport.expires_at,
                json.dumps(passport.claims(), sort_keys=True),
            ),
        )
        logger.info(
            "recorded passport %s for account %s", passport.passport_id, passport.account_id
        )

    def _record(self, row: tuple[Any, ...]) -> PassportRecord:
        revocation = Revocation(row[0], row[9], row[10]) if row[9] is not None else None
        return PassportRecord(
            passport_id=row[0],
            account_id=row[1],
            org_id=row[2],
            agent_kid=row[3],
            agent_jwk=json.loads(row[4]),
            issuer_kid=row[5],
            issued_at=row[6],
            expires_at=row[7],
            claims=json.loads(row[8]),
            revocation=revocation,
        )

    _SELECT = (
        "SELECT p.passport_id, p.account_id, p.org_id, p.agent_kid, p.agent_jwk, p.issuer_kid, "
        "p.issued_at, p.expires_at, p.claims, r.revoked_at, r.reason FROM passports p "
        "LEFT JOIN passport_revocations r ON r.passport_id = p.passport_id"
    )

    def get(self, passport_id: str) -> PassportRecord | None:
        """The record of one passport, or None."""
        rows = self._run(self._SELECT + " WHERE p.passport_id = ?", (passport_id,))
        return self._record(rows[0]) if rows else None

    def list_passports(self) -> list[PassportRecord]:
        """Every recorded passport, oldest first."""
        rows = self._run(self._SELECT + " ORDER BY p.issued_at, p.passport_id")
        return [self._record(r) for r in rows]

    def revoke(self, passport_id: str, *, reason: str, now: int | None = None) -> Revocation:
        """Put a passport on the revocation list; returns the (first) revocation."""
        when = int(time.time()) if now is None else now
        self._run(
            "INSERT OR IGNORE INTO passport_revocations VALUES (?,?,?)", (passport_id, when, reason)
        )
        rows = self._run(
            "SELECT passport_id, revoked_at, reason FROM passport_revocations WHERE passport_id=?",
            (passport_id,),
        )
        logger.info("revoked passport %s", passport_id)
        return Revocation(rows[0][0], rows[0][1], rows[0][2])

    def is_revoked(self, passport_id: str) -> bool:
        """True when the passport is on the revocation list."""
        return bool(
            self._run("SELECT 1 FROM passport_revocations WHERE passport_id = ?", (passport_id,))
        )

    def revocations(self) -> list[Revocation]:
        """The revocation list, oldest first."""
        rows = self._run(
            "SELECT passport_id, revoked_at, reason FROM passport_revocations "
            "ORDER BY revoked_at, passport_id"
        )
        return [Revocation(r[0], r[1], r[2]) for r in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
