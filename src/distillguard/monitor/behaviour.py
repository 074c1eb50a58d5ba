"""Signal: behaviour of each account (volume, tokens, timing, sessions, output harvesting).

**What it catches.** Harvesting scripts behave like batch jobs: single-turn requests with no
follow-up (``single_turn_share``), long completions for short prompts (``completion_ratio``),
clockwork inter-arrival times (low coefficient of variation, ``interarrival_cv``), activity spread
evenly over the hours of the day (high ``hour_entropy``: no sleep) and packed in the same minutes
of each hour (low ``minute_entropy``: cron waves).

**When it fires on legitimate traffic.** Enterprise batch jobs (regular, single-turn, no system
clock), evaluation runners (bursts), chat applications (all-day traffic), resellers (volume). On
its own behaviour is never enough to flag; it adds weight to accounts already linked to others.

**Needs content:** no (timestamps, token counts and the number of user turns only).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

__all__ = ["BEHAVIOUR_COLUMNS", "behaviour_features"]

#: Per-account columns this signal produces.
BEHAVIOUR_COLUMNS = (
    "exchanges",
    "active_days",
    "per_day",
    "mean_prompt_tokens",
    "mean_completion_tokens",
    "completion_ratio",
    "single_turn_share",
    "system_share",
    "error_share",
    "hour_entropy",
    "minute_entropy",
    "interarrival_cv",
    "burstiness",
    "sessions",
    "per_session",
    "first_ts_us",
    "last_ts_us",
    "distinct_asns",
    "distinct_nets",
)

_SQL = """
WITH g AS (
  SELECT account_id, ts_us,
         ts_us - lag(ts_us) OVER (PARTITION BY account_id ORDER BY ts_us) AS gap
  FROM ex
), gaps AS (
  SELECT account_id,
         avg(gap) AS gmean,
         -- exact integer moments: the result does not depend on the summation order of
         -- DuckDB's threads (stddev_pop's floating-point combine does)
         sqrt(greatest(0.0, CAST(sum(CAST(gap AS HUGEINT) * gap) AS DOUBLE) / count(gap)
                            - pow(CAST(sum(gap) AS DOUBLE) / count(gap), 2))) AS gstd,
         1 + count(*) FILTER (WHERE gap > 1800000000) AS sessions
  FROM g GROUP BY account_id
), hours AS (
  SELECT account_id, hour(ts AT TIME ZONE 'UTC') AS h, count(*) AS c FROM ex GROUP BY ALL
), hent AS (
  SELECT account_id, -sum(c / t * ln(c / t) ORDER BY h) / ln(24) AS hour_entropy
  FROM (SELECT *, sum(c) OVER (PARTITION BY account_id) AS t FROM hours) GROUP BY account_id
), mins AS (
  SELECT account_id, minute(ts AT TIME ZONE 'UTC') // 5 AS m, count(*) AS c FROM ex GROUP BY ALL
), ment AS (
  SELECT account_id, -sum(c / t * ln(c / t) ORDER BY m) / ln(12) AS minute_entropy
  FROM (SELECT *, sum(c) OVER (PARTITION BY account_id) AS t FROM mins) GROUP BY account_id
), base AS (
  SELECT account_id, count(*) AS exchanges,
         count(DISTINCT CAST(ts AT TIME ZONE 'UTC' AS DATE)) AS active_days,
         avg(prompt_tokens) AS mean_prompt_tokens,
         avg(completion_tokens) AS mean_completion_tokens,
         sum(completion_tokens) / (sum(prompt_tokens) + count(*)) AS completion_ratio,
         avg(CASE WHEN n_user <= 1 THEN 1.0 ELSE 0.0 END) AS single_turn_share,
         avg(CASE WHEN has_system THEN 1.0 ELSE 0.0 END) AS system_share,
         avg(CASE WHEN status >= 400 THEN 1.0 ELSE 0.0 END) AS error_share,
         min(ts_us) AS first_ts_us, max(ts_us) AS last_ts_us,
         count(DISTINCT asn) AS distinct_asns, count(DISTINCT net) AS distinct_nets
  FROM ex GROUP BY account_id
)
SELECT b.account_id, b.exchanges, b.active_days,
       b.exchanges / greatest(b.active_days, 1) AS per_day,
       b.mean_prompt_tokens, b.mean_completion_tokens, b.completion_ratio,
       b.single_turn_share, b.system_share, b.error_share,
       coalesce(h.hour_entropy, 0) AS hour_entropy,
       coalesce(m.minute_entropy, 0) AS minute_entropy,
       coalesce(gp.gstd / nullif(gp.gmean, 0), 1.0) AS interarrival_cv,
       coalesce((gp.gstd - gp.gmean) / nullif(gp.gstd + gp.gmean, 0), 0) AS burstiness,
       gp.sessions, b.exchanges / gp.sessions AS per_session,
       b.first_ts_us, b.last_ts_us, b.distinct_asns, b.distinct_nets
FROM base b JOIN gaps gp USING (account_id) JOIN hent h USING (account_id)
JOIN ment m USING (account_id)
ORDER BY b.account_id
"""


def behaviour_features(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Per-account behaviour features (:data:`BEHAVIOUR_COLUMNS`) of table ``ex``."""
    return con.sql(_SQL).to_arrow_table()
