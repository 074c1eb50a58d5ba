"""RFC 6962 / RFC 9162 Merkle tree hashing: leaf and interior node hashes.

A leaf hash is ``SHA-256(0x00 || leaf data)`` and an interior node hash is
``SHA-256(0x01 || left || right)``: the one-byte prefixes keep a leaf from ever being
mistaken for a node (second-preimage resistance). The hash of the empty tree is
``SHA-256("")``.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["EMPTY_ROOT", "HASH_SIZE", "leaf_hash", "node_hash"]

#: Size in bytes of every hash in the tree (SHA-256).
HASH_SIZE: Final = 32
#: The Merkle tree hash of the empty tree, ``SHA-256("")``.
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 hash of a leaf holding ``data``: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()
