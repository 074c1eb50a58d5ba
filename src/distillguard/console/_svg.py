"""Inline SVG charts rendered on the server (no script, no external file).

Every chart is ``role="img"`` with a ``<title>`` and a ``<desc>``; colours come from the
console's stylesheet classes (WCAG AA contrast on the page background), never inline styles, so
the Content-Security-Policy can forbid them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from distillguard.store import InfraUse

__all__ = ["bar_chart", "infra_graph", "line_chart", "sparkline"]


def _head(title: str, desc: str, width: int, height: int, cls: str) -> str:
    return (
        f'<svg class="{cls}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )


def bar_chart(
    values: Sequence[int],
    *,
    title: str,
    labels: Sequence[str] = (),
    width: int = 640,
    height: int = 140,
) -> Markup:
    """Bars for ``values``, scaled to the largest, with the maximum written on the axis."""
    n = max(1, len(values))
    top = max(values, default=0) or 1
    bw = width / n
    parts = [
        _head(
            title,
            f"{len(values)} bars, largest {max(values, default=0)}, total {sum(values)}",
            width,
            height + 16,
            "chart",
        )
    ]
    parts.append(f'<text class="axis" x="2" y="11">{top}</text>')
    for i, v in enumerate(values):
        h = (height - 14) * v / top
        label = labels[i] if i < len(labels) else str(i)
        parts.append(
            f'<rect class="bar" x="{i * bw + 1:.1f}" y="{height - h:.1f}" '
            f'width="{max(1.0, bw - 2):.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}: {v}</title></rect>"
        )
    parts.append(f'<line class="axisline" x1="0" y1="{height}" x2="{width}" y2="{height}"/>')
    if labels:
        parts.append(f'<text class="axis" x="2" y="{height + 13}">{escape(labels[0])}</text>')
        parts.append(
            f'<text class="axis" x="{width - 2}" y="{height + 13}" text-anchor="end">'
            f"{escape(labels[-1])}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    points: Sequence[float],
    *,
    title: str,
    labels: Sequence[str] = (),
    width: int = 640,
    height: int = 120,
    lo: float = 0.0,
    hi: float = 1.0,
) -> Markup:
    """A polyline of ``points`` between ``lo`` and ``hi`` (risk scores: 0..1), with dots."""
    parts = [_head(title, f"{len(points)} points", width, height + 16, "chart")]
    span = (hi - lo) or 1.0
    n = len(points)
    coords = []
    for i, p in enumerate(points):
        x = 8 + (width - 16) * (i / (n - 1) if n > 1 else 0.5)
        y = 6 + (height - 12) * (1 - (min(hi, max(lo, p)) - lo) / span)
        coords.append((x, y))
    parts.append(f'<text class="axis" x="2" y="11">{hi:g}</text>')
    parts.append(f'<text class="axis" x="2" y="{height}">{lo:g}</text>')
    if coords:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline class="line" points="{path}"/>')
    for i, (x, y) in enumerate(coords):
        label = labels[i] if i < len(labels) else str(i)
        parts.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3">'
            f"<title>{escape(label)}: {points[i]:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(values: Sequence[int], *, title: str, width: int = 120, height: int = 28) -> Markup:
    """A small trend line for tables."""
    top = max(values, default=0) or 1
    n = len(values)
    pts = " ".join(
        f"{(width - 2) * (i / (n - 1) if n > 1 else 0.5) + 1:.1f},"
        f"{height - 2 - (height - 4) * v / top:.1f}"
        for i, v in enumerate(values)
    )
    return Markup(
        _head(title, f"{n} points, peak {max(values, default=0)}", width, height, "spark")
        + (f'<polyline class="line" points="{pts}"/>' if n else "")
        + "</svg>"
    )


def infra_graph(
    edges: Sequence[InfraUse], *, title: str, size: int = 560, min_shared: int = 2
) -> Markup:
    """Accounts (outer ring) linked to the infrastructure they share (inner ring).

    Keys used by fewer than ``min_shared`` of the accounts are left out; the layout is
    deterministic (sorted ids around the circles), so the same data draws the same picture.
    """
    users: dict[tuple[str, str], set[str]] = {}
    for e in edges:
        users.setdefault((e.kind, e.key), set()).add(e.account_id)
    shared = sorted(k for k, v in users.items() if len(v) >= min_shared)
    accounts = sorted({a for k in shared for a in users[k]})
    c = size / 2
    r_out, r_in = c - 30, c * 0.42
    pos: dict[str, tuple[float, float]] = {}
    for i, a in enumerate(accounts):
        t = 2 * math.pi * i / max(1, len(accounts))
        pos["a:" + a] = (c + r_out * math.cos(t), c + r_out * math.sin(t))
    for i, k in enumerate(shared):
        t = 2 * math.pi * (i + 0.5) / max(1, len(shared))
        pos["k:" + "|".join(k)] = (c + r_in * math.cos(t), c + r_in * math.sin(t))
    desc = (
        f"{len(accounts)} accounts linked through {len(shared)} shared infrastructure keys "
        f"({', '.join(sorted({k[0] for k in shared})) or 'none'})"
    )
    parts = [_head(title, desc, size, size, "graph")]
    for k in shared:
        kx, ky = pos["k:" + "|".join(k)]
        for a in sorted(users[k]):
            ax, ay = pos["a:" + a]
            parts.append(
                f'<line class="edge edge-{escape(k[0])}" x1="{ax:.1f}" y1="{ay:.1f}" '
                f'x2="{kx:.1f}" y2="{ky:.1f}"/>'
            )
    for a in accounts:
        x, y = pos["a:" + a]
        parts.append(
            f'<circle class="node-account" cx="{x:.1f}" cy="{y:.1f}" r="5">'
            f"<title>account {escape(a)}</title></circle>"
        )
    for k in shared:
        x, y = pos["k:" + "|".join(k)]
        parts.append(
            f'<rect class="node-{escape(k[0])}" x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" '
            f'height="12"><title>{escape(k[0])} {escape(k[1])}: {len(users[k])} accounts'
            "</title></rect>"
        )
    if not shared:
        parts.append(
            f'<text class="axis" x="{c}" y="{c}" text-anchor="middle">no shared infrastructure'
            "</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
