"""Signal: shared infrastructure (/24 and ASN, client fingerprints, payment, sign-up bursts).

**What it catches.** Thousands of accounts run by one operator share what is expensive to vary:
proxy exit networks (/24, ASN), the client stack (TLS/client fingerprint, User-Agent), payment
instruments, and sign-up bursts (many accounts created in minutes through the same channel).
This module turns each into *keys* ``(kind, value)`` per account; accounts sharing a key form a
group, which the link graph turns into weighted edges. Per account it also reports the size of its
largest payment group and of its sign-up burst.

**When it fires on legitimate traffic.** A university or company behind one NAT (/24 shared by
hundreds of accounts), popular SDKs (one fingerprint for thousands), residential/mobile ASNs,
several accounts of one organisation on one card, education sign-ups at the start of term. Groups
inside one organisation, and very large groups, weigh little in the graph.

**Needs content:** no. Optional fields that are absent (no ASN, no fingerprint, no payment
fingerprint, no sign-up channel) simply produce no keys; the scan reports them as unavailable.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

__all__ = ["KEY_KINDS", "infrastructure_features", "infrastructure_keys"]

#: Key kinds and the column (of ``ex`` or ``acc``) they come from.
KEY_KINDS: dict[str, str] = {
    "net": "ex.net",
    "asn": "ex.asn",
    "client_fingerprint": "ex.client_fingerprint",
    "user_agent": "ex.user_agent",
    "payment": "acc.payment_fingerprint",
    "signup_burst": "acc.signup_channel + 30-minute window of acc.created_at",
}

#: A key used in fewer than this share of an account's exchanges is ignored (incidental use).
MIN_KEY_SHARE = 0.05


def infrastructure_keys(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Distinct (``account_id``, ``kind``, ``value``) keys of every account."""
    sql = f"""
    WITH n AS (SELECT account_id, count(*) AS n FROM ex GROUP BY account_id),
    k AS (
      SELECT account_id, 'net' AS kind, net AS value FROM ex
      UNION ALL SELECT account_id, 'asn', CAST(asn AS VARCHAR) FROM ex WHERE asn IS NOT NULL
      UNION ALL SELECT account_id, 'client_fingerprint', client_fingerprint FROM ex
                WHERE client_fingerprint IS NOT NULL
      UNION ALL SELECT account_id, 'user_agent', user_agent FROM ex WHERE user_agent IS NOT NULL
    ), kc AS (SELECT account_id, kind, value, count(*) AS c FROM k GROUP BY ALL)
    SELECT kc.account_id, kind, value FROM kc JOIN n USING (account_id)
    WHERE c >= {MIN_KEY_SHARE} * n.n
    UNION ALL
    SELECT account_id, 'payment', payment_fingerprint FROM acc
      WHERE payment_fingerprint IS NOT NULL AND account_id IN (SELECT account_id FROM n)
    UNION ALL
    SELECT account_id, 'signup_burst',
           signup_channel || '@' || CAST(floor(epoch(created_at) / 1800) AS BIGINT)
      FROM acc WHERE signup_channel IS NOT NULL AND account_id IN (SELECT account_id FROM n)
    """
    return con.sql(sql).to_arrow_table()


def infrastructure_features(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Per account: ``payment_group`` (accounts on its payment fingerprint outside its
    organisation, itself included) and ``signup_burst`` (accounts of its channel created in the
    same 30-minute window)."""
    sql = """
    WITH a AS (SELECT * FROM acc WHERE account_id IN (SELECT DISTINCT account_id FROM ex)),
    pay AS (
      SELECT payment_fingerprint, count(DISTINCT coalesce(org_id, account_id)) AS g
      FROM a WHERE payment_fingerprint IS NOT NULL GROUP BY ALL
    ), burst AS (
      SELECT signup_channel, CAST(floor(epoch(created_at) / 1800) AS BIGINT) AS w, count(*) AS g
      FROM a WHERE signup_channel IS NOT NULL GROUP BY ALL
    )
    SELECT a.account_id, coalesce(pay.g, 1) AS payment_group, coalesce(burst.g, 1) AS signup_burst
    FROM a LEFT JOIN pay USING (payment_fingerprint)
    LEFT JOIN burst ON burst.signup_channel = a.signup_channel
                   AND burst.w = CAST(floor(epoch(a.created_at) / 1800) AS BIGINT)
    ORDER BY a.account_id
    """
    return con.sql(sql).to_arrow_table()
