"""Redaction speed: all rules merged in one pass vs stacking one pass per kind (same rules).

Each rule is its own compiled regex; DistillGuard merges the candidates of all rules in one
left-to-right pass and rebuilds the text once. Text: the redaction test corpus (prose, chat,
code, logs, e-mail, CSV, with planted personal data and secrets), markers stripped, repeated to
about 4 MB (1 MB with --quick). Figures: MB/s of ``Redactor.redact`` on the whole text, lines/s
when called once per line (as the logging filter does), and the cost of the logging filter per
record. Baselines in the same run: the same rules applied one kind after another (a ``Redactor``
per kind, in sequence), the usual way of stacking regex redactors; and all rules as the
alternatives of one regex (finding matches only, no checks: a lower bound for that design).
Medians over repeats, the two contenders of each figure run alternately.

    .venv/bin/python benchmarks/bench_redact.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from distillguard.privacy import PiiKind, RedactingFilter, Redactor
from distillguard.privacy._redact import _BUILTIN_RULES

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "unit" / "privacy" / "data"
_MARK = re.compile(r"⟦[A-Z]+\|(.*?)⟧", re.S)


def load_text(target_bytes: int) -> str:
    parts = [_MARK.sub(r"\1", p.read_text(encoding="utf-8")) for p in sorted(CORPUS.glob("*.txt"))]
    base = "\n".join(parts)
    reps = max(1, target_bytes // len(base.encode()))
    return "\n".join([base] * reps)


def paired_medians(
    ours: Callable[[], object], base: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median times of two functions run alternately (the machine's load hits both alike)."""
    t_ours: list[float] = []
    t_base: list[float] = []
    for _ in range(repeats):
        for fn, times in ((ours, t_ours), (base, t_base)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(t_ours), statistics.median(t_base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 MB of text, 3 repeats (default 4 MB, 7)"
    )
    args = parser.parse_args()
    size = 1_000_000 if args.quick else 4_000_000
    repeats = 3 if args.quick else 7
    text = load_text(size)
    mb = len(text.encode()) / 1e6
    lines = text.split("\n")

    ours = Redactor.default()
    per_kind = [Redactor(kinds={k}) for k in sorted(ours.kinds)]

    def stacked(t: str) -> str:
        for r in per_kind:
            t = r.redact(t)
        return t

    assert ours.kinds <= set(PiiKind)
    # Baseline 2: all rules as alternatives of one regex, scanned once; only finding the matches
    # (no checksum, no rebuild), so a lower bound on the cost of that design.
    alternation = re.compile(
        "|".join(
            f"(?:{r.pattern.replace('(?P<value>', '(?:').replace('(?P<key>', '(?:')})"
            for r in _BUILTIN_RULES
            if r.kind in ours.kinds
        )
    )
    t_ours, t_base = paired_medians(lambda: ours.redact(text), lambda: stacked(text), repeats)
    t_ours2, t_alt = paired_medians(
        lambda: ours.redact(text), lambda: sum(1 for _ in alternation.finditer(text)), repeats
    )
    sample = lines[: min(len(lines), 20_000)]
    t_lines, t_lines_base = paired_medians(
        lambda: [ours.redact(line) for line in sample],
        lambda: [stacked(line) for line in sample],
        repeats,
    )

    # logging: the same 20,000 records through a handler with and without the filter
    def log_all(with_filter: bool) -> None:
        logger = logging.getLogger("bench.redact")
        logger.handlers.clear()
        logger.propagate = False
        handler = logging.StreamHandler(io.StringIO())
        if with_filter:
            handler.addFilter(RedactingFilter(ours))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        for line in sample:
            logger.info("request from %s: %s", "client", line)

    t_log, t_log_plain = paired_medians(lambda: log_all(True), lambda: log_all(False), repeats)

    print(f"text: {mb:.1f} MB, {len(lines):,} lines; {len(ours.kinds)} kinds enabled")
    print(f"one pass (DistillGuard):   {mb / t_ours:8.2f} MB/s")
    print(f"one pass per kind (base):  {mb / t_base:8.2f} MB/s")
    print(f"ratio whole text:          {t_base / t_ours:8.2f}x")
    print(f"single alternation regex, matching only (base 2): {mb / t_alt:6.2f} MB/s")
    print(f"ratio whole text vs base 2:  {t_alt / t_ours2:6.2f}x (ours {mb / t_ours2:.2f} MB/s)")
    print(f"per line (DistillGuard):   {len(sample) / t_lines:10,.0f} lines/s")
    print(f"per line (base):           {len(sample) / t_lines_base:10,.0f} lines/s")
    print(f"ratio per line:            {t_lines_base / t_lines:8.2f}x")
    per_record_us = (t_log - t_log_plain) / len(sample) * 1e6
    print(
        f"logging filter: {per_record_us:.1f} us added per record "
        f"({len(sample) / t_log:,.0f} vs {len(sample) / t_log_plain:,.0f} records/s unfiltered)"
    )


if __name__ == "__main__":
    main()
