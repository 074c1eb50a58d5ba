"""Find our watermark in a dataset: per-record p-values, flagged records under FDR control, and a
corpus-level p-value.

Records are streamed (JSONL, JSONL.gz, Parquet, CSV, or a folder of text files and datasets), one
at a time, so memory holds one record plus the per-record p-values. Each record is tokenized,
scored (deduplicated within the record) and tested exactly; the records whose Benjamini-Hochberg
q-value is at most ``fdr`` are listed as contaminated. The corpus-level test pools every record's
scores with one deduplication tape over the whole dataset (each (window, token) counted once), so
its p-value is exact for the corpus as a whole even when records repeat one another.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from distillguard.errors import InputError, LogFormatError, LogNotFoundError
from distillguard.watermark._base import DedupTape, DetectionResult, WatermarkScheme
from distillguard.watermark._cater import CaterWatermark
from distillguard.watermark._mpac import MPACWatermark, PayloadResult, PayloadTokenScores
from distillguard.watermark._stats import benjamini_hochberg, poisson_binomial_sf
from distillguard.watermark._tokenizers import Tokenizer

__all__ = [
    "DEFAULT_FIELDS",
    "RecordFinding",
    "ScanReport",
    "iter_records",
    "scan_dataset",
    "scan_dataset_text",
]

#: Fields tried, in order, when no text field is named.
DEFAULT_FIELDS = ("text", "output", "response", "completion", "content", "answer")
_TEXT_SUFFIXES = {".txt", ".md", ".text"}
_DATA_SUFFIXES = {".jsonl", ".ndjson", ".parquet", ".csv", ".gz"}


def _pick(record: dict[str, Any], text_field: str | None) -> str | None:
    if text_field is not None:
        value = record.get(text_field)
        if isinstance(value, list):  # a conversation (log format v1 ``messages``)
            return _last_user_message(value)
        return value if isinstance(value, str) else None
    for name in DEFAULT_FIELDS:
        value = record.get(name)
        if isinstance(value, str):
            return value
    return None


def _last_user_message(messages: list[Any]) -> str | None:
    """The content of the last ``user`` message of a conversation (what the account asked)."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return str(m["content"])
    return None


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


def _jsonl(path: Path, text_field: str | None) -> Iterator[tuple[str, str | None]]:
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise LogFormatError(f"{path}:{lineno}: not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise LogFormatError(f"{path}:{lineno}: a JSON object per line expected")
            yield f"{path.name}:{lineno}", _pick(record, text_field)


def _parquet(path: Path, text_field: str | None) -> Iterator[tuple[str, str | None]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    column = text_field or next((f for f in DEFAULT_FIELDS if f in names), None)
    if column is None or column not in names:
        raise InputError(f"{path}: no text column (have {', '.join(names)}); use --field")
    row = 0
    for batch in pf.iter_batches(columns=[column], batch_size=2048):
        for value in batch.column(0).to_pylist():
            if isinstance(value, list):
                value = _last_user_message(value)
            yield f"{path.name}:{row}", value if isinstance(value, str) else None
            row += 1


def _csv(path: Path, text_field: str | None) -> Iterator[tuple[str, str | None]]:
    csv.field_size_limit(1 << 30)
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        names = reader.fieldnames or []
        column = text_field or next((f for f in DEFAULT_FIELDS if f in names), None)
        if column is None or column not in names:
            raise InputError(f"{path}: no text column (have {', '.join(names)}); use --field")
        for row, record in enumerate(reader):
            yield f"{path.name}:{row + 2}", record.get(column)


def _file(path: Path, text_field: str | None) -> Iterator[tuple[str, str | None]]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        yield from _jsonl(path, text_field)
    elif name.endswith(".parquet"):
        yield from _parquet(path, text_field)
    elif name.endswith((".csv", ".csv.gz")):
        yield from _csv(path, text_field)
    else:
        try:
            yield str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None


def iter_records(path: Path, *, text_field: str | None = None) -> Iterator[tuple[str, str | None]]:
    """Yield ``(record id, text or None)`` from a dataset file or folder, streamed.

    A folder is walked recursively: text files (``.txt``, ``.md``) are one record each, dataset
    files are read record by record.
    """
    if not path.exists():
        raise LogNotFoundError(f"{path} does not exist")
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            suffix = child.suffix.lower()
            if suffix in _TEXT_SUFFIXES or suffix in _DATA_SUFFIXES:
                yield from _file(child, text_field)
        return
    yield from _file(path, text_field)


@dataclass(frozen=True)
class RecordFinding:
    """A record flagged as carrying the watermark."""

    record: str
    p_value: float
    q_value: float
    n_scored: int


@dataclass(frozen=True)
class ScanReport:
    """The outcome of :func:`scan_dataset`.

    Attributes:
        records: records read.
        skipped: records without text (missing or non-string field).
        tokens: tokens scored over all records (per-record deduplication).
        corpus: the pooled exact test over the whole dataset (dataset-wide deduplication).
        fdr: the false-discovery rate used to flag records.
        flagged: contaminated records (Benjamini-Hochberg), smallest p-value first.
        payload: for a multi-bit scheme, the payload decoded from the whole corpus.
    """

    records: int
    skipped: int
    tokens: int
    corpus: DetectionResult
    fdr: float
    flagged: tuple[RecordFinding, ...]
    payload: PayloadResult | None = None
    p_values: np.ndarray[Any, np.dtype[np.float64]] = field(
        repr=False, default_factory=lambda: np.zeros(0)
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the full p-value array)."""
        return {
            "records": self.records,
            "skipped": self.skipped,
            "tokens": self.tokens,
            "fdr": self.fdr,
            "corpus": self.corpus.to_dict(),
            "flagged": [f.__dict__ for f in self.flagged],
            "n_flagged": len(self.flagged),
            "payload": self.payload.to_dict() if self.payload is not None else None,
        }


class _Pool:
    """Pooled corpus totals under one dataset-wide deduplication tape."""

    def __init__(self, scheme: WatermarkScheme, bits: int) -> None:
        self.scheme = scheme
        self.tape = DedupTape()
        self.total = 0.0
        self.n = 0
        self.n_tokens = 0
        self.n_candidates = 0
        self.votes = np.zeros(bits, dtype=np.int64)
        self.ones = np.zeros(bits, dtype=np.float64)

    def add(self, scores: Any) -> None:
        fresh = self.tape.admit(scores.keys)
        self.total += float(scores.scores[fresh].sum())
        self.n += int(fresh.sum())
        self.n_tokens += scores.n_tokens
        self.n_candidates += scores.n_scored
        if isinstance(scores, PayloadTokenScores) and self.votes.size:
            idx = scores.bit_index[fresh]
            self.votes += np.bincount(idx, minlength=self.votes.size)[: self.votes.size]
            w = scores.scores[fresh]
            self.ones += np.bincount(idx, weights=w, minlength=self.votes.size)[: self.votes.size]

    def result(self) -> tuple[DetectionResult, PayloadResult | None]:
        scheme = self.scheme
        if isinstance(scheme, MPACWatermark):
            b = scheme.config.bits
            pooled = PayloadTokenScores(
                method=scheme.method,
                key_id=scheme.key_id,
                positions=np.zeros(int(self.votes.sum()), dtype=np.int64),
                scores=np.concatenate(
                    [
                        np.r_[np.ones(round(o)), np.zeros(int(v) - round(o))]
                        for o, v in zip(self.ones, self.votes, strict=True)
                    ]
                ),
                keys=np.zeros(0, dtype=np.uint64),
                n_tokens=self.n_tokens,
                n_candidates=self.n_candidates,
                bit_index=np.repeat(np.arange(b), self.votes),
            )
            return scheme.test(pooled), scheme.decode_scores(pooled)
        test_totals: Callable[..., DetectionResult] | None = getattr(scheme, "test_totals", None)
        if test_totals is None:
            raise InputError(f"scheme {scheme.method} cannot pool a corpus")
        return (
            test_totals(
                total=self.total,
                n_scored=self.n,
                n_tokens=self.n_tokens,
                n_duplicates=self.n_candidates - self.n,
            ),
            None,
        )


@dataclass
class _Tally:
    """Records read and records skipped (no text) by :func:`_texts`."""

    records: int = 0
    skipped: int = 0


def _texts(
    path: Path,
    text_field: str | None,
    limit: int | None,
    on_record: Callable[[int], None] | None,
    tally: _Tally,
) -> Iterator[tuple[str, str]]:
    """The (id, text) of the records of ``path`` that have a text, the first ``limit`` records
    at most; counts records and skipped ones in ``tally`` and calls ``on_record`` with the
    count after each record (after the caller has handled it)."""
    for record_id, text in iter_records(path, text_field=text_field):
        if limit is not None and tally.records >= limit:
            break
        tally.records += 1
        if text is None:
            tally.skipped += 1
        else:
            yield record_id, text
        if on_record is not None:
            on_record(tally.records)


def _flag_records(
    ids: list[str], pvals: list[float], nscored: list[int], *, fdr: float
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], tuple[RecordFinding, ...]]:
    """The records' p-values as an array, and those Benjamini-Hochberg rejects at ``fdr``
    (smallest p-value first, ties in record order)."""
    p = np.asarray(pvals, dtype=np.float64)
    q, rejected = benjamini_hochberg(p, alpha=fdr)
    order = np.flatnonzero(rejected)
    order = order[np.argsort(p[order], kind="stable")]
    flagged = tuple(
        RecordFinding(record=ids[i], p_value=float(p[i]), q_value=float(q[i]), n_scored=nscored[i])
        for i in order
    )
    return p, flagged


def scan_dataset(
    path: Path,
    *,
    scheme: WatermarkScheme,
    tokenizer: Tokenizer,
    text_field: str | None = None,
    fdr: float = 0.01,
    limit: int | None = None,
    on_record: Callable[[int], None] | None = None,
) -> ScanReport:
    """Scan a dataset for ``scheme``'s watermark (see the module docstring).

    Args:
        path: a JSONL / JSONL.gz / Parquet / CSV file, a text file, or a folder of them.
        scheme: the scheme and key to look for.
        tokenizer: how texts become token ids (the generating model's, or the built-in one).
        text_field: the field or column holding the text (default: the first of
            :data:`DEFAULT_FIELDS` present).
        fdr: false-discovery rate for flagging records.
        limit: stop after this many records.
        on_record: called with the number of records read so far (progress).
    """
    if not 0.0 < fdr < 1.0:
        raise InputError(f"fdr must be in (0, 1), got {fdr}")
    bits = scheme.config.bits if isinstance(scheme, MPACWatermark) else 0
    pool = _Pool(scheme, bits)
    ids: list[str] = []
    pvals: list[float] = []
    nscored: list[int] = []
    tokens = 0
    tally = _Tally()
    for record_id, text in _texts(path, text_field, limit, on_record, tally):
        scores = scheme.score_tokens(tokenizer.encode(text))
        pvals.append(scheme.test(scores).p_value)
        ids.append(record_id)
        nscored.append(scores.n_scored)
        tokens += scores.n_scored
        pool.add(scores)
    p, flagged = _flag_records(ids, pvals, nscored, fdr=fdr)
    corpus, payload = pool.result()
    return ScanReport(
        records=tally.records,
        skipped=tally.skipped,
        tokens=tokens,
        corpus=corpus,
        fdr=fdr,
        flagged=flagged,
        payload=payload,
        p_values=p,
    )


def scan_dataset_text(
    path: Path,
    *,
    watermark: CaterWatermark,
    text_field: str | None = None,
    fdr: float = 0.01,
    limit: int | None = None,
    on_record: Callable[[int], None] | None = None,
) -> ScanReport:
    """:func:`scan_dataset` for the post-hoc lexical scheme (``cater``), which reads words.

    Each record gets its exact Poisson-binomial p-value; the corpus test pools every record's
    agreements, each (previous word, synonym group) context counted once in the whole dataset, so
    it stays exact when records repeat each other.
    """
    if not 0.0 < fdr < 1.0:
        raise InputError(f"fdr must be in (0, 1), got {fdr}")
    seen: set[tuple[str, int]] = set()
    agree_total = 0
    probs_total: list[float] = []
    ids: list[str] = []
    pvals: list[float] = []
    nscored: list[int] = []
    tokens = words = 0
    tally = _Tally()
    for record_id, text in _texts(path, text_field, limit, on_record, tally):
        result = watermark.detect(text)
        pvals.append(result.p_value)
        ids.append(record_id)
        nscored.append(result.n_scored)
        tokens += result.n_scored
        words += result.n_tokens
        agree, probs = watermark.score(text, seen=seen)
        agree_total += agree
        probs_total.extend(probs)
    p, flagged = _flag_records(ids, pvals, nscored, fdr=fdr)
    corpus = DetectionResult(
        method=watermark.method,
        key_id=watermark.key_id,
        statistic=float(agree_total),
        p_value=poisson_binomial_sf(agree_total, probs_total),
        n_scored=len(probs_total),
        n_tokens=words,
        n_duplicates=tokens - len(probs_total),
        expected=float(np.sum(probs_total)) if probs_total else 0.0,
    )
    return ScanReport(
        records=tally.records,
        skipped=tally.skipped,
        tokens=tokens,
        corpus=corpus,
        fdr=fdr,
        flagged=flagged,
        p_values=p,
    )
