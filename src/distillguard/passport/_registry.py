"""Durable record of issued passports and revocations.

:class:`PassportRegistry` is the small interface verifiers and the CLI use; the default
:class:`SQLitePassportRegistry` keeps a SQLite file (``HOME/passports.sqlite``), safe to share by
several processes on one machine (WAL mode). A registry backed by the DistillGuard store (so that
PostgreSQL serves replicas on several machines) implements the same interface.

The registry keeps no token and no secret: the passport id, account, organisation, agent key
(public), scopes, rate tier and times, which is what ``passport list`` shows and what the key
directory publishes.

Two implementations, one interface:

* :class:`SQLitePassportRegistry`: its own SQLite file, the embedded default
  (``[passport] registry = "file"``).
* :class:`StorePassportRegistry`: tables ``passports`` and ``passport_revocations`` in the
  DistillGuard store (:mod:`distillguard.store`: a SQLite file or PostgreSQL), so that gateway
  replicas on several machines share one revocation list (``[passport] registry = "store"``).

Verifiers do not query the registry on every request: :class:`RevocationCache` holds the set of
revoked passport ids in memory and reloads it every ``refresh_s`` seconds (default 1 s). A
revocation made through the same cache object takes effect at once in that process; one made
elsewhere (the CLI, another replica) takes effect within ``refresh_s``. If the registry cannot be
read, the last list is used for at most ``max_stale_s`` seconds, after which every lookup fails
(the verifier then refuses requests with ``revocation_list_unavailable``) rather than let a
revoked passport through.

Every passport a verifier accepts must also be *registered*: issued through the registry, with
the very claims recorded at issue. :class:`RegistrationCache` answers that from memory: a
registered passport is looked up once (its record never changes), an unknown id is remembered as
unknown for ``negative_ttl_s`` (so a passport issued elsewhere is accepted within that time), and
a registry that cannot be read fails closed. A passport minted with a leaked issuer key under an
invented id, or a registered id with other claims (another agent key, longer expiry), is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from distillguard._internal.files import ensure_private
from distillguard.errors import StorageError
from distillguard.passport._credential import Passport

if TYPE_CHECKING:
    from distillguard.config import Settings
    from distillguard.store import Store

__all__ = [
    "PassportRecord",
    "PassportRegistry",
    "RegistrationCache",
    "Revocation",
    "RevocationCache",
    "SQLitePassportRegistry",
    "StorePassportRegistry",
    "open_registry",
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

    def revoked_ids(self) -> frozenset[str]:
        """The ids on the revocation list (what :class:`RevocationCache` loads)."""
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


def _record(row: Sequence[Any]) -> PassportRecord:
    revocation = Revocation(row[0], int(row[9]), row[10]) if row[9] is not None else None
    return PassportRecord(
        passport_id=row[0],
        account_id=row[1],
        org_id=row[2],
        agent_kid=row[3],
        agent_jwk=json.loads(row[4]),
        issuer_kid=row[5],
        issued_at=int(row[6]),
        expires_at=int(row[7]),
        claims=json.loads(row[8]),
        revocation=revocation,
    )


_SELECT = (
    "SELECT p.passport_id, p.account_id, p.org_id, p.agent_kid, p.agent_jwk, p.issuer_kid, "
    "p.issued_at, p.expires_at, p.claims, r.revoked_at, r.reason FROM passports p "
    "LEFT JOIN passport_revocations r ON r.passport_id = p.passport_id"
)


def _issued_row(passport: Passport) -> tuple[Any, ...]:
    return (
        passport.passport_id,
        passport.account_id,
        passport.org_id,
        passport.agent_kid,
        json.dumps(dict(passport.agent_jwk), sort_keys=True),
        passport.issuer_kid,
        passport.issued_at,
        passport.expires_at,
        json.dumps(passport.claims(), sort_keys=True),
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
            # 0600 before SQLite opens it (its -wal/-shm take the database file's mode): the
            # registry is the trust anchor for which passports the gateway accepts.
            ensure_private(self.path)
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
            "INSERT OR IGNORE INTO passports VALUES (?,?,?,?,?,?,?,?,?)", _issued_row(passport)
        )
        logger.info(
            "recorded passport %s for account %s", passport.passport_id, passport.account_id
        )

    def get(self, passport_id: str) -> PassportRecord | None:
        """The record of one passport, or None."""
        rows = self._run(_SELECT + " WHERE p.passport_id = ?", (passport_id,))
        return _record(rows[0]) if rows else None

    def list_passports(self) -> list[PassportRecord]:
        """Every recorded passport, oldest first."""
        rows = self._run(_SELECT + " ORDER BY p.issued_at, p.passport_id")
        return [_record(r) for r in rows]

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

    def revoked_ids(self) -> frozenset[str]:
        """The ids on the revocation list."""
        return frozenset(r[0] for r in self._run("SELECT passport_id FROM passport_revocations"))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


_STORE_DDL = (
    """CREATE TABLE IF NOT EXISTS passports (
        passport_id {text} PRIMARY KEY, account_id {text} NOT NULL, org_id {text} NOT NULL,
        agent_kid {text} NOT NULL, agent_jwk {text} NOT NULL, issuer_kid {text} NOT NULL,
        issued_at {bigint} NOT NULL, expires_at {bigint} NOT NULL, claims {text} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS passport_revocations (
        passport_id {text} PRIMARY KEY, revoked_at {bigint} NOT NULL, reason {text} NOT NULL)""",
)
_STORE_SCHEMA_VERSION = 1


class StorePassportRegistry:
    """A :class:`PassportRegistry` in the DistillGuard store (SQLite file or PostgreSQL).

    Every replica that opens the same PostgreSQL store sees the same passports and revocations.
    The store connection is used under a lock (a store serves one thread at a time).

    Args:
        store: an open store (``distillguard.store.open_store(url)``); the registry creates its
            tables (component ``passport``) if needed.
        owns_store: close the store in :meth:`close`.
    """

    def __init__(self, store: Store, *, owns_store: bool = False) -> None:
        self.store = store
        self._owns_store = owns_store
        self._lock = threading.Lock()
        with self._lock:
            store.ensure_tables("passport", _STORE_SCHEMA_VERSION, _STORE_DDL)

    @classmethod
    def open(cls, url: str) -> StorePassportRegistry:
        """Open the store at ``url`` (``sqlite:///...`` or ``postgresql://...``)."""
        from distillguard.store import open_store

        return cls(open_store(url), owns_store=True)

    def __repr__(self) -> str:
        return f"StorePassportRegistry(store={self.store!r})"

    def _run(self, sql: str, args: tuple[Any, ...] = (), *, fetch: bool = True) -> list[Any]:
        from distillguard.errors import DistillGuardError

        try:
            with self._lock, self.store.transaction() as cur:
                cur.execute(self.store.q(sql), args)
                return list(cur.fetchall()) if fetch else []
        except DistillGuardError:
            raise
        except Exception as exc:  # the driver's own errors (sqlite3, psycopg)
            raise StorageError(
                f"passport registry in {self.store!r}: {type(exc).__name__}: {exc}"
            ) from None

    def record_issued(self, passport: Passport) -> None:
        """Remember an issued passport (an id recorded twice keeps the first record)."""
        self._run(
            "INSERT INTO passports VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (passport_id) DO NOTHING",
            _issued_row(passport),
            fetch=False,
        )
        logger.info(
            "recorded passport %s for account %s", passport.passport_id, passport.account_id
        )

    def get(self, passport_id: str) -> PassportRecord | None:
        """The record of one passport, or None."""
        rows = self._run(_SELECT + " WHERE p.passport_id = ?", (passport_id,))
        return _record(rows[0]) if rows else None

    def list_passports(self) -> list[PassportRecord]:
        """Every recorded passport, oldest first."""
        return [_record(r) for r in self._run(_SELECT + " ORDER BY p.issued_at, p.passport_id")]

    def revoke(self, passport_id: str, *, reason: str, now: int | None = None) -> Revocation:
        """Put a passport on the revocation list; returns the (first) revocation."""
        when = int(time.time()) if now is None else now
        self._run(
            "INSERT INTO passport_revocations VALUES (?,?,?) ON CONFLICT (passport_id) DO NOTHING",
            (passport_id, when, reason),
            fetch=False,
        )
        rows = self._run(
            "SELECT passport_id, revoked_at, reason FROM passport_revocations WHERE passport_id=?",
            (passport_id,),
        )
        logger.info("revoked passport %s", passport_id)
        return Revocation(rows[0][0], int(rows[0][1]), rows[0][2])

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
        return [Revocation(r[0], int(r[1]), r[2]) for r in rows]

    def revoked_ids(self) -> frozenset[str]:
        """The ids on the revocation list."""
        return frozenset(r[0] for r in self._run("SELECT passport_id FROM passport_revocations"))

    def close(self) -> None:
        """Close the store if this registry opened it."""
        if self._owns_store:
            with self._lock:
                self.store.close()


class RevocationCache:
    """The revocation list held in memory for verifiers, refreshed from a registry.

    :meth:`is_revoked` is a set lookup; the set is reloaded from ``registry`` when it is older
    than ``refresh_s``. :meth:`revoke` writes through to the registry and takes effect at once
    in this process. Thread-safe.

    Args:
        registry: where revocations live.
        refresh_s: longest time a revocation made elsewhere takes to take effect here.
        max_stale_s: how long the last loaded list is used while the registry cannot be read;
            after that (give or take ``refresh_s``), lookups raise
            :class:`~distillguard.errors.StorageError`.
        clock: monotonic time source in seconds (tests).
    """

    def __init__(
        self,
        registry: PassportRegistry,
        *,
        refresh_s: float = 1.0,
        max_stale_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if refresh_s < 0 or max_stale_s < refresh_s:
            raise ValueError("need 0 <= refresh_s <= max_stale_s")
        self.registry = registry
        self.refresh_s = refresh_s
        self.max_stale_s = max_stale_s
        self._clock = clock
        self._lock = threading.Lock()
        self._revoked: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")  # last successful load
        self._next_refresh = float("-inf")
        self._stale = False
        self._background: threading.Thread | None = None
        self._stop = threading.Event()
        self.refresh()

    def start_background_refresh(self) -> None:
        """Reload the list every ``refresh_s`` in a daemon thread from now on, never in
        :meth:`is_revoked`: a lookup then never waits for the registry (an event loop is not
        blocked by a registry that does not answer). Stop it with :meth:`stop_background_refresh`.
        """
        if self._background is not None:
            return

        def run() -> None:
            while not self._stop.wait(max(self.refresh_s, 0.05)):
                try:
                    self._refresh(force=True)
                except StorageError as exc:
                    logger.warning("revocation list: %s", exc.message)

        self._background = threading.Thread(target=run, name="dg-revocations", daemon=True)
        self._background.start()

    def stop_background_refresh(self) -> None:
        """Stop the thread of :meth:`start_background_refresh` (idempotent)."""
        self._stop.set()
        thread, self._background = self._background, None
        if thread is not None:
            thread.join(5)

    def __repr__(self) -> str:
        return f"RevocationCache(registry={self.registry!r}, refresh_s={self.refresh_s})"

    def __len__(self) -> int:
        return len(self._revoked)

    def refresh(self) -> None:
        """Reload the list now.

        Raises:
            StorageError: the registry cannot be read and the last list is older than
                ``max_stale_s`` (or there is none).
        """
        self._refresh(force=True)

    def _refresh(self, *, force: bool) -> None:
        with self._lock:
            now = self._clock()
            if not force and now < self._next_refresh:
                return  # another thread reloaded it while this one waited for the lock
            try:
                revoked = self.registry.revoked_ids()
            except StorageError as exc:
                self._next_refresh = now + self.refresh_s
                if now - self._loaded_at > self.max_stale_s:
                    self._stale = True
                    raise StorageError(
                        f"the revocation list cannot be read and is stale: {exc.message}"
                    ) from None
                logger.warning("revocation list: keeping the last one (%s)", exc.message)
                return
            self._revoked = revoked
            self._stale = False
            self._loaded_at = now
            self._next_refresh = now + self.refresh_s

    def is_revoked(self, passport_id: str) -> bool:
        """True when the passport is on the list (reloaded first if older than ``refresh_s``).

        Raises:
            StorageError: see :meth:`refresh`.
        """
        if self._background is None and self._clock() >= self._next_refresh:
            self._refresh(force=False)
        elif self._stale:  # failed closed; the next reload is tried at _next_refresh
            raise StorageError("the revocation list is stale and cannot be reloaded")
        return passport_id in self._revoked

    def revoke(self, passport_id: str, *, reason: str, now: int | None = None) -> Revocation:
        """Revoke through the registry; refused by this process from the next lookup on."""
        revocation = self.registry.revoke(passport_id, reason=reason, now=now)
        with self._lock:
            self._revoked = self._revoked | {passport_id}
        return revocation


def _claims_digest(claims: Any) -> bytes:
    canonical = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).digest()


class RegistrationCache:
    """Whether a verified passport was issued through the registry, answered from memory.

    A passport is *registered* when the registry holds a record with its id, the same issuer
    key id and the same claims. Registered ids are cached for good (a record does not change;
    revocation is checked separately), up to ``max_entries``; an id the registry does not know
    is cached as unknown for ``negative_ttl_s``, so one unknown passport costs at most one
    registry query per ``negative_ttl_s``. Thread-safe. Works with every
    :class:`PassportRegistry` (SQLite file, or the store's tables in PostgreSQL shared by
    replicas).

    Args:
        registry: where issued passports are recorded.
        negative_ttl_s: how long an unknown id stays unknown before the registry is asked again
            (the longest delay before a passport issued by another process is accepted here).
        max_entries: bound of each cache (cleared when full).
        clock: monotonic time source in seconds (tests).
    """

    def __init__(
        self,
        registry: PassportRegistry,
        *,
        negative_ttl_s: float = 1.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if negative_ttl_s < 0 or max_entries < 1:
            raise ValueError("need negative_ttl_s >= 0 and max_entries >= 1")
        self.registry = registry
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str, bytes]] = {}  # id -> (issuer kid, claims digest)
        self._unknown: dict[str, float] = {}  # id -> monotonic time until which it is unknown

    def __repr__(self) -> str:
        return f"RegistrationCache(registry={self.registry!r})"

    def is_registered(self, passport: Passport) -> bool:
        """True when ``passport`` (already verified) matches its record in the registry.

        Raises:
            StorageError: the registry cannot be read (callers refuse the request).
        """
        pid = passport.passport_id
        known = self._known.get(pid)
        if known is None:
            until = self._unknown.get(pid)
            if until is not None and self._clock() < until:
                return False
            record = self.registry.get(pid)  # StorageError propagates: fail closed
            with self._lock:
                if record is None:
                    if len(self._unknown) >= self.max_entries:
                        self._unknown.clear()
                    self._unknown[pid] = self._clock() + self.negative_ttl_s
                    return False
                known = (record.issuer_kid, _claims_digest(record.claims))
                if len(self._known) >= self.max_entries:
                    self._known.clear()
                self._known[pid] = known
                self._unknown.pop(pid, None)
        issuer_kid, digest = known
        return issuer_kid == passport.issuer_kid and digest == _claims_digest(passport.claims())

    def record_issued(self, passport: Passport) -> None:
        """Record through the registry; accepted by this process at once."""
        self.registry.record_issued(passport)
        with self._lock:
            self._unknown.pop(passport.passport_id, None)


def open_registry(settings: Settings) -> PassportRegistry:
    """The registry that ``settings.passport.registry`` names.

    ``file``: the SQLite file ``settings.passport_registry_path``; ``store``: the tables in the
    store at ``settings.store_url`` (PostgreSQL for several replicas).
    """
    if settings.passport.registry == "store":
        return StorePassportRegistry.open(settings.store_url)
    return SQLitePassportRegistry(settings.passport_registry_path)
