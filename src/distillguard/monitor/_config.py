"""The parameters of a scan (:class:`ScanConfig`) and its intermediate results
(:class:`ScanDetail`).

Their own module, below :mod:`~distillguard.monitor.scan`, so that the engines and the fitted
combiner that the scan calls (:mod:`~distillguard.monitor.spark`,
:mod:`~distillguard.monitor.combiner`) can name these types without importing the scan back
(``distillguard.monitor.scan`` re-exports them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa

from distillguard.monitor._account_features import AccountFeatures
from distillguard.monitor.features import FeatureScan
from distillguard.monitor.graph import GraphParams
from distillguard.monitor.scoring import ScoreParams
from distillguard.monitor.semantic import SemanticHasher
from distillguard.monitor.templates import MinHasher

__all__ = ["Engine", "ScanConfig", "ScanDetail"]

Engine = Literal["duckdb", "spark"]


@dataclass(frozen=True)
class ScanConfig:
    """Parameters of a scan (every field has a documented default)."""

    engine: Engine = "duckdb"
    per_account_sample: int = 64
    minhash: MinHasher = field(default_factory=MinHasher)
    #: Paraphrase buckets from log-learned word vectors (:mod:`~distillguard.monitor.semantic`:
    #: link kind ``semantic`` and the plan signal); ``SemanticHasher()`` turns them on. Off by
    #: default: on the zoo and the simulator's logs they recalled few more low-and-slow accounts
    #: (zoo 0.005 -> 0.066, simulator 0.007 -> 0.005) and doubled the scan time (docs/scan.md,
    #: "Paraphrase groups").
    semantic: SemanticHasher | None = None
    graph: GraphParams = field(default_factory=GraphParams)
    score: ScoreParams = field(default_factory=ScoreParams)
    memory_limit: str = "8GB"
    threads: int | None = None
    #: Keep the features, scores, graph and keys in ``ScanResult.detail`` (the evaluations and
    #: the fitted combiner read them; off by default: at 16M exchanges the keys table alone
    #: takes gigabytes that the scan otherwise frees after scoring).
    keep_detail: bool = False
    #: A fitted combiner (``distillguard tune``) whose verdicts replace the hand-set scores.
    model: Path | None = None


@dataclass(frozen=True)
class ScanDetail:
    """The intermediate results of a scan: features, scores and link graph, and the keys table."""

    features: AccountFeatures
    scored: FeatureScan
    keys: pa.Table
