"""Signal: near-duplicate prompt templates shared across accounts (MinHash LSH, NumPy).

**What it catches.** A harvesting campaign generates its prompts from a few templates (slot
filling, light paraphrase) and spreads them over many accounts. Prompts are normalised (lower
case, digits to ``0``, punctuation removed), cut into word 3-shingles, MinHashed with
``num_perm`` universal hash functions and split into ``bands`` bands; two prompts in the same
band bucket are near-duplicates (Jaccard similarity above about ``(1/bands)**(1/rows)``). A
bucket is a *template*; the accounts that used it form a group, and groups become edges of the
link graph (:mod:`distillguard.monitor.graph`), weighted down by the group's size so that a
template everybody uses links nobody.

**When it fires on legitimate traffic.** Evaluation runners (the same benchmark from several
accounts), enterprise batch jobs (one template, many records), and popular phrasings that
thousands of unrelated users type. Those groups are either inside one organisation or so large
that their edges weigh almost nothing.

**Needs content:** yes (the last user message; a sample of at most ``per_account`` per account).

Everything after tokenisation is vectorised: token ids come from Arrow's dictionary encoding, each
distinct token is hashed once, shingle hashes and the ``num_perm`` minima are NumPy array
operations (``np.minimum.reduceat``) over all prompts at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "MinHasher",
    "TemplateBuckets",
    "shingle_hashes",
    "template_buckets",
]

_MASK61 = np.uint64((1 << 61) - 1)


@dataclass(frozen=True)
class MinHasher:
    """MinHash with ``num_perm`` multiply-shift hash functions, banded for LSH."""

    num_perm: int = 30
    bands: int = 10
    seed: int = 1

    def __post_init__(self) -> None:
        if self.num_perm % self.bands:
            raise ValueError("num_perm must be a multiple of bands")

    @property
    def rows(self) -> int:
        """Rows (hash values) per band."""
        return self.num_perm // self.bands

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, 2**63 - 1, size=self.num_perm, dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 2**63 - 1, size=self.num_perm, dtype=np.uint64)
        return a, b

    def signatures(self, shingles: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """MinHash signatures, shape (len(offsets) - 1, num_perm), of shingle hash sets.

        ``shingles`` holds the uint64 shingle hashes of every document back to back; document
        ``i`` is ``shingles[offsets[i]:offsets[i + 1]]``. Empty documents get all-max rows.
        """
        n = len(offsets) - 1
        out = np.full((n, self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        if n == 0 or len(shingles) == 0:
            return out
        starts = offsets[:-1]
        nonempty = offsets[1:] > starts
        idx = starts[nonempty]
        a, b = self._params()
        for k in range(self.num_perm):
            with np.errstate(over="ignore"):
                v = ((shingles * a[k] + b[k]) >> np.uint64(32)).astype(np.uint32)
            out[nonempty, k] = np.minimum.reduceat(v, idx)
        return out

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """One uint64 bucket key per (document, band), shape (n, bands); band index mixed in."""
        n = signatures.shape[0]
        sig = signatures.astype(np.uint64).reshape(n, self.bands, self.rows)
        key = np.zeros((n, self.bands), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for r in range(self.rows):
                key = key * np.uint64(0x9E3779B97F4A7C15) + sig[:, :, r] + np.uint64(1)
            key ^= np.arange(self.bands, dtype=np.uint64)[None, :] * np.uint64(0xD6E8FEB86659FD93)
        return key


def _token_hashes(words: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Flattened uint64 word hashes and list offsets of a list<string> array."""
    arr = words.combine_chunks() if isinstance(words, pa.ChunkedArray) else words
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    flat = pc.list_flatten(arr)
    enc = (
        pc.dictionary_encode(flat).combine_chunks()
        if isinstance(flat, pa.ChunkedArray)
        else pc.dictionary_encode(flat)
    )
    vocab = enc.dictionary.to_pylist()
    # One hash per distinct token (the vocabulary), not per record.
    table = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            for t in vocab
        ),
        dtype=np.uint64,
        count=len(vocab),
    )
    ids = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return table[ids] if len(ids) else np.zeros(0, np.uint64), offsets


def shingle_hashes(
    words: pa.Array | pa.ChunkedArray, *, k: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """uint64 hashes of word ``k``-shingles per document, and their offsets.

    Documents shorter than ``k`` words get one shingle of all their words.
    """
    h, off = _token_hashes(words)
    lengths = np.diff(off)
    n_sh = np.where(lengths >= k, lengths - k + 1, np.minimum(lengths, 1))
    new_off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(n_sh, out=new_off[1:])
    total = int(new_off[-1])
    if total == 0:
        return np.zeros(0, np.uint64), new_off
    doc = np.repeat(np.arange(len(lengths)), n_sh)
    pos = np.arange(total) - new_off[doc]  # position of the shingle in its document
    start = off[doc] + pos
    span = np.minimum(lengths[doc], k)
    acc = np.zeros(total, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            valid = j < span
            term = np.where(valid, h[np.minimum(start + j, len(h) - 1)], np.uint64(0))
            acc = acc * np.uint64(0x100000001B3) + term
    return acc, new_off


@dataclass(frozen=True)
class TemplateBuckets:
    """LSH bucket membership: for each sampled prompt, its account row and band keys."""

    doc_account: np.ndarray  # int64 index into the accounts of the sample
    keys: np.ndarray  # uint64, shape (n_docs, bands)

    def pairs(self) -> pa.Table:
        """Distinct (key, account) rows: the template groups."""
        _n, bands = self.keys.shape
        acc = np.repeat(self.doc_account, bands)
        tbl = pa.table({"key": pa.array(self.keys.reshape(-1)), "acct": pa.array(acc)})
        return tbl.group_by(["key", "acct"]).aggregate([([], "count_all")])


#: Prompts hashed at a time by :func:`template_buckets` (bounds the memory of the shingle arrays:
#: about 1 GB per 250k prompts of the scan's sample, whatever the size of the log).
CHUNK_DOCS = 250_000


def template_buckets(
    words: pa.Array | pa.ChunkedArray,
    doc_account: np.ndarray,
    *,
    hasher: MinHasher | None = None,
    chunk: int = CHUNK_DOCS,
) -> TemplateBuckets:
    """Band keys of every sampled prompt (``words``: list<string> of normalised words).

    Prompts are processed ``chunk`` at a time; the keys do not depend on ``chunk``.
    """
    hasher = hasher or MinHasher()
    arr = words.combine_chunks() if isinstance(words, pa.ChunkedArray) else words
    n = len(arr)
    parts: list[np.ndarray] = []
    for lo in range(0, max(n, 1), max(int(chunk), 1)):
        sh, off = shingle_hashes(arr.slice(lo, chunk))
        keys = hasher.band_keys(hasher.signatures(sh, off))
        empty = np.diff(off) == 0
        if empty.any():
            keys[empty] = np.uint64(0)  # empty prompts: one shared key, dropped later
        parts.append(keys)
    keys_all = np.concatenate(parts) if parts else np.zeros((0, hasher.bands), np.uint64)
    return TemplateBuckets(doc_account=np.asarray(doc_account, dtype=np.int64), keys=keys_all)
