"""Inclusion and consistency proofs (RFC 9162 section 2.1), generated from stored nodes.

Proofs are lists of subtree hashes. Every subtree a proof or a root refers to is either a
perfect subtree (kept by the store, see :mod:`distillguard.ledger._compact_range`) or a right-edge
subtree whose hash is folded from at most ``log2(n)`` perfect ones. Generation first plans the
ranges a proof needs, then fetches all their nodes in one call to a :class:`NodeSource`, then
hashes: one database round trip per proof.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from distillguard.errors import ProofError
from distillguard.ledger._compact_range import fold_right, node_id, range_nodes
from distillguard.ledger._hashing import EMPTY_ROOT

__all__ = [
    "MemoryNodes",
    "NodeSource",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "root_hash",
]


class NodeSource(Protocol):
    """Where proof generation reads perfect-subtree hashes from (a store, a dict)."""

    def get_nodes(self, ids: Iterable[int]) -> Mapping[int, bytes]:
        """The hashes of the nodes with these in-order ids (missing ids may be left out)."""
        ...


class MemoryNodes:
    """A :class:`NodeSource` held in a dict (tests, audits, offline tools).

    Example::

        nodes = MemoryNodes()
        cr = CompactRange()
        nodes.add(cr.append(leaf_hashes))
        inclusion_proof(nodes, index=3, size=cr.size)
    """

    __slots__ = ("_nodes",)

    def __init__(self) -> None:
        self._nodes: dict[int, bytes] = {}

    def add(self, nodes: Iterable[tuple[int, bytes]]) -> None:
        """Keep these ``(node_id, hash)`` pairs."""
        self._nodes.update(nodes)

    def get_nodes(self, ids: Iterable[int]) -> Mapping[int, bytes]:
        """The hashes of the requested nodes that are known."""
        known = self._nodes
        return {i: known[i] for i in ids if i in known}

    def __len__(self) -> int:
        return len(self._nodes)


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (``size >= 2``)."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form the inclusion proof of leaf ``index``, bottom-up."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    out: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form the consistency proof from ``size1`` to ``size2``."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    out: list[tuple[int, int]] = []
    m = size1
    start, end = 0, size2
    complete = True
    while True:
        size = end - start
        if m == size:
            if not complete:
                out.append((start, end))
            break
        k = _split(size)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            m -= k
            start += k
            complete = False
    out.reverse()
    return out


def _hash_ranges(source: NodeSource, ranges: list[tuple[int, int]]) -> list[bytes]:
    plans = [range_nodes(a, b) for a, b in ranges]
    ids = {node_id(level, index) for plan in plans for level, index in plan}
    nodes = source.get_nodes(ids)
    missing = ids.difference(nodes)
    if missing:
        raise ProofError(
            f"the store lacks {len(missing)} tree node(s) (e.g. node {min(missing)})",
            hint="the ledger tables are incomplete; run `distillguard ledger audit`",
        )
    return [fold_right([nodes[node_id(lv, ix)] for lv, ix in plan]) for plan in plans]


def inclusion_proof(source: NodeSource, *, index: int, size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof (audit path) of leaf ``index`` in the tree of ``size``."""
    return _hash_ranges(source, inclusion_ranges(index, size))


def consistency_proof(source: NodeSource, *, size1: int, size2: int) -> list[bytes]:
    """The RFC 9162 consistency proof between the trees of ``size1`` and ``size2`` leaves."""
    if size1 == size2:
        return []
    return _hash_ranges(source, consistency_ranges(size1, size2))


def root_hash(source: NodeSource, *, size: int) -> bytes:
    """The Merkle tree hash of the first ``size`` leaves, from stored nodes."""
    if size == 0:
        return EMPTY_ROOT
    return _hash_ranges(source, [(0, size)])[0]
