"""Files holding secrets or exchange content are created owner-only (issue 24, lesser item).

The store (SQLite and its -wal/-shm), quarantine files (tested with the reader), exported logs,
evidence bundles and HTML reports were written 0644 under the usual umask.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard._internal.files import atomic_write_private, ensure_private, open_private
from distillguard.app.ingest import ingest_log
from distillguard.store import open_store
from distillguard.store.export import export_log
from distillguard.testing import make_account, make_exchange, write_log


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common umask 022, under which plain writes give 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_helpers_create_owner_only_and_narrow_wider_files(tmp_path: Path) -> None:
    with open_private(tmp_path / "a" / "new.bin") as fh:
        fh.write(b"x")
    assert _mode(tmp_path / "a" / "new.bin") == 0o600
    wide = tmp_path / "wide.jsonl"
    wide.write_bytes(b"old\n")
    wide.chmod(0o644)
    with open_private(wide, append=True) as fh:
        fh.write(b"new\n")
    assert _mode(wide) == 0o600 and wide.read_bytes() == b"old\nnew\n"
    ensure_private(tmp_path / "db.sqlite")
    assert _mode(tmp_path / "db.sqlite") == 0o600
    atomic_write_private(tmp_path / "k.json", b"{}")
    assert _mode(tmp_path / "k.json") == 0o600 and (tmp_path / "k.json").read_bytes() == b"{}"
    strict = tmp_path / "strict"
    strict.write_bytes(b"")
    strict.chmod(0o400)
    if os.access(strict, os.W_OK):  # root may open it for writing: still not widened
        ensure_private(strict)
    assert _mode(strict) == 0o400  # never made wider


def test_sqlite_store_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log", [make_account("acct-1")], [make_exchange("ex-1")])
    db = tmp_path / "home" / "store.sqlite"
    with open_store(f"sqlite:///{db}") as store:
        ingest_log(store, log)
        files = [db, db.with_name("store.sqlite-wal"), db.with_name("store.sqlite-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl.gz", "jsonl"])
def test_exported_logs_are_owner_only(tmp_path: Path, fmt: str) -> None:
    log = write_log(tmp_path / "log", [make_account("acct-1")], [make_exchange("ex-1")])
    with open_store("sqlite://") as store:
        ingest_log(store, log)
        export_log(store, tmp_path / "out", fmt=fmt)  # type: ignore[arg-type]
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written and {p.name: _mode(p) for p in written} == {p.name: 0o600 for p in written}


def test_evidence_bundle_and_report_are_owner_only(tmp_path: Path) -> None:
    from distillguard.cli.main import main
    from distillguard.evidence.testing import build_world

    world = build_world(tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}")
    (tmp_path / "dg.toml").write_text(f'[keyring]\npath = "{world.keyring_path}"\n')
    out, bundle = tmp_path / "report.html", tmp_path / "evidence.zip"
    args = ["-q", "-c", str(tmp_path / "dg.toml"), "report", "--scan", str(world.scan_dir)]
    args += ["--store", world.store_url, "--out", str(out), "--bundle", str(bundle)]
    assert main(args) == 0
    assert _mode(out) == 0o600 and _mode(bundle) == 0o600


def test_ensure_private_keeps_this_process_sqlite_locks(tmp_path: Path) -> None:
    """Closing any descriptor of a file drops every POSIX lock the process holds on it: an
    ensure_private on an open database must not open it, or another connection of the same
    process loses its locks (the gateway's recorder lost them when a second store was opened)."""
    import sqlite3
    import subprocess
    import sys

    from distillguard._internal.files import ensure_private

    db = tmp_path / "locked.sqlite"
    ensure_private(db)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE t (x)")
    con.execute("BEGIN IMMEDIATE")  # a RESERVED lock (fcntl) held by this process
    try:
        ensure_private(db)
        probe = (
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
            "try:\n    c.execute('BEGIN IMMEDIATE')\nexcept sqlite3.OperationalError:\n"
            "    sys.exit(3)\n"
        )
        rc = subprocess.run([sys.executable, "-c", probe, str(db)], check=False).returncode
        assert rc == 3, "another process got the write lock this process still holds"
    finally:
        con.execute("ROLLBACK")
        con.close()
