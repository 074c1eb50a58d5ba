"""Evaluation of scan results against labels, with the per-account baselines PRADA and SEAT.

Labels (``labels.parquet`` as the simulator writes it): ``account_id``, ``campaign_id`` (null for
legitimate accounts) and ``population``. Reported: account precision and recall, campaign purity
(share of each detected campaign's accounts from its majority true campaign), the false-positive
rate of every legitimate population, and, for comparison, the same precision/recall/FPR for

* **PRADA** (Juuti et al., 2019): per account, the minimum distances of each query to the
  account's earlier queries should be normally distributed for benign users; an account is flagged
  when the Shapiro-Wilk statistic W of those distances falls below ``prada_delta`` (0.9). Queries
  are represented by hashed word-count vectors of the prompt (prompts are text, not images).
* **SEAT** (Zhang et al., 2021): per account, count pairs of queries that are near-duplicates
  (cosine similarity of the same vectors above ``seat_similarity``, 0.9); an account is flagged
  when the count exceeds ``seat_pairs`` (the 99.5% quantile of the count over accounts whose
  count is below the median + 3 MAD, i.e. a threshold set from the bulk of the traffic).

Both baselines use at most ``per_account`` prompts per account (the same sample for both).
"""

from __future__ import annotations

import copyreg
import heapq
import pickle
import re
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
from scipy import stats

from distillguard._internal.timeutil import to_micros
from distillguard.errors import InputError
from distillguard.results import read_account_scores

if TYPE_CHECKING:
    from distillguard.records import Exchange

__all__ = [
    "CampaignTiming",
    "DetectorFigures",
    "EvaluationReport",
    "baseline_flags",
    "evaluate_scan",
    "exchanges_before_flagged",
    "time_ordered",
]

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class DetectorFigures:
    """Account-level figures of one detector on one labelled log."""

    detector: str
    flagged: int
    precision: float
    recall: float
    fpr_by_population: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "detector": self.detector,
            "flagged": self.flagged,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "fpr_by_population": {k: round(v, 5) for k, v in self.fpr_by_population.items()},
        }


@dataclass(frozen=True)
class EvaluationReport:
    """Our figures, the baselines' and campaign-level figures."""

    ours: DetectorFigures
    baselines: list[DetectorFigures]
    campaign_purity: dict[str, float]
    recall_by_campaign: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    time_to_flag: dict[str, CampaignTiming] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ours": self.ours.to_dict(),
            "baselines": [b.to_dict() for b in self.baselines],
            "campaign_purity": {k: round(v, 4) for k, v in self.campaign_purity.items()},
            "recall_by_campaign": {k: round(v, 4) for k, v in self.recall_by_campaign.items()},
            "time_to_flag": {k: v.to_dict() for k, v in self.time_to_flag.items()},
            **self.extra,
        }


@dataclass(frozen=True)
class CampaignTiming:
    """How long a true campaign ran before the online scorer flagged it.

    ``exchanges_before_flagged``: the campaign's exchanges the scorer had seen when it first
    flagged ``min(min_accounts, accounts)`` of the campaign's accounts (``None``: never during the
    replay); ``total_exchanges``: all of the campaign's exchanges; ``flagged_at_us``: the time of
    that exchange.
    """

    campaign: str
    accounts: int
    total_exchanges: int
    exchanges_before_flagged: int | None
    flagged_at_us: int | None

    @property
    def share_before_flagged(self) -> float | None:
        """``exchanges_before_flagged`` as a share of the campaign's exchanges."""
        if self.exchanges_before_flagged is None:
            return None
        return self.exchanges_before_flagged / max(self.total_exchanges, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        share = self.share_before_flagged
        return {
            "accounts": self.accounts,
            "total_exchanges": self.total_exchanges,
            "exchanges_before_flagged": self.exchanges_before_flagged,
            "share_before_flagged": None if share is None else round(share, 4),
            "flagged_at_us": self.flagged_at_us,
        }


#: Exchanges sorted in memory at a time by :func:`time_ordered` (about 0.5-1 GB of Python
#: objects); longer logs are sorted in runs of this size spilled to disk and merged.
SORT_CHUNK = 250_000
_BLOCK = 2_000  # exchanges per pickled block of a spilled run


def _proxy(d: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(d)


def _reduce_mappingproxy(m: MappingProxyType[str, Any]) -> tuple[Any, tuple[dict[str, Any]]]:
    return _proxy, (dict(m),)


def _spill(run: list[tuple[int, int, Exchange]], work: Path, index: int) -> Path:
    """Write one sorted run as consecutive pickled blocks (a private temporary file).

    Records keep their unknown fields in a read-only ``MappingProxyType``, which pickle does not
    handle by itself: it is written as the dict it wraps and wrapped again when read."""
    path = work / f"run-{index:05d}.pkl"
    with path.open("wb") as fh:
        pickler = pickle.Pickler(fh, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_mappingproxy}
        for lo in range(0, len(run), _BLOCK):
            pickler.dump(run[lo : lo + _BLOCK])
            pickler.clear_memo()
    return path


def _read_run(path: Path) -> Iterator[tuple[int, int, Exchange]]:
    """The exchanges of one spilled run, block by block (only files :func:`_spill` wrote)."""
    with path.open("rb") as fh:
        while True:
            try:
                block = pickle.load(fh)  # our own temporary file (see _spill)
            except EOFError:
                return
            yield from block


def time_ordered(
    batches: Iterable[list[Exchange]], *, work: Path, chunk: int = SORT_CHUNK
) -> Iterator[Exchange]:
    """The exchanges of ``batches`` in time order (ties: input order), in bounded memory.

    An external merge sort: runs of ``chunk`` exchanges are sorted in memory and, when there is
    more than one, spilled to ``work`` and merged (``heapq.merge`` holds one block of each run).
    Memory is O(chunk + runs x block) whatever the length of the log; a log of at most ``chunk``
    exchanges is sorted in memory without touching the disk. The spilled runs are deleted as the
    merge finishes (or when the generator is closed).
    """
    chunk = max(int(chunk), 1)
    run: list[tuple[int, int, Exchange]] = []
    paths: list[Path] = []
    seq = 0
    try:
        for batch in batches:
            for e in batch:
                run.append((to_micros(e.ts), seq, e))
                seq += 1
                if len(run) >= chunk:
                    run.sort(key=lambda r: (r[0], r[1]))
                    paths.append(_spill(run, work, len(paths)))
                    run = []
        run.sort(key=lambda r: (r[0], r[1]))
        if not paths:
            for _ts, _seq, e in run:
                yield e
            return
        if run:
            paths.append(_spill(run, work, len(paths)))
            run = []
        merged = heapq.merge(*(_read_run(p) for p in paths), key=lambda r: (r[0], r[1]))
        for _ts, _seq, e in merged:
            yield e
    finally:
        for p in paths:
            p.unlink(missing_ok=True)


def exchanges_before_flagged(
    log: Path,
    truth: dict[str, str | None],
    *,
    min_accounts: int = 3,
    config: Any = None,
    sort_chunk: int = SORT_CHUNK,
) -> dict[str, CampaignTiming]:
    """Replay ``log`` in time order through the online scorer and time each true campaign.

    ``truth`` maps account ids to their true campaign (``None``: legitimate). The scorer
    (:class:`~distillguard.monitor.online.OnlineScorer` with ``config``, an
    :class:`~distillguard.monitor.online.OnlineConfig`) re-scores updated accounts every
    ``partial_every`` exchanges and everything every ``max(rescore_min, accounts)``: that is the
    resolution of the figures. The log is streamed: sorted by time in runs of ``sort_chunk``
    exchanges spilled to a temporary folder and merged (:func:`time_ordered`), so the replay's
    memory is the online scorer's state (O(accounts)) plus one run, not the log. After each
    re-score only the campaign accounts it re-scored are checked (all of them after a full
    re-score, the partial re-score's accounts otherwise, and the updated account).
    """
    from distillguard.monitor.online import OnlineConfig, OnlineScorer
    from distillguard.records import read_log

    reader = read_log(log)
    scorer = OnlineScorer(config or OnlineConfig())
    for batch in reader.accounts():
        for account in batch:
            scorer.register_account(account)
    sizes: dict[str, int] = {}
    for c in truth.values():
        if c is not None:
            sizes[c] = sizes.get(c, 0) + 1
    seen: dict[str, int] = dict.fromkeys(sizes, 0)
    flagged: dict[str, set[str]] = {c: set() for c in sizes}
    done: dict[str, tuple[int, int]] = {}
    watched = {a for a, c in truth.items() if c is not None}  # campaign accounts not yet flagged
    full_seen, partial_seen = scorer.full_rescores, scorer.partial_rescores

    def check(a: str, ts_us: int) -> None:
        ca = truth.get(a)
        if ca is None or ca in done or a not in watched:
            return
        if scorer.score(a).flagged:
            watched.discard(a)
            flagged[ca].add(a)
            if len(flagged[ca]) >= min(min_accounts, sizes[ca]):
                done[ca] = (seen[ca], ts_us)

    with tempfile.TemporaryDirectory(prefix="dg-replay-") as tmp:
        for e in time_ordered(reader.exchanges(), work=Path(tmp), chunk=sort_chunk):
            scorer.update(e)  # the replay: one online update per exchange
            c = truth.get(e.account_id)
            if c is not None:
                seen[c] += 1
            if not watched:
                continue
            ts_us = to_micros(e.ts)
            if scorer.full_rescores != full_seen:
                full_seen, partial_seen = scorer.full_rescores, scorer.partial_rescores
                for a in sorted(watched):
                    check(a, ts_us)
            elif scorer.partial_rescores != partial_seen:
                partial_seen = scorer.partial_rescores
                for a in scorer.last_partial:
                    check(a, ts_us)
            check(e.account_id, ts_us)
    return {
        c: CampaignTiming(
            campaign=c,
            accounts=sizes[c],
            total_exchanges=seen.get(c, 0),
            exchanges_before_flagged=done[c][0] if c in done else None,
            flagged_at_us=done[c][1] if c in done else None,
        )
        for c in sorted(sizes)
    }


def _figures(
    name: str, flagged: np.ndarray, truth: np.ndarray, pops: np.ndarray
) -> DetectorFigures:
    tp = int(np.sum(flagged & truth))
    fp = int(np.sum(flagged & ~truth))
    fn = int(np.sum(~flagged & truth))
    fpr: dict[str, float] = {}
    for pop in sorted(set(pops[~truth].tolist())):
        m = (pops == pop) & ~truth
        fpr[str(pop)] = float(np.mean(flagged[m])) if m.any() else 0.0
    return DetectorFigures(
        detector=name,
        flagged=int(flagged.sum()),
        precision=tp / (tp + fp) if tp + fp else 1.0,
        recall=tp / (tp + fn) if tp + fn else 1.0,
        fpr_by_population=fpr,
    )


def _vectors(prompts: list[str], dim: int = 1024) -> np.ndarray:
    """L2-normalised hashed bag-of-words vectors (baselines only; small samples)."""
    mat = np.zeros((len(prompts), dim), dtype=np.float32)
    for i, p in enumerate(prompts):
        for w in _WORD.findall(p.lower()):
            mat[i, zlib.crc32(w.encode()) % dim] += 1.0
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    return np.asarray(mat / np.maximum(norms, 1e-9))


def baseline_flags(
    log: Path,
    account_ids: list[str],
    *,
    per_account: int = 32,
    prada_delta: float = 0.9,
    seat_similarity: float = 0.9,
    memory_limit: str = "4GB",
) -> dict[str, np.ndarray]:
    """Per-account PRADA and SEAT flags (aligned with ``account_ids``) on the log at ``log``.

    The first ``per_account`` prompts of every account are streamed from DuckDB in batches of
    accounts (its sort spills to a temporary folder beyond ``memory_limit``), so memory does not
    grow with the log: one batch of accounts' prompts and two numbers per account.
    """
    ex = log / "exchanges"
    src = f"'{ex}/*.parquet'" if ex.is_dir() else f"'{next(log.glob('exchanges.*'))}'"
    if not str(src).rstrip("'").endswith(".parquet"):
        raise InputError(
            "the baselines read Parquet logs only", hint="simulate with --format parquet"
        )
    pos = {a: i for i, a in enumerate(account_ids)}
    prada = np.zeros(len(account_ids), dtype=bool)
    seat_counts = np.zeros(len(account_ids))
    with tempfile.TemporaryDirectory(prefix="dg-baselines-") as tmp:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET temp_directory = '{tmp}'")
            con.execute("SET preserve_insertion_order = false")
            reader = con.sql(
                f"""SELECT account_id, list(prompt ORDER BY ts, exchange_id) AS prompts FROM (
                      SELECT account_id, ts, exchange_id, messages[-1].content AS prompt
                      FROM read_parquet({src}) QUALIFY row_number() OVER
                      (PARTITION BY account_id ORDER BY ts, exchange_id) <= {per_account})
                    GROUP BY account_id"""
            ).to_arrow_reader(4096)
            for rb in reader:  # a batch of accounts at a time
                for acct, prompts in zip(
                    rb.column(0).to_pylist(), rb.column(1).to_pylist(), strict=True
                ):
                    i = pos.get(acct)
                    if i is None or not prompts or len(prompts) < 3:
                        continue
                    prada[i], seat_counts[i] = _baseline_account(
                        prompts, prada_delta=prada_delta, seat_similarity=seat_similarity
                    )
        finally:
            con.close()
    med = float(np.median(seat_counts)) if len(seat_counts) else 0.0
    mad = float(np.median(np.abs(seat_counts - med))) * 1.4826 if len(seat_counts) else 0.0
    bulk = seat_counts[seat_counts <= med + 3 * max(mad, 1.0)]
    thr = float(np.quantile(bulk, 0.995)) if len(bulk) else 0.0
    return {"PRADA": prada, "SEAT": seat_counts > thr}


def _baseline_account(
    prompts: list[str], *, prada_delta: float, seat_similarity: float
) -> tuple[bool, float]:
    """PRADA's flag and SEAT's near-duplicate pair count of one account's prompts."""
    v = _vectors(prompts)
    sim = v @ v.T
    dist = 1.0 - sim
    mins = [float(np.min(dist[j, :j])) for j in range(1, len(prompts))]
    flag = False
    if len(mins) >= 3 and np.ptp(mins) > 0:
        flag = bool(stats.shapiro(mins).statistic < prada_delta)
    iu = np.triu_indices(len(prompts), k=1)
    return flag, float(np.sum(sim[iu] >= seat_similarity))


def evaluate_scan(
    results: Path,
    labels: Path,
    *,
    log: Path | None = None,
    baselines: bool = True,
    replay: bool = False,
) -> EvaluationReport:
    """Compare ``results/account_scores.parquet`` with ``labels``; baselines need ``log``, and
    so does ``replay`` (the exchanges each campaign got before the online scorer flagged it,
    :func:`exchanges_before_flagged`)."""
    scores = read_account_scores(results)  # ResultFormatError (an InputError) names the file
    if not labels.is_file():
        raise InputError(f"labels file {labels} does not exist")
    lab = pq.read_table(labels)
    for col in ("account_id", "campaign_id", "population"):
        if col not in lab.column_names:
            raise InputError(f"{labels} has no column {col!r}")
    lab_map = {
        a: (c, p)
        for a, c, p in zip(
            lab["account_id"].to_pylist(),
            lab["campaign_id"].to_pylist(),
            lab["population"].to_pylist(),
            strict=True,
        )
    }
    ids: list[str] = scores["account_id"].to_pylist()
    truth_c = [lab_map.get(a, (None, "unlabelled"))[0] for a in ids]
    truth = np.array([c is not None for c in truth_c])
    pops = np.array([lab_map.get(a, (None, "unlabelled"))[1] for a in ids])
    flagged = np.asarray(scores["flagged"].to_numpy(zero_copy_only=False), dtype=bool)
    ours = _figures("DistillGuard", flagged, truth, pops)
    purity: dict[str, float] = {}
    camp = scores["campaign_id"].to_pylist()
    for cid in sorted({c for c in camp if c is not None}):
        members = [truth_c[i] for i, c in enumerate(camp) if c == cid]
        values, counts = np.unique(
            np.array([m or "legitimate" for m in members]), return_counts=True
        )
        purity[cid] = float(counts.max() / counts.sum())
        del values
    rec: dict[str, float] = {}
    for tc in sorted({c for c in truth_c if c is not None}):
        m = np.array([c == tc for c in truth_c])
        rec[tc] = float(flagged[m].mean())
    base: list[DetectorFigures] = []
    if baselines and log is not None:
        for name, flags in baseline_flags(log, ids).items():
            base.append(_figures(name, flags, truth, pops))
    timing: dict[str, CampaignTiming] = {}
    if replay and log is not None:
        timing = exchanges_before_flagged(log, {a: c for a, (c, _p) in lab_map.items()})
    return EvaluationReport(
        ours=ours,
        baselines=base,
        campaign_purity=purity,
        recall_by_campaign=rec,
        time_to_flag=timing,
    )
