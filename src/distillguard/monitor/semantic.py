"""Signal: paraphrases of one plan shared across accounts (log-learned vectors, SimHash LSH).

**What it catches.** A low-and-slow campaign spreads one harvesting plan over many accounts and
paraphrases every request (synonym swaps, reordered clauses, new openers and framings), so that no
two accounts send the same text and the lexical MinHash of :mod:`~distillguard.monitor.templates`
finds nothing. The paraphrases keep the *meaning*: the same framing words up to synonyms, the same
rare identifiers (the numbers and names of the task). This module gives every sampled prompt a
vector that is invariant to those operations and hashes the vectors into buckets that hold
near-paraphrases; accounts whose prompts meet in a bucket form a group (key kind ``semantic``),
and groups become edges of the link graph like the template buckets.

**How, without a model downloaded at run time.** The word vectors are learned from the scanned
log itself (self-supervised, no labels, no outside weights):

1. *Vocabulary*: the ``vocab`` most frequent tokens (lower case, split on non-alphanumerics,
   digits kept: a number is an identifier of the task) of up to ``train_docs`` sampled prompts, in
   a fixed pseudo-random order (MD5 of the exchange id), each seen at least ``min_count`` times.
2. *Co-occurrence*: counts of vocabulary pairs within ``window`` tokens of each other; positive
   pointwise mutual information (context distribution smoothed by the power 0.75); truncated SVD
   to ``dim`` dimensions (ARPACK with a fixed start vector): words used in the same contexts
   (synonyms, a harvesting framing's interchangeable verbs) get nearby vectors.
3. *Prompt vectors*: the smooth-inverse-frequency average (weight ``a / (a + p(w))``) of the word
   vectors, where a token outside the vocabulary (a rare identifier) gets a fixed pseudo-random
   unit vector from its hash, so that two prompts sharing a rare token share a direction; minus
   the projection on the first principal component (the common discourse); normalised.
4. *Buckets*: SimHash (signs of ``bits x bands`` Gaussian projections, seeded), ``bands`` bands of
   ``bits`` bits: two prompts share a band's bucket with probability ``(1 - angle/pi)^bits``, about
   0.86^28 = 1.5% at cosine 0.9 per band, 11% over 8 bands, and 0.88^28 = 3% at cosine 0.93.

Word order does not count (bags of words), nor do openers, closers and casing (frequent tokens
weigh little).

**When it fires on legitimate traffic.** Anyone who asks the same specific thing as someone else
in other words: students of one class with the same homework problem, a research group's sweep
run from several accounts, an organisation's users of one internal tool, a benchmark sent by many
labs (those also share templates). It is evidence of a common *plan* only when the accounts are
otherwise unrelated, and by itself it is content: the scores never flag anybody for it alone
(control rule, :mod:`~distillguard.monitor.scoring`); its groups join accounts to a community,
whose evidence counts only where members show control.

**Where it fails.** A plan paraphrased into other *content* (new numbers, new entities per
account) has nothing to share; a campaign that is the only one of its kind in a log, with no
account under visible control, is grouped but not flagged (see docs/scan.md, the per-family
table). The vectors come from the log: a small log (a few thousand prompts) gives noisy vectors,
and a log dominated by one campaign learns its framings as the common discourse.

**Needs content:** yes (the sampled last user messages, as the templates).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from scipy.sparse.linalg import svds

__all__ = [
    "TOKENS_SQL",
    "SemanticHasher",
    "WordVectors",
    "learn_word_vectors",
    "plan_links",
    "semantic_buckets",
    "tokenise",
]

logger = logging.getLogger(__name__)

#: Prompts vectorised at a time by :func:`semantic_buckets` (bounds the memory of the sparse
#: document-token matrix and the vectors: about 0.3 GB per 250k prompts).
CHUNK_DOCS = 250_000


@dataclass(frozen=True)
class SemanticHasher:
    """Parameters of the semantic buckets (see the module docstring)."""

    dim: int = 64
    vocab: int = 20_000
    window: int = 4
    min_count: int = 3
    train_docs: int = 200_000
    sif_a: float = 1e-3
    bits: int = 28
    bands: int = 8
    seed: int = 7
    #: Bucket only the prompts the elicitation classifiers mark (reasoning or grading requests).
    only_elicit: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 32 or self.bands < 1 or self.dim < 2:
            raise ValueError("bits must be 1..32, bands >= 1 and dim >= 2")


@dataclass(frozen=True)
class WordVectors:
    """Word vectors learned from a log: vocabulary (sorted by decreasing count, then text),
    unit vectors (rows), smooth-inverse-frequency weights, and the common component removed."""

    words: list[str]
    vectors: np.ndarray  # float64, (len(words), dim)
    weights: np.ndarray  # SIF weight per word
    oov_weight: float  # SIF weight of a token outside the vocabulary
    common: np.ndarray  # unit vector (dim,) projected out of every prompt vector

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return int(self.vectors.shape[1])


#: The same tokens in DuckDB SQL (the scan tokenises its sample there, in parallel); ``{col}``
#: is the prompt column.
TOKENS_SQL = (
    "list_filter(string_split(regexp_replace(lower({col}), '[^a-z0-9]+', ' ', 'g'), ' '), "
    "lambda x: x <> '')"
)


def tokenise(prompts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """Lower-cased alphanumeric tokens of every prompt (digits kept), as list<string>
    (:data:`TOKENS_SQL` in DuckDB)."""
    arr = prompts.combine_chunks() if isinstance(prompts, pa.ChunkedArray) else prompts
    clean = pc.replace_substring_regex(pc.utf8_lower(arr), r"[^a-z0-9]+", " ")
    # leading/trailing spaces and empty prompts split into empty tokens: dropped
    return _drop_empty(pc.split_pattern(clean, " "))


def _drop_empty(words: pa.ListArray) -> pa.ListArray:
    off = np.asarray(words.offsets, dtype=np.int64)
    flat = pc.list_flatten(words)
    keep = np.asarray(pc.not_equal(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False), bool)
    doc = np.repeat(np.arange(len(off) - 1), np.diff(off - off[0]))
    new_off = np.zeros(len(off), dtype=np.int32)
    np.cumsum(np.bincount(doc[keep], minlength=len(off) - 1), out=new_off[1:])
    return pa.ListArray.from_arrays(pa.array(new_off), flat.filter(pa.array(keep)))


def _encode(words: pa.ListArray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Dictionary (distinct tokens), token ids and document offsets of a list<string> array."""
    off = np.asarray(words.offsets, dtype=np.int64)
    off = off - off[0]
    flat = pc.list_flatten(words)
    enc = pc.dictionary_encode(flat)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    ids = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return enc.dictionary.to_pylist(), ids, off


def learn_word_vectors(words: pa.ListArray, hasher: SemanticHasher | None = None) -> WordVectors:
    """Word vectors from the token lists ``words`` (the first ``train_docs`` documents)."""
    h = hasher or SemanticHasher()
    words = words.slice(0, h.train_docs)
    dic, ids, off = _encode(words)
    n_docs = len(off) - 1
    counts = np.bincount(ids, minlength=len(dic)).astype(np.float64)
    # vocabulary: by decreasing count, ties by text (deterministic)
    order = sorted(range(len(dic)), key=lambda i: (-counts[i], dic[i]))
    keep = [i for i in order[: h.vocab] if counts[i] >= h.min_count]
    v = len(keep)
    total = float(counts.sum()) or 1.0
    oov_w = h.sif_a / (h.sif_a + 1.0 / total)
    if v < h.dim + 2:
        logger.info("semantic vectors: %d words only, no vectors learned", v)
        return WordVectors([], np.zeros((0, h.dim)), np.zeros(0), oov_w, np.zeros(h.dim))
    vid = np.full(len(dic), -1, dtype=np.int64)
    vid[np.asarray(keep, dtype=np.int64)] = np.arange(v)
    tv = vid[ids]
    doc = np.repeat(np.arange(n_docs), np.diff(off))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for d in range(1, h.window + 1):
        a, b = tv[:-d], tv[d:]
        ok = (doc[:-d] == doc[d:]) & (a >= 0) & (b >= 0)
        rows.append(a[ok])
        cols.append(b[ok])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    m = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(v, v)).tocsr()
    m = (m + m.T).tocoo()  # symmetric window; coo sums duplicates in a fixed order (integers)
    m.sum_duplicates()
    tot = float(m.data.sum()) or 1.0
    row_p = np.asarray(np.bincount(m.row, m.data, v)) / tot
    ctx = np.bincount(m.col, m.data, v) ** 0.75
    ctx_p = ctx / max(float(ctx.sum()), 1e-300)
    pmi = np.log(m.data / tot / np.maximum(row_p[m.row] * ctx_p[m.col], 1e-300))
    pos = pmi > 0
    ppmi = sp.csr_matrix((pmi[pos], (m.row[pos], m.col[pos])), shape=(v, v))
    k = min(h.dim, v - 2)
    u, s, _vt = svds(ppmi, k=k, v0=np.full(v, 1.0 / np.sqrt(v)))
    vec = u[:, np.argsort(-s)] * np.sqrt(np.sort(s)[::-1])
    vec = _fix_signs(vec)
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    if k < h.dim:
        vec = np.pad(vec, ((0, 0), (0, h.dim - k)))
    weights = h.sif_a / (h.sif_a + counts[np.asarray(keep)] / total)
    wv = WordVectors(
        words=[dic[i] for i in keep],
        vectors=vec,
        weights=weights,
        oov_weight=oov_w,
        common=np.zeros(h.dim),
    )
    x = _prompt_vectors(words, wv, remove_common=False)
    common = np.zeros(h.dim)
    if len(x) >= 2:
        # the first right singular vector of x: the top eigenvector of x'x (dim x dim)
        _, evec = np.linalg.eigh(x.T @ x)
        common = _fix_signs(evec[:, -1:]).ravel()
    return WordVectors(wv.words, wv.vectors, wv.weights, oov_w, common)


def _fix_signs(m: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive (SVD signs are
    arbitrary; fixing them makes the vectors reproducible)."""
    idx = np.argmax(np.abs(m), axis=0)
    sign = np.sign(m[idx, np.arange(m.shape[1])])
    sign[sign == 0] = 1.0
    return np.asarray(m * sign[None, :], dtype=np.float64)


def _oov_vectors(tokens: list[str], dim: int) -> np.ndarray:
    """A fixed pseudo-random +-1/sqrt(dim) vector per token, from its BLAKE2b hash."""
    if not tokens:
        return np.zeros((0, dim))
    h = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            for t in tokens
        ),
        dtype=np.uint64,
        count=len(tokens),
    )
    with np.errstate(over="ignore"):
        z = h[:, None] + np.arange(1, dim + 1, dtype=np.uint64)[None, :] * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return np.asarray(np.where((z & np.uint64(1)) == 1, 1.0, -1.0) / np.sqrt(dim), np.float64)


def _prompt_vectors(words: pa.ListArray, wv: WordVectors, *, remove_common: bool) -> np.ndarray:
    """Unit prompt vectors (zero rows for prompts without tokens) of ``words``."""
    dim = wv.common.shape[0]
    dic, ids, off = _encode(words)
    n_docs = len(off) - 1
    index = {w: i for i, w in enumerate(wv.words)}
    vid = np.fromiter((index.get(t, -1) for t in dic), dtype=np.int64, count=len(dic))
    oov = np.flatnonzero(vid < 0)
    emb = np.zeros((len(dic), dim))
    known = vid >= 0
    if known.any():
        emb[known] = wv.vectors[vid[known]]
    emb[oov] = _oov_vectors([dic[i] for i in oov], dim)
    w = np.where(known, wv.weights[np.maximum(vid, 0)] if len(wv.weights) else 0.0, wv.oov_weight)
    doc = np.repeat(np.arange(n_docs), np.diff(off))
    mat = sp.csr_matrix((w[ids], (doc, ids)), shape=(n_docs, len(dic)))
    mat.sum_duplicates()
    x = np.asarray(mat @ emb)
    if remove_common:
        x -= np.outer(x @ wv.common, wv.common)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(np.where(norm > 1e-12, x / np.maximum(norm, 1e-12), 0.0), np.float64)


def semantic_buckets(
    words: pa.ListArray,
    *,
    vectors: WordVectors,
    hasher: SemanticHasher | None = None,
    chunk: int = CHUNK_DOCS,
) -> np.ndarray:
    """SimHash band keys (uint64, shape (n_docs, bands)) of every prompt; 0 for empty prompts.

    Prompts are vectorised ``chunk`` at a time; the keys do not depend on ``chunk``."""
    h = hasher or SemanticHasher()
    rng = np.random.default_rng(h.seed)
    proj = rng.standard_normal((vectors.dim, h.bits * h.bands))
    band_tag = (np.arange(h.bands, dtype=np.uint64) + np.uint64(1)) << np.uint64(40)
    n = len(words)
    out = np.zeros((n, h.bands), dtype=np.uint64)
    pad = 32 - h.bits
    for lo in range(0, n, max(int(chunk), 1)):
        part = words.slice(lo, chunk)
        x = _prompt_vectors(part, vectors, remove_common=True)
        m = len(x)
        bits = (x @ proj > 0).reshape(m, h.bands, h.bits)
        if pad:
            bits = np.concatenate([bits, np.zeros((m, h.bands, pad), dtype=bool)], axis=2)
        packed = np.packbits(bits, axis=2, bitorder="little")  # (m, bands, 4) bytes
        band = packed.reshape(m * h.bands, 4).view("<u4").reshape(m, h.bands)
        keys = band.astype(np.uint64) | band_tag[None, :]
        keys[~np.any(x != 0, axis=1)] = 0
        out[lo : lo + m] = keys
    return out


def plan_links(
    keys: pa.Table, seeds: np.ndarray, n_accounts: int, *, min_seed_share: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Per account: how many of its ``semantic`` buckets (rows of the keys table, kind
    ``semantic``) are dominated by ``seeds`` (boolean per account: the accounts under visible
    control): at least one seed and at least ``min_seed_share`` of the bucket's *other* accounts;
    and how many ``semantic`` buckets it has. A bucket of everyday requests that a campaign's
    cover traffic shares with hundreds of ordinary users is not dominated by the campaign.

    This is how a paraphrase group becomes evidence without anyone being flagged for content
    alone: the group's meaning is shared with accounts whose control is shown independently (a
    shared card, a sign-up burst, proxy rotation)."""
    hits = np.zeros(n_accounts, dtype=np.float64)
    total = np.zeros(n_accounts, dtype=np.float64)
    if keys.num_rows == 0 or n_accounts == 0:
        return hits, total
    sem = keys.filter(pc.equal(keys["kind"], "semantic"))
    if sem.num_rows == 0:
        return hits, total
    acct = np.asarray(sem["acct"].to_numpy(), dtype=np.int64)
    enc = pc.dictionary_encode(sem["gkey"]).combine_chunks()
    bucket = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    is_seed = np.asarray(seeds, dtype=bool)[acct].astype(np.int64)
    nb = len(enc.dictionary)
    seeds_in = np.bincount(bucket, weights=is_seed, minlength=nb)
    size = np.bincount(bucket, minlength=nb).astype(np.float64)
    others = seeds_in[bucket] - is_seed  # seeds in the bucket besides the account itself
    rest = size[bucket] - 1.0  # accounts in the bucket besides the account itself
    hit = (others >= 1) & (others >= min_seed_share * np.maximum(rest, 1.0))
    np.add.at(total, acct, 1.0)
    np.add.at(hits, acct, hit.astype(np.float64))
    return hits, total
