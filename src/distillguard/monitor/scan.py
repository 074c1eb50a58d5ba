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

import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from distillguard.errors import ConfigurationError
from distillguard.monitor._load import LoadReport, export_store, load_log
from distillguard.monitor._results import Campaign, write_results
from distillguard.monitor.behaviour import behaviour_features
from distillguard.monitor.coordination import community_synchrony
from distillguard.monitor.elicitation import TOKEN_SQL, elicitation_model
from distillguard.monitor.graph import GraphParams, build_graph
from distillguard.monitor.infrastructure import infrastructure_features, infrastructure_keys
from distillguard.monitor.scoring import ScoreParams, binomial_evidence, ramp, robust_z
from distillguard.monitor.sweep import sweep_features
from distillguard.monitor.templates import MinHasher, template_buckets

__all__ = ["Engine", "ScanConfig", "ScanResult", "scan", "scan_connection"]

logger = logging.getLogger(__name__)

Engine = Literal["duckdb", "spark"]

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
class ScanConfig:
    """Parameters of a scan (every field has a documented default)."""

    engine: Engine = "duckdb"
    per_account_sample: int = 64
    minhash: MinHasher = field(default_factory=MinHasher)
    graph: GraphParams = field(default_factory=GraphParams)
    score: ScoreParams = field(default_factory=ScoreParams)
    memory_limit: str = "8GB"
    threads: int | None = None


@dataclass(frozen=True)
class ScanResult:
    """What a scan found and wrote."""

    accounts: pa.Table
    campaigns: list[Campaign]
    load: LoadReport
    unavailable: list[str]
    timings: dict[str, float]
    out: Path | None

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
        ConfigurationError: neither or both of ``log`` and ``store_url`` were given.
        InputError: the log cannot be read.
    """
    config = config or ScanConfig()
    if (log is None) == (store_url is None):
        raise ConfigurationError("give a log folder or a store URL (exactly one)")
    if config.engine == "spark":
        raise ConfigurationError(
            "the Spark engine is not available in this version",
            hint="use --engine duckdb (the default)",
        )
    work = Path(tempfile.mkdtemp(prefix="dg-scan-"))
    try:
        if store_url is not None:
            if on_stage:
                on_stage("exporting the store")
            log = export_store(store_url, work)
        assert log is not None
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
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE sample AS
        SELECT account_id, exchange_id, prompt FROM ex
        QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY hash(exchange_id))
                <= {int(config.per_account_sample)}"""
    )
    stage("elicitation classifiers")
    model = elicitation_model()
    con.register("_w", model.weight_table())
    tok = TOKEN_SQL.format(source="sample")
    eli = _fetch(
        con,
        f"""
        WITH toks AS (SELECT account_id, exchange_id, unnest({tok.split("FROM", 1)[0]}) AS token
                      FROM {tok.split("FROM", 1)[1]}),
        s AS (SELECT t.account_id, t.exchange_id, sum(w.w_cot) AS zc, sum(w.w_grade) AS zg
              FROM toks t JOIN _w w USING (token) GROUP BY ALL),
        p AS (SELECT sample.account_id,
                     1 / (1 + exp(-({model.bias[0]} + coalesce(zc, 0)))) AS p_cot,
                     1 / (1 + exp(-({model.bias[1]} + coalesce(zg, 0)))) AS p_grade
              FROM sample LEFT JOIN s USING (exchange_id))
        SELECT account_id, count(*) AS n_sample,
               count(*) FILTER (WHERE p_cot > 0.5) AS k_cot,
               count(*) FILTER (WHERE p_grade > 0.5) AS k_grade,
               count(*) FILTER (WHERE p_cot > 0.5 OR p_grade > 0.5) AS k_elicit
        FROM p GROUP BY account_id
        """,
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
    stage("infrastructure")
    ikeys = infrastructure_keys(con)
    ifeat = infrastructure_features(con)
    con.register("_ikeys", ikeys)
    keys = _fetch(
        con,
        """SELECT i.acct, k.kind, k.value AS gkey FROM _ikeys k JOIN _idx i USING (account_id)
           UNION ALL
           SELECT acct, 'template', CAST(key AS VARCHAR) FROM _tpairs WHERE key <> 0""",
    )
    con.unregister("_ikeys")
    con.unregister("_tpairs")
    orgs = _fetch(con, "SELECT i.acct, a.org_id FROM _idx i JOIN acc a USING (account_id)")
    org_codes = np.full(n, -1, dtype=np.int64)
    org_vals = orgs["org_id"].to_pylist()
    org_map: dict[str, int] = {}
    for a_i, o in zip(_col(orgs, "acct"), org_vals, strict=True):  # one per account
        if o is not None:
            org_codes[a_i] = org_map.setdefault(o, len(org_map))
    timings["infrastructure"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("link graph and Leiden")
    graph = build_graph(con, keys, org_codes, n_accounts=n, params=config.graph)
    timings["graph"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("scoring")
    sp = config.score
    exchanges = _col(beh, "exchanges").astype(np.float64)
    enough = exchanges >= sp.min_exchanges
    # -- elicitation: exact binomial test against the log's base rate
    k_el = _aligned(ids, eli, "k_elicit", 0.0)
    n_s = _aligned(ids, eli, "n_sample", 0.0)
    k_cot = _aligned(ids, eli, "k_cot", 0.0)
    k_gr = _aligned(ids, eli, "k_grade", 0.0)
    share = np.where(n_s > 0, k_el / np.maximum(n_s, 1), 0.0)
    ref = np.sort(share[enough]) if enough.any() else np.sort(share)
    low = ref[: max(1, int(0.75 * len(ref)))] if len(ref) else np.zeros(1)
    p0 = float(max(sp.p0_floor, float(np.mean(low))))
    p_el = binomial_evidence(k_el, n_s, p0)
    s_el = ramp(
        -np.log10(np.maximum(p_el, 1e-300)),
        -np.log10(sp.alpha_elicitation),
        -np.log10(sp.alpha_elicitation) + 6,
    ) * ramp(share, 2 * p0, 0.3)
    # -- behaviour
    z_cv = -robust_z(_col(beh, "interarrival_cv").astype(np.float64), mask=enough)
    z_me = -robust_z(_col(beh, "minute_entropy").astype(np.float64), mask=enough)
    s_reg = np.where(enough, ramp(np.maximum(z_cv, z_me), sp.z_fire, 2 * sp.z_fire), 0.0)
    harvest = _col(beh, "single_turn_share") * (1 - _col(beh, "system_share"))
    z_h = robust_z(
        harvest.astype(np.float64) * np.log1p(_col(beh, "completion_ratio")), mask=enough
    )
    s_harv = np.where(enough, ramp(z_h, sp.z_fire, 2 * sp.z_fire), 0.0)
    # -- sweep
    z_sw = robust_z(_aligned(ids, swp, "topic_divergence", 0.0), mask=enough)
    s_sw = np.where(enough, ramp(z_sw, sp.z_fire, 2 * sp.z_fire), 0.0)
    # -- infrastructure
    pay = _aligned(ids, ifeat, "payment_group", 1.0)
    s_pay = ramp(pay, 2.5, 8.0)
    burst = _aligned(ids, ifeat, "signup_burst", 1.0)
    z_b = robust_z(np.log1p(burst))
    s_burst = ramp(z_b, sp.z_fire, 2 * sp.z_fire) * ramp(burst, 4.0, 10.0)
    w = sp.weights
    parts = {
        "elicitation": s_el,
        "payment": s_pay,
        "signup_burst": s_burst,
        "regularity": s_reg,
        "harvest": s_harv,
        "sweep": s_sw,
    }
    own = 1.0 - np.prod([1.0 - w[k] * v for k, v in parts.items()], axis=0)
    # -- communities
    comm = graph.community
    _, cinv, csize = np.unique(comm, return_inverse=True, return_counts=True)
    size = csize[cinv].astype(np.float64)
    membership = pa.table(
        {"account_id": pa.array(ids, pa.string()), "community": pa.array(cinv.astype(np.int64))}
    )
    sync = community_synchrony(con, membership)
    sync_p = np.ones(len(csize))
    sync_p[_col(sync, "community").astype(np.int64)] = _col(sync, "sync_p")
    big = size >= sp.min_campaign
    # pooled community evidence: the community's requests tested together
    ck = np.bincount(cinv, weights=k_el)
    cn = np.bincount(cinv, weights=n_s)
    cshare = ck / np.maximum(cn, 1)
    cp = binomial_evidence(ck, cn, p0)
    c_el = ramp(-np.log10(np.maximum(cp, 1e-300)), 6.0, 20.0) * ramp(cshare, 2 * p0, 0.2)

    def frac(v: np.ndarray) -> np.ndarray:
        return np.asarray(ramp(np.bincount(cinv, weights=(v > 0).astype(float)) / csize, 0.1, 0.5))

    c_parts = {
        "elicitation": c_el,
        "payment": frac(s_pay),
        "signup_burst": frac(s_burst),
        "regularity": frac(s_reg),
        "harvest": frac(s_harv),
        "sweep": frac(s_sw),
    }
    c_ev = 1.0 - np.prod([1.0 - w[k] * v for k, v in c_parts.items()], axis=0)
    c_ev = 1.0 - (1.0 - c_ev) * (1.0 - 0.3 * ramp(-np.log10(np.maximum(sync_p, 1e-300)), 6, 30))
    c_score = np.where(csize >= sp.min_campaign, c_ev * (1 - 1 / np.sqrt(csize)), 0.0)
    # an account gets its community's score in full when it shares the community's evidence
    affinity = 0.6 + 0.4 * np.minimum(
        1.0,
        np.maximum(
            share / np.maximum(cshare[cinv], 1e-9) * (cshare[cinv] > 2 * p0),
            np.maximum.reduce(
                [(v > 0).astype(float) for v in (s_pay, s_burst, s_reg, s_harv, s_sw)]
            ),
        ),
    )
    community_score = c_score[cinv] * affinity
    score = 1 - (1 - sp.own_weight * own) * (1 - community_score)
    flagged = score >= sp.flag_threshold
    timings["scoring"] = time.perf_counter() - t

    # -- campaigns: communities with at least min_campaign flagged accounts
    camp_of = np.full(n, -1, dtype=np.int64)
    campaigns: list[Campaign] = []
    first = _col(beh, "first_ts_us").astype(np.int64)
    last = _col(beh, "last_ts_us").astype(np.int64)
    flagged_by_c = np.bincount(cinv, weights=flagged.astype(np.float64), minlength=len(csize))
    for c in np.flatnonzero(flagged_by_c >= sp.min_campaign):  # one iteration per campaign
        members = np.flatnonzero((cinv == c) & flagged)
        accounts = sorted(ids[i] for i in members)
        cid = "camp-" + hashlib.sha256(accounts[0].encode()).hexdigest()[:10]
        camp_of[members] = len(campaigns)
        signals = {
            "accounts": len(members),
            "community_size": int(csize[c]),
            "elicitation_share": round(float(k_el[members].sum() / max(n_s[members].sum(), 1)), 4),
            "cot_share": round(float(k_cot[members].sum() / max(n_s[members].sum(), 1)), 4),
            "grading_share": round(float(k_gr[members].sum() / max(n_s[members].sum(), 1)), 4),
            "elicitation_base_rate": round(p0, 4),
            "shared_payment_accounts": int((pay[members] >= 3).sum()),
            "signup_burst_accounts": int((s_burst[members] > 0).sum()),
            "regular_timing_accounts": int((s_reg[members] > 0).sum()),
            "harvest_behaviour_accounts": int((s_harv[members] > 0).sum()),
            "topic_sweep_accounts": int((s_sw[members] > 0).sum()),
            "synchrony_p": float(sync_p[c]),
            "mean_own_score": round(float(own[members].mean()), 4),
        }
        campaigns.append(
            Campaign(
                campaign_id=cid,
                accounts=accounts,
                score=round(float(score[members].mean()), 4),
                first_seen_us=int(first[members].min()),
                last_seen_us=int(last[members].max()),
                exchanges=int(exchanges[members].sum()),
                signals=signals,
            )
        )
    # -- reasons
    reasons: list[list[str]] = []
    for i in range(n):  # one per account, on small scalars only
        r: list[str] = []
        if s_el[i] > 0:
            r.append(
                f"elicits reasoning/grading in {k_el[i]:.0f}/{n_s[i]:.0f} requests "
                f"(base {p0:.0%}, p={p_el[i]:.1e})"
            )
        if s_pay[i] > 0:
            r.append(f"payment instrument shared by {pay[i]:.0f} accounts")
        if s_burst[i] > 0:
            r.append(f"signed up in a burst of {burst[i]:.0f} accounts")
        if s_reg[i] > 0:
            r.append("machine-regular timing")
        if s_harv[i] > 0:
            r.append("harvesting pattern: single-turn, long completions")
        if s_sw[i] > 0:
            r.append("topic mix far from the natural mix (capability sweep)")
        if camp_of[i] >= 0:
            cm = campaigns[camp_of[i]]
            r.append(f"linked to campaign {cm.campaign_id} ({len(cm.accounts)} accounts)")
        elif big[i] and community_score[i] > 0.1:
            r.append(f"in a linked group of {size[i]:.0f} accounts")
        reasons.append(r)
    accounts = pa.table(
        {
            "account_id": pa.array(ids, pa.string()),
            "score": pa.array(np.round(score, 6), pa.float64()),
            "flagged": pa.array(flagged, pa.bool_()),
            "campaign_id": pa.array(
                [campaigns[c].campaign_id if c >= 0 else None for c in camp_of], pa.string()
            ),
            "reasons": pa.array(reasons, pa.list_(pa.string())),
            "own_score": pa.array(np.round(own, 6), pa.float64()),
            "community_score": pa.array(np.round(community_score, 6), pa.float64()),
            "community_size": pa.array(size.astype(np.int64), pa.int64()),
            "exchanges": pa.array(exchanges.astype(np.int64), pa.int64()),
        }
    )
    unavailable = sorted({_SIGNAL_NEEDS[f] for f in report.missing_fields if f in _SIGNAL_NEEDS})
    return ScanResult(
        accounts=accounts,
        campaigns=campaigns,
        load=report,
        unavailable=unavailable,
        timings=timings,
        out=None,
    )
