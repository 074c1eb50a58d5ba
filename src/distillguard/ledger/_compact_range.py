"""Incremental appends: the compact range (frontier) of a Merkle tree.

A tree of ``n`` leaves is, on its right edge, a sequence of perfect subtrees whose sizes are
the powers of two in the binary expansion of ``n`` (largest first). The compact range keeps the
hashes of those subtrees only, so appending a leaf costs one leaf record plus, on average, one
node hash, and the root is a fold of at most ``log2(n)`` hashes. Nothing is ever rebuilt.

Every perfect subtree completed by an append is reported as a node ``(node_id, hash)`` so that a
store can keep it for proofs. Node ids follow the in-order ("flat tree") numbering: the subtree
at ``level`` (height, leaves are level 0) and position ``index`` has id
``index * 2**(level+1) + 2**level - 1``. Leaf ``i`` is node ``2*i``; ids of a tree of ``n``
leaves stay below ``2*n``, and appends produce ids that only grow, which keeps a B-tree append
cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from distillguard.ledger._hashing import EMPTY_ROOT, HASH_SIZE

__all__ = ["CompactRange", "fold_right", "node_id", "node_level", "range_nodes"]

_sha256 = hashlib.sha256


def node_id(level: int, index: int) -> int:
    """The in-order id of the perfect subtree at ``level`` (height) and position ``index``."""
    return (index << (level + 1)) + (1 << level) - 1


def node_level(nid: int) -> int:
    """The level (height) of the node with in-order id ``nid``: its number of trailing 1 bits."""
    return (~nid & (nid + 1)).bit_length() - 1


def range_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that cover leaves ``[start, end)``, left to right.

    ``start`` must be a multiple of the largest power of two not above ``end - start`` (true of
    every subtree that RFC 9162 proofs and roots refer to).
    """
    if not 0 <= start <= end:
        raise ValueError(f"bad leaf range [{start}, {end})")
    out: list[tuple[int, int]] = []
    pos = start
    size = end - start
    for level in range(size.bit_length() - 1, -1, -1):
        if (size >> level) & 1:
            if pos & ((1 << level) - 1):
                raise ValueError(f"leaf range [{start}, {end}) is not aligned")
            out.append((level, pos >> level))
            pos += 1 << level
    return out


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """The root of a range given the hashes of its perfect subtrees, left to right."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + left + acc).digest()
    return acc


class CompactRange:
    """The right edge of a Merkle tree: enough state to append leaves and compute the root.

    Args:
        size: number of leaves in the tree.
        hashes: hashes of the perfect subtrees covering ``[0, size)``, largest first
            (see :func:`range_nodes`).

    Example::

        cr = CompactRange()
        new_nodes = cr.append([leaf_hash(b"a"), leaf_hash(b"b")])
        cr.root()
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError("tree size must be non-negative")
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("frontier hashes must be 32 bytes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The frontier hashes, largest subtree first."""
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        """An independent copy (appending to it leaves this one unchanged)."""
        return CompactRange(self._size, self._hashes)

    def root(self) -> bytes:
        """The RFC 9162 Merkle tree hash of the tree of :attr:`size` leaves."""
        return fold_right(self._hashes)

    def append(
        self, leaf_hashes: Iterable[bytes], *, include_leaves: bool = True, min_level: int = 1
    ) -> list[tuple[int, bytes]]:
        """Append leaves (their leaf hashes); returns every newly completed node ``(id, hash)``.

        With ``include_leaves`` the leaves themselves are among the returned nodes (ids
        ``2*i``), each followed by the interior nodes it completes; without, only interior nodes
        (odd ids) are returned, and only those at ``min_level`` or above. Ids are in increasing
        order.
        """
        out: list[tuple[int, bytes]] = []
        add = out.append
        stack = self._hashes
        pop = stack.pop
        push = stack.append
        size = self._size
        sha = _sha256
        for h in leaf_hashes:
            if include_leaves:
                add((size << 1, h))
            q = size
            level = 0
            while q & 1:
                h = sha(b"\x01" + pop() + h).digest()
                q >>= 1
                level += 1
                if level >= min_level:
                    add(((q << (level + 1)) + (1 << level) - 1, h))
            push(h)
            size += 1
        self._size = size
        return out
