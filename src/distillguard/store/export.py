"""Export of a store as a log folder in format v1 (Parquet by default) for analytics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from distillguard.records import LogFormat, LogWriter
from distillguard.store.base import Store

__all__ = ["export_log"]

logger = logging.getLogger(__name__)


def export_log(
    store: Store,
    out_dir: Path,
    *,
    fmt: LogFormat = "parquet",
    batch_size: int = 20_000,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Write every stored account and exchange to ``out_dir`` in format v1.

    The result is itself a valid log: ``distillguard validate`` and DuckDB/Spark read it.
    Erased content stays erased (it is simply absent). Returns (accounts, exchanges) written.
    """
    with LogWriter(out_dir, fmt=fmt) as writer:
        for accounts in store.iter_accounts(batch_size=batch_size):
            writer.accounts.write(accounts)
        for batch in store.iter_exchanges(batch_size=batch_size):
            writer.exchanges.write(s.exchange for s in batch)
            if on_progress is not None:
                on_progress(len(batch))
        counts = (writer.accounts.count, writer.exchanges.count)
    logger.info("exported %d accounts and %d exchanges to %s", *counts, out_dir)
    return counts
