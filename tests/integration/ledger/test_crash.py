"""SIGKILL the writing process in the middle of batched appends; nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from distillguard.ledger import Ledger, audit_ledger
from distillguard.records import Exchange, Message
from distillguard.store import open_store
from distillguard.store.base import new_salts

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from distillguard.ledger import Ledger
    from distillguard.records import Account, Exchange, Message
    from distillguard.store import open_store
    from distillguard.store.base import new_salts

    store = open_store(sys.argv[1])
    Ledger.attach(store)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    i = 0
    while True:
        batch = []
        for _ in range(97):
            batch.append(Exchange(
                exchange_id=f"ex-{i:08d}", ts=t0 + timedelta(seconds=i), account_id="a",
                ip="192.0.2.1", model="m", messages=(Message("user", "q" * (i % 50)),),
                prompt_tokens=1, completion_tokens=2, status=200, response="r" * (i % 70),
            ))
            i += 1
        with store.transaction() as cur:
            store.add_accounts(cur, [Account(account_id="a", created_at=t0)], run_id="w")
            store.add_exchanges(cur, list(zip(batch, new_salts(len(batch)))), run_id="w")
        print("ACK", batch[-1].exchange_id, flush=True)
    """
)


def test_sigkill_mid_append_keeps_records_and_tree_in_step(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    open_store(url).close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True, env=env
    )
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(line.split()[1])
            if len(acked) >= 25:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 25

    store = open_store(url)
    try:
        ledger = Ledger.attach(store)
        stored = store.count("exchanges")
        assert ledger.size == stored >= 25 * 97
        # Every acknowledged record is there, and is a leaf.
        last = acked[-1]
        assert store.get_exchange(last) is not None
        leaf = ledger.leaf_for(last)
        assert leaf is not None and leaf.leaf_index == int(last.removeprefix("ex-"))
        report = audit_ledger(ledger, public_keys=[])
        assert report.ok, report.findings
        assert report.leaves_checked == stored
        # Appending resumes from the recovered frontier.
        ledger_size = ledger.size
        extra = Exchange(
            exchange_id="after-restart",
            ts=datetime(2026, 1, 2, tzinfo=UTC),
            account_id="a",
            ip="192.0.2.1",
            model="m",
            messages=(Message("user", "q"),),
            prompt_tokens=1,
            completion_tokens=2,
            status=200,
        )
        with store.transaction() as cur:
            store.add_exchanges(cur, [(extra, new_salts(1)[0])], run_id="t")
        assert ledger.size == ledger_size + 1
        assert audit_ledger(Ledger.open(store), public_keys=[]).ok
    finally:
        store.close()
