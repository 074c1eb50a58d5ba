"""The report's figures, drawn with matplotlib (Agg, no display) and returned as PNG bytes."""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from distillguard.results import AttributionResult, RadioactivityResult
from distillguard.store import Activity, InfraUse

__all__ = [
    "GraphPicture",
    "attribution_png",
    "graph_png",
    "radioactivity_png",
    "score_histogram_png",
    "timeline_png",
]

_DPI = 96
_KIND_COLOURS = {"payment": "#d62728", "net": "#1f77b4", "asn": "#9467bd", "client": "#2ca02c"}
_KIND_LABELS = {
    "payment": "payment fingerprint",
    "net": "network (/24, /48)",
    "asn": "ASN",
    "client": "client fingerprint",
}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _neglog10(p: float) -> float:
    return -math.log10(max(p, 1e-300))


def timeline_png(act: Activity, *, title: str) -> bytes:
    """Exchanges per bucket (bars) and active accounts per bucket (line)."""
    fig, ax = plt.subplots(figsize=(9, 3.0))
    days = [s / 86_400e6 for s in act.starts_us]  # matplotlib dates: days since 1970-01-01
    width = act.bucket_us / 86_400e6
    ax.bar(days, act.exchanges, width=width, align="edge", color="#4c72b0", label="exchanges")
    ax.set_ylabel("exchanges")
    ax2 = ax.twinx()
    ax2.plot(
        [d + width / 2 for d in days],
        act.accounts,
        color="#dd8452",
        lw=1.2,
        label="active accounts",
    )
    ax2.set_ylabel("active accounts")
    ax.xaxis_date(tz=UTC)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=UTC))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    ax.set_title(title, fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    return _png(fig)


class GraphPicture:
    """The infrastructure graph's PNG and what it shows."""

    def __init__(self, png: bytes, *, accounts: int, nodes: Mapping[str, int], edges: int) -> None:
        self.png = png
        self.accounts = accounts
        self.nodes = dict(nodes)
        self.edges = edges


def graph_png(
    links: Sequence[InfraUse], *, scores: Mapping[str, float], max_infra: int = 60, seed: int = 7
) -> GraphPicture | None:
    """Accounts (circles, coloured by score) and the infrastructure they share (squares).

    Only infrastructure shared by at least two of the drawn accounts is drawn, the most shared
    first, at most ``max_infra`` nodes; accounts without a shared node are drawn unlinked.
    """
    import igraph as ig

    users: dict[tuple[str, str], set[str]] = {}
    for link in links:
        users.setdefault((link.kind, link.key), set()).add(link.account_id)
    shared = sorted(
        ((k, v) for k, v in users.items() if len(v) >= 2), key=lambda kv: (-len(kv[1]), kv[0])
    )[:max_infra]
    accounts = sorted({link.account_id for link in links})
    if not accounts:
        return None
    index = {a: i for i, a in enumerate(accounts)}
    infra_nodes = [k for k, _ in shared]
    edges: list[tuple[int, int]] = []
    for j, (_, members) in enumerate(shared):
        edges.extend((index[a], len(accounts) + j) for a in sorted(members))
    g = ig.Graph(n=len(accounts) + len(infra_nodes), edges=edges)
    import random

    random.seed(seed)
    coords = np.asarray(g.layout_fruchterman_reingold(niter=300).coords, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(8, 6.5))
    if edges:
        segs = [(coords[a], coords[b]) for a, b in edges]
        ax.add_collection(LineCollection(segs, colors="#999999", linewidths=0.5, alpha=0.6))
    acc_xy = coords[: len(accounts)]
    acc_scores = [scores.get(a, 0.0) for a in accounts]
    sc = ax.scatter(
        acc_xy[:, 0], acc_xy[:, 1], c=acc_scores, cmap="Reds", vmin=0, vmax=1, s=22,
        edgecolors="#333333", linewidths=0.3, zorder=3,
    )  # fmt: skip
    fig.colorbar(sc, ax=ax, shrink=0.6, label="account score")
    kinds: Counter[str] = Counter()
    for j, ((kind, _key), members) in enumerate(shared):
        x, y = coords[len(accounts) + j]
        kinds[kind] += 1
        ax.scatter(
            [x], [y], marker="s", s=30 + 8 * math.sqrt(len(members)),
            color=_KIND_COLOURS.get(kind, "#7f7f7f"), zorder=4,
            label=_KIND_LABELS.get(kind, kind) if kinds[kind] == 1 else None,
        )  # fmt: skip
    ax.set_axis_off()
    if kinds:
        ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    ax.autoscale()
    return GraphPicture(_png(fig), accounts=len(accounts), nodes=dict(kinds), edges=len(edges))


def score_histogram_png(
    scores: Sequence[float], *, highlighted: Sequence[float], threshold: float = 0.5
) -> bytes:
    """Scores of every account (grey) and of the campaign's accounts (red), log scale."""
    fig, ax = plt.subplots(figsize=(6, 2.6))
    bins = np.linspace(0, 1, 41).tolist()
    ax.hist(scores, bins=bins, color="#bbbbbb", label="all accounts")
    if highlighted:
        ax.hist(highlighted, bins=bins, color="#d62728", alpha=0.8, label="this campaign")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"flag threshold {threshold}")
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("accounts")
    ax.legend(fontsize=8)
    return _png(fig)


def radioactivity_png(result: RadioactivityResult, *, alpha: float = 1e-3) -> bytes:
    """The p-value curve (−log10 p against tokens scored), or the single test when no curve."""
    fig, ax = plt.subplots(figsize=(6, 2.8))
    if result.curve:
        xs = [p.n_scored for p in result.curve]
        ys = [_neglog10(p.p_value) for p in result.curve]
        ax.plot(xs, ys, marker="o", ms=3, color="#4c72b0")
        ax.set_xlabel("tokens scored")
    else:
        ax.bar(["suspect"], [_neglog10(result.p_value)], color="#4c72b0")
    ax.axhline(_neglog10(alpha), color="#d62728", ls="--", lw=1, label=f"α = {alpha:g}")
    ax.set_ylabel("−log10 p")
    ax.legend(fontsize=8)
    return _png(fig)


def attribution_png(result: AttributionResult) -> bytes:
    """−log10 p of each model family; the verdict in red."""
    ranking = list(result.ranking)[:12]
    fig, ax = plt.subplots(figsize=(6, 0.45 * max(len(ranking), 2) + 1))
    names = [r.family for r in ranking][::-1]
    values = [_neglog10(r.p_value) for r in ranking][::-1]
    colours = ["#d62728" if n == result.verdict else "#4c72b0" for n in names]
    ax.barh(names, values, color=colours)
    if result.alpha:
        ax.axvline(
            _neglog10(result.alpha), color="black", ls="--", lw=1, label=f"α = {result.alpha:g}"
        )
        ax.legend(fontsize=8)
    ax.set_xlabel("−log10 p (Holm-adjusted)")
    return _png(fig)
