"""Fixtures: the ``tiny`` scenario and a campaign-free variant, simulated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.monitor import ScanResult, scan
from distillguard.sim import load_scenario, simulate


@pytest.fixture(scope="session")
def tiny_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped ``tiny`` scenario (one campaign, every legitimate population)."""
    out = tmp_path_factory.mktemp("tiny") / "log"
    simulate(load_scenario("tiny"), out=out, seed=3)
    return out


@pytest.fixture(scope="session")
def tiny_scan(tiny_log: Path, tmp_path_factory: pytest.TempPathFactory) -> ScanResult:
    """The scan of :func:`tiny_log`, written to a temporary folder."""
    return scan(tiny_log, out=tmp_path_factory.mktemp("tiny-scan"))


@pytest.fixture(scope="session")
def clean_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny`` without its campaign, with more hard negatives: legitimate traffic only."""
    spec = load_scenario("tiny")
    spec = spec.model_copy(update={"campaigns": []})
    out = tmp_path_factory.mktemp("clean") / "log"
    simulate(spec, out=out, seed=11)
    return out
