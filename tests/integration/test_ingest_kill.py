"""SIGKILL an ingest in the middle of its run: what was committed stays, the rest can be rerun.

An atomic run into an empty SQLite table sets the secondary indexes aside inside its transaction
(issue 23); a kill must leave the store as it was before the run, indexes included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from distillguard.app.ingest import ingest_log
from distillguard.ledger import Ledger, audit_ledger
from distillguard.store import open_store
from distillguard.testing import make_account, make_exchange, write_jsonl

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from distillguard.store import open_store
    from distillguard.app.ingest import ingest_log

    store = open_store(sys.argv[1])
    ingest_log(store, Path(sys.argv[2]), batch_size=50, atomic=sys.argv[3] == "atomic",
               on_progress=lambda n: print("BATCH", flush=True))
    print("DONE", flush=True)
    """
)


def _indexes(url: str) -> set[str]:
    with open_store(url) as store, store.transaction() as cur:
        cur.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'exchanges'"
        )
        return {r[0] for r in cur.fetchall()} & {"exchanges_account_ts", "exchanges_ts"}


@pytest.mark.parametrize("mode", ["atomic", "batches"])
def test_sigkill_mid_ingest_then_rerun(tmp_path: Path, mode: str) -> None:
    log = tmp_path / "log"
    write_jsonl(log / "accounts.jsonl", [make_account(f"acct-{i}").to_dict() for i in range(5)])
    write_jsonl(
        log / "exchanges.jsonl",
        [
            make_exchange(f"ex-{i:05d}", account_id=f"acct-{i % 5}", offset_s=i).to_dict()
            for i in range(4000)
        ],
    )
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(log), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    for batches, line in enumerate(proc.stdout, start=1):
        assert line.strip() != "DONE", "the run ended before it could be killed"
        if batches == 5:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with open_store(url) as store:
        stored = store.count("exchanges")
    if mode == "atomic":
        assert stored == 0  # the run was one transaction: nothing of it
    else:
        assert stored >= 5 * 50  # every acknowledged batch was committed
    assert _indexes(url) == {"exchanges_account_ts", "exchanges_ts"}

    with open_store(url) as store:
        result = ingest_log(store, log, batch_size=500)
        assert result.reconciles
        assert result.exchanges.inserted + result.exchanges.already_stored == 4000
        assert result.exchanges.already_stored == stored
        assert store.count("exchanges") == 4000
        report = audit_ledger(Ledger.open(store), public_keys=[])
        assert report.ok and report.leaves_checked == 4000, report.findings[:3]
    assert _indexes(url) == {"exchanges_account_ts", "exchanges_ts"}
