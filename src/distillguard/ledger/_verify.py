"""Verification of inclusion and consistency proofs (RFC 9162 sections 2.1.3.2 and 2.1.4.2).

These functions depend on nothing but their arguments: a verifier needs no store, no keyring
and no network. Each raises :class:`~distillguard.errors.ProofError` saying why a proof was
rejected, and returns ``None`` when it verifies.

Conventions (those of the transparency-dev/merkle reference implementation): every hash is 32
bytes; a consistency proof from the empty tree is refused; between equal sizes the proof must be
empty and the roots equal (and, for size 0, the empty-tree hash).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from distillguard.errors import ProofError
from distillguard.ledger._hashing import EMPTY_ROOT, HASH_SIZE

__all__ = ["root_from_inclusion_proof", "verify_consistency", "verify_inclusion"]

_sha256 = hashlib.sha256


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be a {HASH_SIZE}-byte hash")


def root_from_inclusion_proof(
    *, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that an inclusion proof of ``leaf_hash`` at ``index`` implies.

    Raises:
        ProofError: the index is outside the tree or the proof has the wrong length or shape.
    """
    if isinstance(index, bool) or isinstance(size, bool) or not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf_hash, "the leaf hash")
    fn = index
    sn = size - 1
    r = bytes(leaf_hash)
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
        if sn == 0:
            raise ProofError(f"inclusion proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is too short ({len(proof)} hashes)")
    return r


def verify_inclusion(
    *, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves and ``root``.

    Raises:
        ProofError: the proof does not verify.
    """
    _check_hash(root, "the root hash")
    computed = root_from_inclusion_proof(leaf_hash=leaf_hash, index=index, size=size, proof=proof)
    if not hmac.compare_digest(computed, root):
        raise ProofError(
            f"inclusion proof of leaf {index} does not lead to the root of the tree of size {size}"
        )


def verify_consistency(
    *, size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` leaves (``root1``) is a prefix of that of ``size2``.

    Raises:
        ProofError: the proof does not verify.
    """
    if isinstance(size1, bool) or isinstance(size2, bool):
        raise ProofError("tree sizes must be integers")
    if size1 < 0 or size2 < size1:
        raise ProofError(f"tree size {size2} is smaller than {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(bytes(root1), bytes(root2)):
            raise ProofError(f"two different roots for the same tree size {size1}")
        if size1 == 0 and not hmac.compare_digest(bytes(root1), EMPTY_ROOT):
            raise ProofError("the root of the empty tree must be SHA-256 of the empty string")
        return
    _check_hash(root1, "the first root hash")
    _check_hash(root2, "the second root hash")
    if size1 == 0:
        raise ProofError("no consistency proof from the empty tree")
    if not proof:
        raise ProofError("the consistency proof is empty")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first subtree
        path.insert(0, bytes(root1))
    fn = size1 - 1
    sn = size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof is too short ({len(proof)} hashes)")
    if not hmac.compare_digest(fr, root1):
        raise ProofError(f"consistency proof does not lead to the root of size {size1}")
    if not hmac.compare_digest(sr, root2):
        raise ProofError(f"consistency proof does not lead to the root of size {size2}")
