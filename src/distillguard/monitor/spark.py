"""The Spark engine of the scan (``--engine spark``): the same features with Spark DataFrames.

Everything per exchange runs in Spark: validation (required fields, duplicate ids, exchanges of
unknown accounts), the behaviour aggregates, the 5-minute-slot histograms, the content sample
(the ``per_account_sample`` exchanges with the smallest MD5 of their id, as the DuckDB engine
takes it), the elicitation classifiers (tokens in Spark SQL joined with the weight table), the
topic tags, the infrastructure keys and groups. What comes back to the driver is per account
(features, keys) or per sampled prompt (normalised words, MinHashed in NumPy); the link graph,
Leiden, the scores, the campaigns and the reasons are the code every engine shares
(:func:`~distillguard.monitor.features.score_features`). Same input, same results as DuckDB
(tested on the ``tiny`` scenario).

Needs the ``spark`` extra (``pip install 'distillguard[spark]'``, PySpark 4.3) and Java 17.
``master`` defaults to ``local[2]``; pass a session to run on a cluster.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from distillguard.errors import ConfigurationError, LogFormatError
from distillguard.monitor._load import (
    _ACC_REQUIRED,
    _EX_REQUIRED,
    PROMPT_HEAD,
    PROMPT_TAIL,
    LoadReport,
    _jsonl_to_parquet,
)
from distillguard.monitor.elicitation import HEAD_WORDS, TAIL_WORDS, elicitation_model
from distillguard.monitor.features import KEYS_SCHEMA, AccountFeatures, FeatureScan, score_features
from distillguard.monitor.infrastructure import MIN_KEY_SHARE
from distillguard.monitor.sweep import TOPIC_RULES, TOPICS, topic_divergence
from distillguard.monitor.templates import template_buckets
from distillguard.records import find_tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from distillguard.monitor._config import ScanConfig

__all__ = ["spark_features", "spark_scan", "spark_session"]

logger = logging.getLogger(__name__)

_OPTIONAL_ACC = ("org_id", "signup_channel", "payment_fingerprint")
_OPTIONAL_EX = {"asn": "bigint", "user_agent": "string", "client_fingerprint": "string"}


def spark_session(master: str = "local[2]") -> SparkSession:
    """A Spark session for the scan (UTC session time zone, no UI)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigurationError(
            "the Spark engine needs PySpark", hint="pip install 'distillguard[spark]'"
        ) from exc
    builder: Any = SparkSession.builder
    return (  # type: ignore[no-any-return]
        builder.master(master)
        .appName("distillguard-scan")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )


def _load(spark: SparkSession, log: Path, work: Path) -> tuple[DataFrame, DataFrame, LoadReport]:
    """Validated ``acc`` and ``ex`` DataFrames (see :mod:`distillguard.monitor._load`)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F  # noqa: N812

    report = LoadReport(source=str(log))
    acc_files, ex_files = find_tables(log)
    pre_validated = False
    if not all(p.name.endswith(".parquet") for p in (*acc_files, *ex_files)):
        acc_files, ex_files = find_tables(_jsonl_to_parquet(log, work, report))
        pre_validated = True
    acc_raw = spark.read.option("mergeSchema", "true").parquet(*map(str, acc_files))
    ex_raw = spark.read.option("mergeSchema", "true").parquet(*map(str, ex_files))
    for name in _ACC_REQUIRED:
        if name not in acc_raw.columns:
            raise LogFormatError(f"{log}: accounts table has no required column {name!r}")
    for name in _EX_REQUIRED:
        if name not in ex_raw.columns:
            raise LogFormatError(f"{log}: exchanges table has no required column {name!r}")
    acc_cols = [
        F.col(c).cast("string").alias(c)
        if c in acc_raw.columns
        else F.lit(None).cast("string").alias(c)
        for c in _OPTIONAL_ACC
    ]
    for c in _OPTIONAL_ACC:
        if c not in acc_raw.columns:
            report.missing_fields.append(f"accounts.{c}")
    acc = (
        acc_raw.where(F.col("account_id").isNotNull() & F.col("created_at").isNotNull())
        .select(
            F.col("account_id").cast("string").alias("account_id"),
            F.col("created_at").cast("timestamp").alias("created_at"),
            *acc_cols,
        )
        .withColumn(
            "rn", F.row_number().over(Window.partitionBy("account_id").orderBy("created_at"))
        )
        .where("rn = 1")
        .drop("rn")
        .cache()
    )
    ex_opt = []
    for c, t in _OPTIONAL_EX.items():
        if c in ex_raw.columns:
            ex_opt.append(F.col(c).cast(t).alias(c))
        else:
            report.missing_fields.append(f"exchanges.{c}")
            ex_opt.append(F.lit(None).cast(t).alias(c))
    ok = F.lit(True)
    for name in _EX_REQUIRED:
        ok = ok & F.col(name).isNotNull()
    ok = ok & (F.col("prompt_tokens") >= 0) & (F.col("completion_tokens") >= 0)
    um = F.filter("messages", lambda m: m["role"] == "user")
    last = F.element_at(um, -1)["content"]
    limit = PROMPT_HEAD + PROMPT_TAIL
    src = ex_raw.where(ok).select(
        F.col("exchange_id").cast("string").alias("exchange_id"),
        F.col("ts").cast("timestamp").alias("ts"),
        F.col("account_id").cast("string").alias("account_id"),
        F.col("ip").cast("string").alias("ip"),
        *ex_opt,
        F.col("prompt_tokens").cast("long").alias("prompt_tokens"),
        F.col("completion_tokens").cast("long").alias("completion_tokens"),
        F.size(um).alias("n_user"),
        (F.size(F.filter("messages", lambda m: m["role"] == "system")) > 0).alias("has_system"),
        F.when(F.size(um) == 0, F.lit(""))
        .when(F.length(last) <= limit, last)
        .otherwise(
            F.concat(
                F.substring(last, 1, PROMPT_HEAD),
                F.lit(" "),
                F.substring(last, -PROMPT_TAIL, PROMPT_TAIL),
            )
        )
        .alias("prompt"),
    )
    dedup = (
        src.withColumn("rn", F.row_number().over(Window.partitionBy("exchange_id").orderBy("ts")))
        .where("rn = 1")
        .drop("rn")
    )
    net = F.when(
        F.col("ip").contains(":"),
        F.concat(F.concat_ws(":", F.slice(F.split("ip", ":"), 1, 3)), F.lit("::/48")),
    ).otherwise(F.concat(F.concat_ws(".", F.slice(F.split("ip", r"\."), 1, 3)), F.lit(".0/24")))
    ex = (
        dedup.join(acc.select("account_id"), "account_id", "left_semi")
        .withColumn("net", net)
        .withColumn("ts_us", F.unix_micros("ts"))
        .cache()
    )
    acc_total, ex_total = acc_raw.count(), ex_raw.count()
    acc_ok, ex_ok = acc.count(), ex.count()
    if pre_validated:
        report.accounts_skipped += acc_total - acc_ok
        report.exchanges_skipped += ex_total - ex_ok
    else:
        report.accounts_read, report.exchanges_read = acc_total, ex_total
        report.accounts_skipped = acc_total - acc_ok
        report.exchanges_skipped = ex_total - ex_ok
    return acc, ex, report


def _arrow(df: DataFrame) -> pa.Table:
    return df.toArrow()


def _aligned(pos: dict[str, int], t: pa.Table, name: str, n: int, default: float) -> np.ndarray:
    out = np.full(n, default, dtype=np.float64)
    idx = np.fromiter((pos[a] for a in t["account_id"].to_pylist()), np.int64, t.num_rows)
    out[idx] = np.asarray(t[name].to_numpy(zero_copy_only=False), dtype=np.float64)
    return out


def spark_features(
    spark: SparkSession, log: Path, *, config: ScanConfig, work: Path
) -> tuple[AccountFeatures, pa.Table, LoadReport]:
    """The per-account features and graph keys of ``log``, computed with Spark."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F  # noqa: N812

    acc, ex, report = _load(spark, log, work)
    w_acct = Window.partitionBy("account_id").orderBy("ts_us")
    g = ex.withColumn("gap", F.col("ts_us") - F.lag("ts_us").over(w_acct))
    beh = _arrow(
        g.groupBy("account_id")
        .agg(
            F.count("*").alias("exchanges"),
            F.min("ts_us").alias("first_ts_us"),
            F.max("ts_us").alias("last_ts_us"),
            F.avg("gap").alias("gmean"),
            F.stddev_pop("gap").alias("gstd"),
            (F.sum("completion_tokens") / (F.sum("prompt_tokens") + F.count("*"))).alias(
                "completion_ratio"
            ),
            F.avg(F.when(F.col("n_user") <= 1, 1.0).otherwise(0.0)).alias("single_turn_share"),
            F.avg(F.when(F.col("has_system"), 1.0).otherwise(0.0)).alias("system_share"),
            F.countDistinct("asn").alias("distinct_asns"),
            F.countDistinct("net").alias("distinct_nets"),
        )
        .orderBy("account_id")
    )
    ids: list[str] = beh["account_id"].to_pylist()
    n = len(ids)
    pos = {a: i for i, a in enumerate(ids)}
    gmean = np.asarray(beh["gmean"].to_numpy(zero_copy_only=False), dtype=np.float64)
    gstd = np.asarray(beh["gstd"].to_numpy(zero_copy_only=False), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(np.isfinite(gmean) & (gmean != 0) & np.isfinite(gstd), gstd / gmean, 1.0)
    mins = _arrow(
        ex.groupBy("account_id", (F.floor(F.col("ts_us") / 300_000_000) % 12).alias("slot")).count()
    )
    hist = np.zeros((n, 12))
    if mins.num_rows:
        rows = np.fromiter(
            (pos[a] for a in mins["account_id"].to_pylist()), np.int64, mins.num_rows
        )
        hist[rows, np.asarray(mins["slot"].to_numpy(), dtype=np.int64)] = np.asarray(
            mins["count"].to_numpy(), dtype=np.float64
        )
    frac = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ment = -np.where(frac > 0, frac * np.log(frac), 0.0).sum(axis=1) / np.log(12)

    # -- content sample, elicitation, topics, template words
    sample = (
        ex.withColumn(
            "rn",
            F.row_number().over(Window.partitionBy("account_id").orderBy(F.md5("exchange_id"))),
        )
        .where(F.col("rn") <= int(config.per_account_sample))
        .select("account_id", "exchange_id", "prompt")
        .withColumn(
            "w0",
            F.filter(
                F.split(
                    F.regexp_replace(
                        F.regexp_replace(F.lower("prompt"), "[0-9]+", "0"), "[^a-z0-9]+", " "
                    ),
                    " ",
                ),
                lambda x: x != "",
            ),
        )
        .cache()
    )
    model = elicitation_model()
    wt = model.weight_table()
    weights = spark.createDataFrame(
        list(
            zip(
                wt["token"].to_pylist(),
                wt["w_cot"].to_pylist(),
                wt["w_grade"].to_pylist(),
                strict=True,
            )
        ),
        "token string, w_cot double, w_grade double",
    )
    cut = F.when(
        F.size("w0") > HEAD_WORDS + TAIL_WORDS,
        F.concat(F.slice("w0", 1, HEAD_WORDS), F.slice("w0", -TAIL_WORDS, TAIL_WORDS)),
    ).otherwise(F.col("w0"))
    toks = sample.select("account_id", "exchange_id", cut.alias("w")).select(
        "account_id",
        "exchange_id",
        F.explode(
            F.array_distinct(
                F.concat(
                    F.col("w"),
                    F.expr(
                        "CASE WHEN size(w) > 1 THEN transform(sequence(1, size(w) - 1), "
                        "i -> concat(w[i - 1], '_', w[i])) ELSE array() END"
                    ),
                )
            )
        ).alias("token"),
    )
    z = (
        toks.join(F.broadcast(weights), "token")
        .groupBy("exchange_id")
        .agg(F.sum("w_cot").alias("zc"), F.sum("w_grade").alias("zg"))
    )
    p = sample.join(z, "exchange_id", "left").select(
        "account_id",
        (1 / (1 + F.exp(-(F.lit(model.bias[0]) + F.coalesce("zc", F.lit(0.0)))))).alias("p_cot"),
        (1 / (1 + F.exp(-(F.lit(model.bias[1]) + F.coalesce("zg", F.lit(0.0)))))).alias("p_grade"),
    )
    eli = _arrow(
        p.groupBy("account_id").agg(
            F.count("*").alias("n_sample"),
            F.sum(F.when(F.col("p_cot") > 0.5, 1).otherwise(0)).alias("k_cot"),
            F.sum(F.when(F.col("p_grade") > 0.5, 1).otherwise(0)).alias("k_grade"),
            F.sum(F.when((F.col("p_cot") > 0.5) | (F.col("p_grade") > 0.5), 1).otherwise(0)).alias(
                "k_elicit"
            ),
        )
    )
    topic = F.lit(len(TOPICS) - 1)
    for idx in range(len(TOPIC_RULES) - 1, -1, -1):  # first match wins
        topic = F.when(F.lower("prompt").rlike(TOPIC_RULES[idx][1]), F.lit(idx)).otherwise(topic)
    tops = _arrow(sample.groupBy("account_id", topic.alias("topic")).count())
    tcounts = np.zeros((n, len(TOPICS)))
    if tops.num_rows:
        rows = np.fromiter(
            (pos[a] for a in tops["account_id"].to_pylist()), np.int64, tops.num_rows
        )
        tcounts[rows, np.asarray(tops["topic"].to_numpy(), dtype=np.int64)] = np.asarray(
            tops["count"].to_numpy(), dtype=np.float64
        )
    words = _arrow(sample.select("account_id", F.col("w0").alias("w")))
    doc_acct = np.fromiter(
        (pos[a] for a in words["account_id"].to_pylist()), np.int64, words.num_rows
    )
    buckets = template_buckets(words["w"], doc_acct, hasher=config.minhash)
    tpairs = buckets.pairs()

    # -- infrastructure
    cnt = ex.groupBy("account_id").agg(F.count("*").alias("n"))
    kinds = [
        ex.select("account_id", F.lit("net").alias("kind"), F.col("net").alias("value")),
        ex.where(F.col("asn").isNotNull()).select(
            "account_id", F.lit("asn").alias("kind"), F.col("asn").cast("string").alias("value")
        ),
        ex.where(F.col("client_fingerprint").isNotNull()).select(
            "account_id",
            F.lit("client_fingerprint").alias("kind"),
            F.col("client_fingerprint").alias("value"),
        ),
        ex.where(F.col("user_agent").isNotNull()).select(
            "account_id", F.lit("user_agent").alias("kind"), F.col("user_agent").alias("value")
        ),
    ]
    k = kinds[0]
    for other in kinds[1:]:
        k = k.unionByName(other)
    kc = k.groupBy("account_id", "kind", "value").count().join(cnt, "account_id")
    a = acc.join(cnt.select("account_id"), "account_id", "left_semi")
    window = F.floor(F.unix_micros("created_at") / 1e6 / 1800).cast("long")
    ikeys = (
        kc.where(F.col("count") >= MIN_KEY_SHARE * F.col("n"))
        .select("account_id", "kind", "value")
        .unionByName(
            a.where(F.col("payment_fingerprint").isNotNull()).select(
                "account_id",
                F.lit("payment").alias("kind"),
                F.col("payment_fingerprint").alias("value"),
            )
        )
        .unionByName(
            a.where(F.col("signup_channel").isNotNull()).select(
                "account_id",
                F.lit("signup_burst").alias("kind"),
                F.concat(F.col("signup_channel"), F.lit("@"), window.cast("string")).alias("value"),
            )
        )
    )
    ik = _arrow(ikeys)
    pay = (
        a.where(F.col("payment_fingerprint").isNotNull())
        .groupBy("payment_fingerprint")
        .agg(F.countDistinct(F.coalesce("org_id", "account_id")).alias("payment_group"))
    )
    burst = (
        a.where(F.col("signup_channel").isNotNull())
        .groupBy("signup_channel", window.alias("w"))
        .agg(F.count("*").alias("signup_burst"))
    )
    ifeat = _arrow(
        a.withColumn("w", window)
        .join(pay, "payment_fingerprint", "left")
        .join(burst, ["signup_channel", "w"], "left")
        .select(
            "account_id",
            "org_id",
            F.coalesce("payment_group", F.lit(1)).alias("payment_group"),
            F.coalesce("signup_burst", F.lit(1)).alias("signup_burst"),
        )
    )
    sample.unpersist()
    org_of: list[str | None] = [None] * n
    for acct, org in zip(ifeat["account_id"].to_pylist(), ifeat["org_id"].to_pylist(), strict=True):
        org_of[pos[acct]] = org
    ik_acct = np.fromiter((pos[x] for x in ik["account_id"].to_pylist()), np.int64, ik.num_rows)
    tkeys = np.asarray(tpairs["key"].to_numpy(), dtype=np.uint64)
    tacct = np.asarray(tpairs["acct"].to_numpy(), dtype=np.int64)
    keep = tkeys != 0
    keys = pa.table(
        {
            "acct": pa.array(np.concatenate([ik_acct, tacct[keep]]), pa.int64()),
            "kind": pa.array(ik["kind"].to_pylist() + ["template"] * int(keep.sum()), pa.string()),
            "gkey": pa.array(
                ik["value"].to_pylist() + [str(int(x)) for x in tkeys[keep]], pa.string()
            ),
        },
        schema=KEYS_SCHEMA,
    )
    exchanges = np.asarray(beh["exchanges"].to_numpy(), dtype=np.float64)
    features = AccountFeatures(
        account_id=ids,
        exchanges=exchanges,
        first_ts_us=np.asarray(beh["first_ts_us"].to_numpy(), dtype=np.int64),
        last_ts_us=np.asarray(beh["last_ts_us"].to_numpy(), dtype=np.int64),
        interarrival_cv=np.asarray(cv, dtype=np.float64),
        minute_entropy=np.asarray(ment, dtype=np.float64),
        single_turn_share=np.asarray(beh["single_turn_share"].to_numpy(), dtype=np.float64),
        system_share=np.asarray(beh["system_share"].to_numpy(), dtype=np.float64),
        completion_ratio=np.asarray(
            beh["completion_ratio"].to_numpy(zero_copy_only=False), dtype=np.float64
        ),
        minute_hist=hist,
        n_sample=_aligned(pos, eli, "n_sample", n, 0.0),
        k_elicit=_aligned(pos, eli, "k_elicit", n, 0.0),
        k_cot=_aligned(pos, eli, "k_cot", n, 0.0),
        k_grade=_aligned(pos, eli, "k_grade", n, 0.0),
        topic_divergence=topic_divergence(tcounts),
        payment_group=_aligned(pos, ifeat, "payment_group", n, 1.0),
        signup_burst=_aligned(pos, ifeat, "signup_burst", n, 1.0),
        org_id=org_of,
        distinct_asns=np.asarray(beh["distinct_asns"].to_numpy(), dtype=np.float64),
        distinct_nets=np.asarray(beh["distinct_nets"].to_numpy(), dtype=np.float64),
    )
    ex.unpersist()
    acc.unpersist()
    return features, keys, report


def spark_scan(
    log: Path,
    *,
    config: ScanConfig,
    spark: SparkSession | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[FeatureScan, LoadReport, dict[str, float]]:
    """Scan ``log`` with Spark features and the shared scoring; also the timings."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if on_stage:
        on_stage("starting Spark")
    session = spark or spark_session()
    timings["spark_start"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="dg-spark-") as tmp:
        t = time.perf_counter()
        if on_stage:
            on_stage("features with Spark")
        features, keys, report = spark_features(session, log, config=config, work=Path(tmp))
        timings["features"] = time.perf_counter() - t
    t = time.perf_counter()
    if on_stage:
        on_stage("link graph, Leiden and scoring")
    fs = score_features(features, keys, graph=config.graph, score=config.score)
    timings["graph_and_scoring"] = time.perf_counter() - t
    logger.info("Spark scan of %s: %d accounts", log, len(features))
    return fs, report, timings
