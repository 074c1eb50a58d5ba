"""The link graph across accounts and its communities (Leiden).

Accounts are nodes. Every *group* of accounts that share a key (a /24, an ASN, a client
fingerprint, a payment fingerprint, a sign-up burst, a prompt-template bucket) adds edges between
its members with weight ``base[kind] / log2(1 + size)``: the larger the group, the less sharing it
says. Groups up to ``clique_cap`` members become cliques; larger groups (a /24 shared by 5,000
university accounts) become a sparse ring over their members in a pseudo-random order, each member
linked to its next ``ring_degree`` neighbours, so that a group of n adds O(n) edges instead of
O(n²) while staying connected. The cap is low (16): at 16M exchanges, popular phrasings put tens
of accounts in one template bucket, and cliques over them would bring about a billion pairs; rings
keep every account-key row at most ``ring_degree`` pairs, and campaign accounts, which share many
templates, still end up densely linked through the many rings they sit on. Pairs of accounts of
the same organisation get their weight multiplied by ``same_org_factor`` (sharing inside an
organisation is expected). Edge weights from all groups are summed per pair and pairs under
``min_edge_weight`` dropped.

**Bounded degree.** Each account then keeps only its ``max_degree`` strongest edges (an edge stays
when it is among the strongest of either end), so the graph has at most ``max_degree × accounts``
edges whatever the traffic: a campaign of thousands of accounts that share templates would
otherwise bring hundreds of edges per account. The strongest links are the ones that decide the
communities; the weak tail only slows Leiden down.

**Communities.** Leiden (igraph's C implementation, modularity with ``resolution``, iterated to a
stable partition, seeded by ``seed``) splits the graph into communities.

**Embeddedness.** For every account, :func:`embeddedness` gives the share of its edge weight that
stays inside its own community (0..1). Campaign accounts are bound to their campaign by many
strong links (0.8-0.95 in the simulated scenarios); a legitimate account that Leiden attaches to a
campaign's community because it once exited through the same proxy network keeps most of its
links outside it (about 0.3). The scores use it to decide how much of a community's risk a member
inherits (:func:`distillguard.monitor.scoring.score_accounts`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

__all__ = ["GraphParams", "LinkGraph", "build_graph", "edge_weight_of_group", "embeddedness"]


def _default_weights() -> dict[str, float]:
    return {
        "payment": 3.0,
        "signup_burst": 1.0,
        "client_fingerprint": 1.0,
        "net": 1.0,
        "asn": 0.3,
        "user_agent": 0.3,
        "template": 0.4,
        "semantic": 0.4,
    }


@dataclass(frozen=True)
class GraphParams:
    """Parameters of the link graph.

    ``max_degree`` (0: no bound) is the number of strongest edges each account keeps;
    ``iterations`` the number of Leiden iterations (-1: until the partition is stable).
    """

    weights: dict[str, float] = field(default_factory=_default_weights)
    clique_cap: int = 16
    ring_degree: int = 3
    same_org_factor: float = 0.2
    min_edge_weight: float = 0.15
    resolution: float = 1.0
    seed: int = 42
    max_degree: int = 32
    iterations: int = -1

    def __post_init__(self) -> None:
        if self.clique_cap < 2 or self.ring_degree < 1 or self.max_degree < 0:
            raise ValueError("clique_cap >= 2, ring_degree >= 1 and max_degree >= 0 are required")


@dataclass(frozen=True)
class LinkGraph:
    """Edges (by account index, ``src < dst``, sorted) and the community of every account."""

    n_accounts: int
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    community: np.ndarray  # community id per account index (singletons get their own)

    @property
    def n_edges(self) -> int:
        """Number of edges after summing, pruning and bounding the degree."""
        return len(self.src)

    def embeddedness(self) -> np.ndarray:
        """Share of each account's edge weight inside its community (:func:`embeddedness`)."""
        return embeddedness(self.src, self.dst, self.weight, self.community, self.n_accounts)


def embeddedness(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, community: np.ndarray, n_accounts: int
) -> np.ndarray:
    """Per account, the share (0..1) of its edge weight that links it to its own community.

    Accounts without edges get 0. Undirected edges ``src``-``dst`` with ``weight``; ``community``
    is a community label per account index.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    w = np.asarray(weight, dtype=np.float64)
    comm = np.asarray(community)
    inside = np.where(comm[src] == comm[dst], w, 0.0) if len(w) else w
    total = np.bincount(src, w, n_accounts) + np.bincount(dst, w, n_accounts)
    within = np.bincount(src, inside, n_accounts) + np.bincount(dst, inside, n_accounts)
    return np.asarray(np.where(total > 0, within / np.maximum(total, 1e-300), 0.0), np.float64)


def _edges_sql(params: GraphParams) -> str:
    cases = " ".join(f"WHEN '{k}' THEN {float(v)}" for k, v in params.weights.items())
    cap = int(params.clique_cap)
    ring = " UNION ALL ".join(
        f"SELECT acct AS a, lead(acct, {d}) OVER w AS b, kind, g FROM big WINDOW w AS "
        f"(PARTITION BY kind, gkey ORDER BY hash(acct, gkey))"
        for d in range(1, params.ring_degree + 1)
    )
    top = (
        f"QUALIFY row_number() OVER (PARTITION BY u ORDER BY w DESC, v) <= {int(params.max_degree)}"
        if params.max_degree
        else ""
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
    ),
    summed AS (
      SELECT least(a, b) AS a, greatest(a, b) AS b,
             -- fixed point (1e-9): integer sums are exact, so the weights (and Leiden's
             -- communities) do not depend on the order in which threads add them up
             sum(CAST(round(1e9 * (CASE kind {cases} ELSE 0 END) / log2(1 + g)) AS BIGINT))
               / 1e9 AS w
      FROM pairs GROUP BY ALL
    ),
    kept AS (
      SELECT s.a, s.b,
             s.w * CASE WHEN oa.org >= 0 AND oa.org = ob.org
                        THEN {float(params.same_org_factor)} ELSE 1.0 END AS w
      FROM summed s JOIN _orgs oa ON oa.acct = s.a JOIN _orgs ob ON ob.acct = s.b
    ),
    dir AS (
      SELECT a AS u, b AS v, w FROM kept WHERE w >= {float(params.min_edge_weight)}
      UNION ALL SELECT b, a, w FROM kept WHERE w >= {float(params.min_edge_weight)}
    ),
    top AS (SELECT u, v, w FROM dir {top})
    SELECT least(u, v) AS a, greatest(u, v) AS b, max(w) AS w FROM top GROUP BY ALL
    """


def _leiden(
    n_accounts: int, src: np.ndarray, dst: np.ndarray, w: np.ndarray, params: GraphParams
) -> np.ndarray:
    """Leiden communities (igraph, modularity), seeded with a private random generator."""
    import igraph as ig

    if not len(w):
        return np.arange(n_accounts, dtype=np.int64)
    graph = ig.Graph(n=n_accounts, edges=np.column_stack([src, dst]).tolist(), directed=False)
    ig.set_random_number_generator(random.Random(params.seed))
    try:
        part = graph.community_leiden(
            objective_function="modularity",
            weights=w.tolist(),
            resolution=params.resolution,
            n_iterations=params.iterations,
        )
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(part.membership, dtype=np.int64)


def build_graph(
    con: duckdb.DuckDBPyConnection,
    keys: pa.Table,
    org_of: np.ndarray,
    *,
    n_accounts: int,
    params: GraphParams | None = None,
) -> LinkGraph:
    """Build the graph from ``keys`` (``acct`` int64, ``kind``, ``gkey`` strings) and run Leiden.

    ``org_of`` gives an organisation code per account index (-1: none; accounts past its end
    have none).
    """
    params = params or GraphParams()
    org = np.full(n_accounts, -1, dtype=np.int64)
    given = np.asarray(org_of, dtype=np.int64)[:n_accounts]
    org[: len(given)] = given
    orgs = pa.table({"acct": pa.array(np.arange(n_accounts, dtype=np.int64)), "org": pa.array(org)})
    con.register("_keys", keys)
    con.register("_orgs", orgs)
    try:
        edges = con.sql(_edges_sql(params)).to_arrow_table()
    finally:
        con.unregister("_keys")
        con.unregister("_orgs")
    src = np.asarray(edges["a"].to_numpy(), dtype=np.int64)
    dst = np.asarray(edges["b"].to_numpy(), dtype=np.int64)
    w = np.asarray(edges["w"].to_numpy(), dtype=np.float64)
    # SQL returns pairs in no fixed order; Leiden's result depends on it, so sort for determinism
    order = np.lexsort((dst, src))
    src, dst, w = src[order], dst[order], w[order]
    community = _leiden(n_accounts, src, dst, w, params)
    return LinkGraph(n_accounts=n_accounts, src=src, dst=dst, weight=w, community=community)


def edge_weight_of_group(kind: str, size: int, params: GraphParams | None = None) -> float:
    """The weight one shared group of ``size`` accounts adds to each of its edges."""
    params = params or GraphParams()
    return params.weights.get(kind, 0.0) / math.log2(1 + size) if size >= 2 else 0.0
