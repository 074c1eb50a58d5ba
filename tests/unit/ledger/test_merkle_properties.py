"""Property tests: appends, roots, inclusion and consistency proofs, and tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import ProofError
from distillguard.ledger import verify_consistency, verify_inclusion
from distillguard.ledger._compact_range import CompactRange, node_id, range_nodes
from distillguard.ledger._hashing import EMPTY_ROOT, leaf_hash, node_hash
from distillguard.ledger._proofs import (
    MemoryNodes,
    consistency_proof,
    inclusion_proof,
    root_hash,
)


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH by its recursive definition (slow, obviously correct)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def _build(n: int, *, batches: int = 3) -> tuple[list[bytes], CompactRange, MemoryNodes]:
    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(n)]
    cr = CompactRange()
    nodes = MemoryNodes()
    step = max(1, n // batches)
    for start in range(0, n, step):
        nodes.add(cr.append(leaves[start : start + step]))
    return leaves, cr, nodes


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def test_known_small_roots() -> None:
    assert CompactRange().root() == hashlib.sha256(b"").digest()
    leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]
    cr = CompactRange()
    cr.append(leaves)
    assert cr.root() == node_hash(node_hash(leaves[0], leaves[1]), leaves[2])


def test_node_ids_are_unique_and_below_twice_the_size() -> None:
    seen = {node_id(level, index) for level in range(8) for index in range(256 >> level)}
    assert len(seen) == sum(256 >> level for level in range(8))
    assert max(seen) < 2 * 256


def test_unaligned_range_is_refused() -> None:
    with pytest.raises(ValueError):
        range_nodes(1, 5)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=0, max_value=300), batches=st.integers(1, 7))
def test_incremental_root_equals_reference(n: int, batches: int) -> None:
    leaves, cr, nodes = _build(n, batches=batches)
    assert cr.size == n
    assert cr.root() == _reference_root(leaves)
    for size in {0, n // 3, n // 2, n}:
        assert root_hash(nodes, size=size) == _reference_root(leaves[:size])
    # A frontier reloaded from the stored nodes continues identically.
    frontier = [nodes.get_nodes([node_id(lv, ix)])[node_id(lv, ix)] for lv, ix in range_nodes(0, n)]
    reloaded = CompactRange(n, frontier)
    assert reloaded.root() == cr.root()


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=260))
def test_inclusion_proofs_verify_and_tampering_fails(data: st.DataObject, n: int) -> None:
    leaves, _, nodes = _build(n)
    size = data.draw(st.integers(1, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = root_hash(nodes, size=size)
    proof = inclusion_proof(nodes, index=index, size=size)
    verify_inclusion(leaf_hash=leaves[index], index=index, size=size, proof=proof, root=root)

    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        verify_inclusion(
            leaf_hash=leaves[index], index=index, size=size, proof=proof, root=_flip(root, bit)
        )
    with pytest.raises(ProofError):
        verify_inclusion(
            leaf_hash=_flip(leaves[index], bit), index=index, size=size, proof=proof, root=root
        )
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1), label="which")
        bad = list(proof)
        bad[which] = _flip(bad[which], bit)
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash=leaves[index], index=index, size=size, proof=bad, root=root)
    index_bit = data.draw(st.integers(0, 20), label="index_bit")
    other = index ^ (1 << index_bit)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash=leaves[index], index=other, size=size, proof=proof, root=root)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=260))
def test_consistency_proofs_verify_and_tampering_fails(data: st.DataObject, n: int) -> None:
    _, _, nodes = _build(n)
    size2 = data.draw(st.integers(1, n), label="size2")
    size1 = data.draw(st.integers(1, size2), label="size1")
    root1 = root_hash(nodes, size=size1)
    root2 = root_hash(nodes, size=size2)
    proof = consistency_proof(nodes, size1=size1, size2=size2)
    verify_consistency(size1=size1, size2=size2, proof=proof, root1=root1, root2=root2)

    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(ProofError):
        verify_consistency(
            size1=size1, size2=size2, proof=proof, root1=_flip(root1, bit), root2=root2
        )
    with pytest.raises(ProofError):
        verify_consistency(
            size1=size1, size2=size2, proof=proof, root1=root1, root2=_flip(root2, bit)
        )
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1), label="which")
        bad = list(proof)
        bad[which] = _flip(bad[which], bit)
        with pytest.raises(ProofError):
            verify_consistency(size1=size1, size2=size2, proof=bad, root1=root1, root2=root2)
    # A proof between other sizes is refused when the proof shape cannot match.
    if size1 < size2:
        with pytest.raises(ProofError):
            verify_consistency(size1=size1, size2=size2, proof=[], root1=root1, root2=root2)
        with pytest.raises(ProofError):
            verify_consistency(
                size1=size1, size2=size2, proof=[*proof, root1], root1=root1, root2=root2
            )


def test_missing_node_is_reported() -> None:
    _, _, full = _build(10)
    partial = MemoryNodes()
    partial.add((i, h) for i, h in full.get_nodes(range(40)).items() if i != 0)
    with pytest.raises(ProofError, match="lacks"):
        inclusion_proof(partial, index=1, size=10)
