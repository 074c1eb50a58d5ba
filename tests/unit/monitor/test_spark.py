"""The Spark engine: same features and same results as DuckDB on the ``tiny`` scenario."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distillguard.monitor import ScanConfig, ScanResult
from distillguard.monitor.spark import spark_scan, spark_session

pytest.importorskip("pyspark")

pytestmark = pytest.mark.spark


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for every Spark test (start-up is slow)."""
    session = spark_session("local[2]")
    yield session
    session.stop()


def test_spark_equals_duckdb_on_tiny(spark: Any, tiny_log: Path, tiny_scan: ScanResult) -> None:
    fs, report, _timings = spark_scan(tiny_log, config=ScanConfig(engine="spark"), spark=spark)
    assert report.exchanges == tiny_scan.load.exchanges
    assert report.accounts == tiny_scan.load.accounts
    a, b = fs.accounts, tiny_scan.accounts
    assert a["account_id"].to_pylist() == b["account_id"].to_pylist()
    assert a["flagged"].to_pylist() == b["flagged"].to_pylist()
    sa = np.asarray(a["score"].to_numpy())
    sb = np.asarray(b["score"].to_numpy())
    # same features up to floating-point summation order (Spark vs DuckDB aggregates)
    assert np.allclose(sa, sb, atol=1e-6)
    assert sorted(c.campaign_id for c in fs.campaigns) == sorted(
        c.campaign_id for c in tiny_scan.campaigns
    )
    assert a["reasons"].to_pylist() == b["reasons"].to_pylist()
