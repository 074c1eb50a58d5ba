"""The batch scan: log (or store) in, account scores and campaigns out.

:func:`scan` runs the whole pipeline on the DuckDB engine (the default) and writes the "Results
of a scan" of format v1 (``account_scores.parquet``, ``account_scores.csv``, ``campaigns.json``)
plus ``scan_summary.json`` (counts, unavailable signals, timings, parameters)::

    from pathlib import Path
    from distillguard.monitor import ScanConfig, scan

    result = scan(Path("sim-out"), out=Path("scan-out"), config=ScanConfig())
    print(result.flagged, len(result.campaigns))
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from distillguard.errors import ConfigurationError
from distillguard.monitor._config import Engine, ScanConfig, ScanDetail
from distillguard.monitor._load import LoadReport, content_sample, export_store, load_log
from distillguard.monitor._results import Campaign, write_results
from distillguard.monitor.behaviour import behaviour_features
from distillguard.monitor.elicitation import TOKEN_SQL, elicitation_model
from distillguard.monitor.features import AccountFeatures, score_features
from distillguard.monitor.infrastructure import infrastructure_features, infrastructure_keys
from distillguard.monitor.semantic import (
    TOKENS_SQL,
    SemanticHasher,
    learn_word_vectors,
    semantic_buckets,
)
from distillguard.monitor.sweep import sweep_features
from distillguard.monitor.templates import TemplateBuckets, template_buckets

__all__ = ["Engine", "ScanConfig", "ScanDetail", "ScanResult", "scan", "scan_connection"]

logger = logging.getLogger(__name__)

#: Optional fields and the signals that need them.
_SIGNAL_NEEDS = {
    "exchanges.asn": "infrastructure: shared ASN",
    "exchanges.client_fingerprint": "infrastructure: client fingerprints",
    "exchanges.user_agent": "infrastructure: user agents",
    "accounts.payment_fingerprint": "infrastructure: payment fingerprints",
    "accounts.signup_channel": "infrastructure: sign-up bursts",
    "accounts.org_id": "graph: organisation discount",
}


@dataclass(frozen=True)
class ScanResult:
    """What a scan found and wrote."""

    accounts: pa.Table
    campaigns: list[Campaign]
    load: LoadReport
    unavailable: list[str]
    timings: dict[str, float]
    out: Path | None
    #: The per-account features, scores, graph and keys behind ``accounts`` (DuckDB engine with
    #: ``ScanConfig.keep_detail``; ``None`` otherwise): what the combiner and evaluations read.
    detail: ScanDetail | None = None

    @property
    def flagged(self) -> int:
        """Number of flagged accounts."""
        return int(np.sum(self.accounts["flagged"].to_numpy(zero_copy_only=False)))

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (also written as ``scan_summary.json``)."""
        return {
            "source": self.load.source,
            "accounts_read": self.load.accounts_read,
            "accounts_skipped": self.load.accounts_skipped,
            "exchanges_read": self.load.exchanges_read,
            "exchanges_skipped": self.load.exchanges_skipped,
            "accounts_scored": self.accounts.num_rows,
            "accounts_flagged": self.flagged,
            "campaigns": len(self.campaigns),
            "unavailable_signals": self.unavailable,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def _col(t: pa.Table, name: str) -> np.ndarray:
    return np.asarray(t[name].to_numpy(zero_copy_only=False))


def _aligned(ids: list[str], table: pa.Table, name: str, default: float) -> np.ndarray:
    """Column ``name`` of ``table`` (keyed by ``account_id``) in the order of ``ids``."""
    pos = {a: i for i, a in enumerate(ids)}
    out = np.full(len(ids), default, dtype=np.float64)
    keys = table["account_id"].to_pylist()
    vals = _col(table, name).astype(np.float64)
    idx = np.fromiter((pos.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    ok = idx >= 0
    out[idx[ok]] = vals[ok]
    return out


def _unavailable(report: LoadReport) -> list[str]:
    """The signals the absent optional fields of ``report`` disable."""
    return sorted({_SIGNAL_NEEDS[f] for f in report.missing_fields if f in _SIGNAL_NEEDS})


def _semantic_pairs(
    con: duckdb.DuckDBPyConnection, position: dict[str, int], hasher: SemanticHasher | None
) -> pa.Table:
    """Distinct (``key``, ``acct``) rows of the semantic paraphrase buckets of table ``sample``
    (``position``: account id to index); empty when ``hasher`` is ``None``.

    The word vectors are learned from every sampled prompt, read in the order of the MD5 of the
    exchange id (then the id), so that the first ``train_docs`` of them do not depend on DuckDB's
    threads. Only the prompts that elicit reasoning or grading (table ``sample_elicit``, the
    elicitation classifiers' verdicts) are bucketed: a harvesting plan is what has training
    value, while everyday requests that many people phrase alike (recipes, e-mails, the cover
    traffic of a low-and-slow account) would link everybody to everybody."""
    empty = pa.table({"key": pa.array([], pa.uint64()), "acct": pa.array([], pa.int64())})
    if hasher is None:
        return empty
    rows = _fetch(
        con,
        f"""SELECT s.account_id, {TOKENS_SQL.format(col="s.prompt")} AS words,
                   e.cot OR e.grade AS elicit
            FROM sample s JOIN sample_elicit e USING (exchange_id)
            ORDER BY md5(s.exchange_id), s.exchange_id""",
    )
    if rows.num_rows == 0:
        return empty
    toks = rows["words"].combine_chunks()
    vectors = learn_word_vectors(toks, hasher)
    chosen = np.asarray(rows["elicit"].to_numpy(zero_copy_only=False), dtype=bool)
    if not hasher.only_elicit:
        chosen = np.ones(rows.num_rows, dtype=bool)
    if not chosen.any():
        return empty
    take = pa.array(np.flatnonzero(chosen))
    keys = semantic_buckets(toks.take(take), vectors=vectors, hasher=hasher)
    accts = rows["account_id"].take(take).to_pylist()
    doc_acct = np.fromiter((position[a] for a in accts), dtype=np.int64, count=len(accts))
    return TemplateBuckets(doc_account=doc_acct, keys=keys).pairs().select(["key", "acct"])


def scan(
    log: Path | None = None,
    *,
    store_url: str | None = None,
    out: Path | None = None,
    config: ScanConfig | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ScanResult:
    """Scan a log folder (or a store) for distillation campaigns and write the results to ``out``.

    Raises:
        ConfigurationError: neither or both of ``log`` and ``store_url`` were given, or the
            semantic buckets were asked of the Spark engine (not implemented there).
        InputError: the log cannot be read.
    """
    config = config or ScanConfig()
    if (log is None) == (store_url is None):
        raise ConfigurationError("give a log folder or a store URL (exactly one)")
    if config.engine == "spark" and config.semantic is not None:
        raise ConfigurationError("the semantic paraphrase buckets need the DuckDB engine")
    work = Path(tempfile.mkdtemp(prefix="dg-scan-"))
    try:
        if store_url is not None:
            if on_stage:
                on_stage("exporting the store")
            log = export_store(store_url, work)
        assert log is not None
        if config.engine == "spark":
            from distillguard.monitor.spark import spark_scan

            fs, report, timings = spark_scan(log, config=config, on_stage=on_stage)
            spark_result = ScanResult(
                accounts=fs.accounts,
                campaigns=fs.campaigns,
                load=report,
                unavailable=_unavailable(report),
                timings=timings,
                out=out,
            )
            if out is not None:
                write_results(spark_result, out)
            return spark_result
        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{config.memory_limit}'")
        con.execute(f"SET temp_directory = '{work / 'duckdb'}'")
        con.execute("SET preserve_insertion_order = false")
        if config.threads:
            con.execute(f"SET threads = {int(config.threads)}")
        t0 = time.perf_counter()
        if on_stage:
            on_stage("loading and validating")
        report = load_log(con, log, work=work)
        timings = {"load": time.perf_counter() - t0}
        result = scan_connection(con, report, config=config, on_stage=on_stage, timings=timings)
        con.close()
        if out is not None:
            write_results(result, out)
        return ScanResult(
            accounts=result.accounts,
            campaigns=result.campaigns,
            load=report,
            unavailable=result.unavailable,
            timings=result.timings,
            out=out,
            detail=result.detail,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scan_connection(
    con: duckdb.DuckDBPyConnection,
    report: LoadReport,
    *,
    config: ScanConfig,
    on_stage: Callable[[str], None] | None = None,
    timings: dict[str, float] | None = None,
) -> ScanResult:
    """Run the signals, graph and scoring on the ``acc``/``ex`` tables of ``con``."""
    timings = dict(timings or {})

    def stage(name: str) -> None:
        if on_stage:
            on_stage(name)

    t = time.perf_counter()
    stage("behaviour features")
    beh = behaviour_features(con)
    ids: list[str] = beh["account_id"].to_pylist()
    n = len(ids)
    timings["behaviour"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("content sample")
    content_sample(con, report, per_account=config.per_account_sample)
    stage("elicitation classifiers")
    model = elicitation_model()
    con.register("_w", model.weight_table())
    tok = TOKEN_SQL.format(source="sample")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE sample_elicit AS
        WITH toks AS (SELECT account_id, exchange_id, unnest({tok.split("FROM", 1)[0]}) AS token
                      FROM {tok.split("FROM", 1)[1]}),
        s AS (SELECT t.account_id, t.exchange_id,
                     sum(CAST(round(1e12 * w.w_cot) AS BIGINT)) / 1e12 AS zc,
                     sum(CAST(round(1e12 * w.w_grade) AS BIGINT)) / 1e12 AS zg
              FROM toks t JOIN _w w USING (token) GROUP BY ALL)
        SELECT sample.account_id, sample.exchange_id,
               1 / (1 + exp(-({model.bias[0]} + coalesce(zc, 0)))) > 0.5 AS cot,
               1 / (1 + exp(-({model.bias[1]} + coalesce(zg, 0)))) > 0.5 AS grade
        FROM sample LEFT JOIN s USING (exchange_id)
        """
    )
    eli = _fetch(
        con,
        """SELECT account_id, count(*) AS n_sample,
                  count(*) FILTER (WHERE cot) AS k_cot,
                  count(*) FILTER (WHERE grade) AS k_grade,
                  count(*) FILTER (WHERE cot OR grade) AS k_elicit
           FROM sample_elicit GROUP BY account_id""",
    )
    con.unregister("_w")
    timings["elicitation"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("capability sweeps")
    swp = sweep_features(con, "sample")
    timings["sweep"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("template MinHash LSH")
    words = _fetch(
        con,
        """SELECT account_id, list_filter(string_split(regexp_replace(regexp_replace(
               lower(prompt), '[0-9]+', '0', 'g'), '[^a-z0-9]+', ' ', 'g'), ' '),
               lambda x: x <> '') AS w FROM sample""",
    )
    idx_of = pa.table(
        {"account_id": pa.array(ids, pa.string()), "acct": pa.array(np.arange(n, dtype=np.int64))}
    )
    con.register("_idx", idx_of)
    wa = words["account_id"].to_pylist()
    pos = {a: i for i, a in enumerate(ids)}
    doc_acct = np.fromiter((pos[a] for a in wa), dtype=np.int64, count=len(wa))
    buckets = template_buckets(words["w"], doc_acct, hasher=config.minhash)
    tpairs = buckets.pairs()
    con.register("_tpairs", tpairs)
    timings["templates"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("semantic paraphrase buckets")
    spairs = _semantic_pairs(con, pos, config.semantic)
    con.register("_spairs", spairs)
    timings["semantic"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("infrastructure")
    ikeys = infrastructure_keys(con)
    ifeat = infrastructure_features(con)
    con.register("_ikeys", ikeys)
    keys = _fetch(
        con,
        """SELECT i.acct, k.kind, k.value AS gkey FROM _ikeys k JOIN _idx i USING (account_id)
           UNION ALL
           SELECT acct, 'template', CAST(key AS VARCHAR) FROM _tpairs WHERE key <> 0
           UNION ALL
           SELECT acct, 'semantic', CAST(key AS VARCHAR) FROM _spairs WHERE key <> 0""",
    )
    con.unregister("_ikeys")
    con.unregister("_tpairs")
    con.unregister("_spairs")
    orgs = _fetch(
        con, "SELECT i.acct, a.org_id FROM _idx i JOIN acc a USING (account_id) ORDER BY i.acct"
    )
    org_of: list[str | None] = [None] * n
    for a_i, o in zip(_col(orgs, "acct"), orgs["org_id"].to_pylist(), strict=True):
        org_of[int(a_i)] = o
    mins = _fetch(
        con,
        """SELECT i.acct, minute(e.ts AT TIME ZONE 'UTC') // 5 AS slot, count(*) AS c
           FROM ex e JOIN _idx i USING (account_id) GROUP BY ALL""",
    )
    con.unregister("_idx")
    minute_hist = np.zeros((n, 12))
    minute_hist[_col(mins, "acct").astype(np.int64), _col(mins, "slot").astype(np.int64)] = _col(
        mins, "c"
    )
    timings["infrastructure"] = time.perf_counter() - t

    features = AccountFeatures(
        account_id=ids,
        exchanges=_col(beh, "exchanges").astype(np.float64),
        first_ts_us=_col(beh, "first_ts_us").astype(np.int64),
        last_ts_us=_col(beh, "last_ts_us").astype(np.int64),
        interarrival_cv=_col(beh, "interarrival_cv").astype(np.float64),
        minute_entropy=_col(beh, "minute_entropy").astype(np.float64),
        single_turn_share=_col(beh, "single_turn_share").astype(np.float64),
        system_share=_col(beh, "system_share").astype(np.float64),
        completion_ratio=_col(beh, "completion_ratio").astype(np.float64),
        minute_hist=minute_hist,
        n_sample=_aligned(ids, eli, "n_sample", 0.0),
        k_elicit=_aligned(ids, eli, "k_elicit", 0.0),
        k_cot=_aligned(ids, eli, "k_cot", 0.0),
        k_grade=_aligned(ids, eli, "k_grade", 0.0),
        topic_divergence=_aligned(ids, swp, "topic_divergence", 0.0),
        payment_group=_aligned(ids, ifeat, "payment_group", 1.0),
        signup_burst=_aligned(ids, ifeat, "signup_burst", 1.0),
        org_id=org_of,
        distinct_asns=_col(beh, "distinct_asns").astype(np.float64),
        distinct_nets=_col(beh, "distinct_nets").astype(np.float64),
    )
    t = time.perf_counter()
    stage("link graph, Leiden and scoring")
    fs = score_features(features, keys, graph=config.graph, score=config.score, con=con)
    if config.model is not None:
        from distillguard.monitor.combiner import Combiner, apply_combiner

        stage("fitted combiner")
        combiner = Combiner.load(config.model)
        fs = apply_combiner(
            ScanDetail(features=features, scored=fs, keys=keys), combiner, config.score
        )
    timings["graph_and_scoring"] = time.perf_counter() - t
    unavailable = _unavailable(report)
    return ScanResult(
        accounts=fs.accounts,
        campaigns=fs.campaigns,
        load=report,
        unavailable=unavailable,
        timings=timings,
        out=None,
        detail=ScanDetail(features=features, scored=fs, keys=keys) if config.keep_detail else None,
    )
