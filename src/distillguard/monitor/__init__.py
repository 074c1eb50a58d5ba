"""Campaign detection: per-account signals, the cross-account link graph, campaigns.

Start with :func:`scan` (batch, DuckDB by default) or :class:`OnlineScorer` (per exchange, for
the gateway); ``docs/scan.md`` explains every signal, the graph, the scores and their limits.
"""

from __future__ import annotations

from distillguard.monitor._results import ACCOUNT_SCORES_SCHEMA, Campaign
from distillguard.monitor.features import AccountFeatures, FeatureScan, score_features
from distillguard.monitor.graph import GraphParams
from distillguard.monitor.scan import Engine, ScanConfig, ScanResult, scan
from distillguard.monitor.scoring import ScoreParams
from distillguard.monitor.templates import MinHasher

__all__ = [
    "ACCOUNT_SCORES_SCHEMA",
    "AccountFeatures",
    "Campaign",
    "Engine",
    "FeatureScan",
    "GraphParams",
    "MinHasher",
    "ScanConfig",
    "ScanResult",
    "ScoreParams",
    "scan",
    "score_features",
]
