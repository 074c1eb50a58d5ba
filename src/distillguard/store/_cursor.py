"""The DB-API cursor protocol the store and its migrations write SQL through."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Cursor"]


class Cursor(Protocol):
    """The part of a DB-API 2 cursor that DistillGuard uses (sqlite3 and psycopg both fit)."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any:
        """Run one statement."""

    def executemany(self, sql: Any, params: Any, /) -> Any:
        """Run one statement for each parameter row."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """All remaining rows."""
