"""The link graph across accounts and its communities (Leiden).

Accounts are nodes. Every *group* of accounts that share a key (a /24, an ASN, a client
fingerprint, a payment fingerprint, a sign-up burst, a prompt-template bucket) adds edges between
its members with weight ``base[kind] / log2(1 + size)``: the larger the group, the less sharing it
says. Groups up to ``clique_cap`` members become cliques; larger groups (a /24 shared by 5,000
university accounts) become a sparse ring over their members in a pseudo-random order, each member
linked to its next ``ring_degree`` neighbours, so that a group of n adds O(n) edges instead of
O(n²) while staying connected. Pairs of accounts of the same organisation get their weight
multiplied by ``same_org_factor`` (sharing inside an organisation is expected). Edge weights from
all groups are summed per pair; Leiden (modularity, fixed seed) splits the graph into communities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

__all__ = ["GraphParams", "LinkGraph", "build_graph"]


def _default_weights() -> dict[str, float]:
    return {
        "payment": 3.0,
        "signup_burst": 1.0,
        "client_fingerprint": 1.0,
        "net": 1.0,
        "asn": 0.3,
        "user_agent": 0.3,
        "template": 0.4,
    }


@dataclass(frozen=True)
class GraphParams:
    """Parameters of the link graph."""

    weights: dict[str, float] = field(default_factory=_default_weights)
    clique_cap: int = 64
    ring_degree: int = 3
    same_org_factor: float = 0.2
    min_edge_weight: float = 0.15
    resolution: float = 1.0
    seed: int = 42


@dataclass(frozen=True)
class LinkGraph:
    """Edges (by account index) and the community of every account."""

    n_accounts: int
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    community: np.ndarray  # community id per account index (singletons get their own)

    @property
    def n_edges(self) -> int:
        """Number of edges after summing and pruning."""
        return len(self.src)


def _edges_sql(params: GraphParams) -> str:
    cases = " ".join(f"WHEN '{k}' THEN {v}" for k, v in params.weights.items())
    cap = params.clique_cap
    ring = " UNION ALL ".join(
        f"SELECT acct AS a, lead(acct, {d}) OVER w AS b, kind, g FROM big WINDOW w AS "
        f"(PARTITION BY kind, gkey ORDER BY hash(acct, gkey))"
        for d in range(1, params.ring_degree + 1)
    )
    return f"""
    WITH keys AS (SELECT DISTINCT acct, kind, gkey FROM _keys),
    sized AS (SELECT *, count(*) OVER (PARTITION BY kind, gkey) AS g FROM keys),
    small AS (SELECT * FROM sized WHERE g BETWEEN 2 AND {cap}),
    big AS (SELECT * FROM sized WHERE g > {cap}),
    pairs AS (
      SELECT x.acct AS a, y.acct AS b, x.kind, x.g FROM small x JOIN small y
        ON x.kind = y.kind AND x.gkey = y.gkey AND x.acct < y.acct
      UNION ALL SELECT * FROM ({ring}) WHERE b IS NOT NULL
    )
    SELECT least(a, b) AS a, greatest(a, b) AS b,
           sum((CASE kind {cases} ELSE 0 END) / log2(1 + g)) AS w
    FROM pairs GROUP BY ALL
    """


def build_graph(
    con: duckdb.DuckDBPyConnection,
    keys: pa.Table,
    org_of: np.ndarray,
    *,
    n_accounts: int,
    params: GraphParams | None = None,
) -> LinkGraph:
    """Build the graph from ``keys`` (``acct`` int64, ``kind``, ``gkey`` strings) and run Leiden.

    ``org_of`` gives an organisation code per account index (-1: none).
    """
    import igraph as ig
    import leidenalg

    params = params or GraphParams()
    con.register("_keys", keys)
    try:
        edges = con.sql(_edges_sql(params)).to_arrow_table()
    finally:
        con.unregister("_keys")
    src = np.asarray(edges["a"].to_numpy(), dtype=np.int64)
    dst = np.asarray(edges["b"].to_numpy(), dtype=np.int64)
    w = np.asarray(edges["w"].to_numpy(), dtype=np.float64)
    same_org = (org_of[src] >= 0) & (org_of[src] == org_of[dst])
    w = np.where(same_org, w * params.same_org_factor, w)
    keep = w >= params.min_edge_weight
    src, dst, w = src[keep], dst[keep], w[keep]
    # SQL returns pairs in no fixed order; Leiden's result depends on it, so sort for determinism
    order = np.lexsort((dst, src))
    src, dst, w = src[order], dst[order], w[order]
    graph = ig.Graph(n=n_accounts, edges=np.column_stack([src, dst]).tolist(), directed=False)
    if len(w):
        part = leidenalg.find_partition(
            graph,
            leidenalg.RBConfigurationVertexPartition,
            weights=w.tolist(),
            resolution_parameter=params.resolution,
            seed=params.seed,
            n_iterations=-1,
        )
        community = np.asarray(part.membership, dtype=np.int64)
    else:
        community = np.arange(n_accounts, dtype=np.int64)
    return LinkGraph(n_accounts=n_accounts, src=src, dst=dst, weight=w, community=community)


def edge_weight_of_group(kind: str, size: int, params: GraphParams | None = None) -> float:
    """The weight one shared group of ``size`` accounts adds to each of its edges."""
    params = params or GraphParams()
    return params.weights.get(kind, 0.0) / math.log2(1 + size) if size >= 2 else 0.0
