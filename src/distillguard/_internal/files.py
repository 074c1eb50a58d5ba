"""Owner-only files: the one home for creating files that hold secrets or exchange content.

Keys, the store, quarantined records, evidence bundles and exported logs hold secrets or the
text of users' conversations, so they are created with mode ``0600`` (read and write for the
owner only) from the first byte, whatever the process umask. Files are never made wider: an
existing file keeps a stricter mode, and a wider one is narrowed to ``0600`` when DistillGuard
opens it for writing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["PRIVATE_MODE", "atomic_write_private", "ensure_private", "open_private"]

#: Mode of the files DistillGuard creates: read and write for the owner only.
PRIVATE_MODE = 0o600
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _narrow(fd: int) -> None:
    """Clear group and other permission bits of an open file we own."""
    with contextlib.suppress(OSError):  # not the owner (e.g. a shared mount): leave it
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o077:
            os.fchmod(fd, mode & 0o700)


def open_private(path: Path, *, append: bool = False) -> BinaryIO:
    """Open ``path`` for binary writing, created owner-only (``0600``) with its folder.

    Args:
        path: the file.
        append: append to an existing file instead of truncating it.

    Raises:
        OSError: the file cannot be created or opened.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | _CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        _narrow(fd)
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise


def ensure_private(path: Path) -> None:
    """Create ``path`` empty and owner-only if it does not exist; narrow it if it does.

    For files another library writes afterwards (SQLite creates its ``-wal`` and ``-shm``
    files with the database file's mode, so creating the database ``0600`` first covers them).

    Raises:
        OSError: the file cannot be created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never open an existing file here: closing any descriptor of a file releases every POSIX
    # lock this process holds on it, and SQLite connections of this process hold such locks on
    # the database (a second open_store in the gateway made another connection's committed
    # writes invisible to other processes until shutdown). An existing file is narrowed by path.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, PRIVATE_MODE)
    except FileExistsError:
        with contextlib.suppress(OSError):  # not the owner (e.g. a shared mount): leave it
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                path.chmod(mode & 0o700)
        return
    os.close(fd)


def atomic_write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: a ``0600`` temporary file, fsync, rename.

    Raises:
        OSError: the file cannot be written (the temporary file is removed).
    """
    folder = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # mkstemp already uses 0600; make it explicit
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not all systems allow this
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
