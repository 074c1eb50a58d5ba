"""A local durable spool: where exchanges go while the store cannot be reached.

With ``[gateway] failure_mode = "open"`` the recorder writes a group of exchanges that the store
refuses for want of a connection to this spool instead, and the request is answered once the
group is on the local disk (``fsync``-ed), as it would have been once committed. A replay thread
moves the spooled records into the store (and so the ledger) in the order they were spooled,
when the store answers again.

Layout: a folder of segment files ``NNNNNNNNNNNN.spool`` (append-only, a new one every
``segment_bytes``) and ``cursor`` (the segment and offset replayed up to, replaced atomically).
Each record is a frame: 4-byte big-endian length, 4-byte CRC-32 of the payload, the payload (the
caller's bytes; the recorder writes JSON). A frame cut short by a crash while it was written was
never acknowledged (its ``fsync`` did not return) and is cut off when the spool is opened.

Exactly once: replay inserts by exchange id (the store skips ids it holds, and its ledger hook
runs for new rows only), so a crash between a replayed commit and the cursor's update replays
those records again without duplicates.

The spool is bounded: :meth:`ExchangeSpool.append` raises :class:`SpoolFullError` when the
records not yet replayed would exceed ``max_bytes`` (the request is then refused, not answered
unrecorded).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from io import BufferedWriter
from pathlib import Path

from distillguard.errors import StorageError

__all__ = ["ExchangeSpool", "SpoolCursor", "SpoolFullError", "claim_spool"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")  # length, crc32
_SUFFIX = ".spool"
_CURSOR = "cursor"


class SpoolFullError(StorageError):
    """The spool holds ``max_bytes`` of records not yet replayed."""


@dataclass(frozen=True, slots=True, order=True)
class SpoolCursor:
    """A position in the spool: a segment number and a byte offset in it."""

    segment: int
    offset: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ExchangeSpool:
    """An append-only, ``fsync``-ed, bounded queue of records on the local disk.

    One writer (:meth:`append`) and one reader (:meth:`read`, :meth:`advance`) may use it from
    different threads.

    Args:
        path: the folder (created, mode 0700).
        max_bytes: most bytes of records not yet replayed.
        segment_bytes: a new segment file is started past this size.

    Raises:
        StorageError: the folder cannot be created or read.
    """

    def __init__(
        self, path: Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 16 << 20
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._slot_lock: int | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._cursor = self._read_cursor()
            self._segments = self._scan()
        except OSError as exc:
            raise StorageError(f"cannot open the spool {self.path}: {exc}") from None
        self._fh: BufferedWriter | None = None if not self._segments else self._open_tail()
        self._pending = self._pending_bytes()
        self._records = self._count_pending()

    def __repr__(self) -> str:
        return f"ExchangeSpool({str(self.path)!r}, pending_bytes={self._pending})"

    # -- state ----------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of records not yet replayed (frames included)."""
        return self._pending

    @property
    def pending_records(self) -> int:
        """Records not yet replayed."""
        return self._records

    @property
    def empty(self) -> bool:
        """True when every record has been replayed."""
        return self._records == 0

    def _segment_path(self, n: int) -> Path:
        return self.path / f"{n:012d}{_SUFFIX}"

    def _read_cursor(self) -> SpoolCursor:
        try:
            text = (self.path / _CURSOR).read_text(encoding="ascii").split()
        except FileNotFoundError:
            return SpoolCursor(0, 0)
        return SpoolCursor(int(text[0]), int(text[1]))

    def _scan(self) -> list[int]:
        """The segment numbers on disk, the tail's torn frame cut off."""
        numbers = sorted(
            int(p.name[: -len(_SUFFIX)])
            for p in self.path.iterdir()
            if p.name.endswith(_SUFFIX) and p.name[: -len(_SUFFIX)].isdigit()
        )
        for n in numbers:  # a segment replayed whole but not yet deleted
            if n < self._cursor.segment:
                self._segment_path(n).unlink(missing_ok=True)
        numbers = [n for n in numbers if n >= self._cursor.segment]
        if numbers:
            tail = self._segment_path(numbers[-1])
            data = tail.read_bytes()
            good = 0
            for _, end in _frames(data, 0):
                good = end
            if good < len(data):
                logger.warning(
                    "spool %s: %d bytes of a record cut short by a crash dropped (never "
                    "acknowledged)",
                    tail.name,
                    len(data) - good,
                )
                with tail.open("r+b") as fh:
                    fh.truncate(good)
                    fh.flush()
                    os.fsync(fh.fileno())
        return numbers

    def _open_tail(self) -> BufferedWriter:
        return self._segment_path(self._segments[-1]).open("ab")

    def _pending_bytes(self) -> int:
        total = 0
        for n in self._segments:
            size = self._segment_path(n).stat().st_size
            total += size - (self._cursor.offset if n == self._cursor.segment else 0)
        return max(total, 0)

    def _count_pending(self) -> int:
        count = 0
        for n in self._segments:
            data = self._segment_path(n).read_bytes()
            start = self._cursor.offset if n == self._cursor.segment else 0
            count += sum(1 for _ in _frames(data, start))
        return count

    # -- writer ---------------------------------------------------------------------------

    def append(self, payloads: Sequence[bytes]) -> None:
        """Append ``payloads`` and ``fsync`` them (returns once they are on disk).

        Raises:
            SpoolFullError: they would take the spool past ``max_bytes`` (nothing written).
            StorageError: the disk refused the write.
        """
        if not payloads:
            return
        blob = b"".join(_HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads)
        with self._lock:
            if self._pending + len(blob) > self.max_bytes:
                raise SpoolFullError(
                    f"the spool {self.path} is full ({self._pending} of {self.max_bytes} bytes "
                    "not yet replayed)",
                    hint="bring the store back, or raise gateway.spool_max_bytes",
                )
            try:
                fh = self._writable(len(blob))
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                raise StorageError(f"cannot write the spool {self.path}: {exc}") from None
            self._pending += len(blob)
            self._records += len(payloads)

    def _writable(self, size: int) -> BufferedWriter:
        fh = self._fh
        if fh is not None:
            if fh.tell() + size <= self.segment_bytes or fh.tell() == 0:
                return fh
            fh.close()
        n = self._segments[-1] + 1 if self._segments else max(self._cursor.segment, 1)
        new = self._segment_path(n).open("ab")
        _fsync_dir(self.path)
        self._segments.append(n)
        self._fh = new
        return new

    # -- reader ---------------------------------------------------------------------------

    def read(self, max_records: int = 256) -> tuple[list[bytes], SpoolCursor]:
        """Up to ``max_records`` records from the cursor on, in order, and the cursor after
        them (pass it to :meth:`advance` once they are stored)."""
        with self._lock:
            segments = list(self._segments)
            cursor = self._cursor
        out: list[bytes] = []
        position = cursor
        for n in segments:
            if n < cursor.segment:
                continue
            start = cursor.offset if n == cursor.segment else 0
            data = self._segment_path(n).read_bytes()
            for payload, end in _frames(data, start):
                out.append(payload)
                position = SpoolCursor(n, end)
                if len(out) >= max_records:
                    return out, position
        return out, position

    def advance(self, cursor: SpoolCursor, records: int) -> None:
        """Mark everything before ``cursor`` (``records`` records) as replayed: the cursor file
        is replaced atomically and ``fsync``-ed, segments replayed whole are deleted."""
        tmp = self.path / (_CURSOR + ".tmp")
        with tmp.open("w", encoding="ascii") as fh:
            fh.write(f"{cursor.segment} {cursor.offset}\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path / _CURSOR)
        _fsync_dir(self.path)
        with self._lock:
            before = self._cursor
            freed = 0
            for n in self._segments:
                if n < before.segment or n > cursor.segment:
                    continue
                start = before.offset if n == before.segment else 0
                end = cursor.offset if n == cursor.segment else self._segment_path(n).stat().st_size
                freed += end - start
            self._cursor = cursor
            self._pending = max(self._pending - freed, 0)
            self._records = max(self._records - records, 0)
            done = [n for n in self._segments if n < cursor.segment]
            self._segments = [n for n in self._segments if n >= cursor.segment]
        for n in done:
            self._segment_path(n).unlink(missing_ok=True)

    def close(self) -> None:
        """Close the open segment (and release the slot of :func:`claim_spool`)."""
        with self._lock:
            fh = self._fh
            self._fh = None
        if fh is not None:
            fh.close()
        slot_lock, self._slot_lock = self._slot_lock, None
        if slot_lock is not None:
            os.close(slot_lock)


def claim_spool(base: Path, *, max_bytes: int = 1 << 30, slots: int = 64) -> ExchangeSpool:
    """The spool of this process: the first folder ``base/slot-N`` no other process holds.

    Each serving process (worker) needs its own spool; a slot is held with an exclusive
    ``flock`` for the process's life, so a restarted worker takes a free slot again and
    replays what its predecessor left there.

    Raises:
        StorageError: every slot is held, or ``base`` cannot be written.
    """
    import fcntl

    try:
        Path(base).mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StorageError(f"cannot create the spool folder {base}: {exc}") from None
    for n in range(slots):
        folder = Path(base) / f"slot-{n}"
        folder.mkdir(exist_ok=True, mode=0o700)
        fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            spool = ExchangeSpool(folder, max_bytes=max_bytes)
        except BaseException:
            os.close(fd)
            raise
        spool._slot_lock = fd  # released by close()
        return spool
    raise StorageError(f"every spool slot in {base} is held ({slots} processes)")


def _frames(data: bytes, start: int) -> list[tuple[bytes, int]]:
    """The whole, intact frames of ``data`` from ``start``: (payload, end offset)."""
    out: list[tuple[bytes, int]] = []
    at = start
    size = len(data)
    while at + _HEADER.size <= size:
        length, crc = _HEADER.unpack_from(data, at)
        end = at + _HEADER.size + length
        if end > size:
            break
        payload = data[at + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        out.append((payload, end))
        at = end
    return out
