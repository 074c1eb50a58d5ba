"""Reading scan, radioactivity and attribution results: good and bad inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import InputError
from distillguard.evidence import load_attribution, load_radioactivity, load_scan
from distillguard.evidence.testing import write_scan

_GOOD_CAMPAIGN: dict[str, Any] = {
    "campaign_id": "camp-1",
    "accounts": ["a", "b"],
    "score": 0.8,
    "first_seen": "2026-01-01T00:00:00Z",
    "last_seen": "2026-01-02T00:00:00Z",
    "exchanges": 10,
    "signals": {"synchrony_p": 0.01},
}


def _scan_with(tmp_path: Path, campaigns: Any) -> Path:
    folder = write_scan(tmp_path / "scan", ["a", "b", "c"], ["d"])
    (folder / "campaigns.json").write_bytes(orjson.dumps(campaigns))
    return folder


def test_good_scan(tmp_path: Path) -> None:
    scan = load_scan(_scan_with(tmp_path, [_GOOD_CAMPAIGN]))
    (c,) = scan.campaigns
    assert c.accounts == ("a", "b") and c.exchanges == 10 and scan.accounts.num_rows == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"accounts": "a"}, "'accounts' has the wrong type"),
        ({"accounts": ["a", 3]}, "must list account ids"),
        ({"score": "high"}, "'score' has the wrong type"),
        ({"score": True}, "'score' has the wrong type"),
        ({"exchanges": -1}, "negative"),
        ({"first_seen": "yesterday"}, "RFC 3339"),
        ({"last_seen": "2025-01-01T00:00:00Z"}, "before"),
        ({"signals": []}, "'signals' must be an object"),
        ({"campaign_id": None}, "'campaign_id' has the wrong type"),
    ],
)
def test_bad_campaign_is_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    folder = _scan_with(tmp_path, [{**_GOOD_CAMPAIGN, **change}])
    with pytest.raises(InputError, match=message) as err:
        load_scan(folder)
    assert "campaigns.json: campaign 0" in err.value.message


def test_bad_scan_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a scan output folder"):
        load_scan(tmp_path / "nope")
    folder = _scan_with(tmp_path, {"not": "a list"})
    with pytest.raises(InputError, match="expected a list"):
        load_scan(folder)
    (folder / "campaigns.json").write_text("[{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_scan(folder)
    (folder / "campaigns.json").write_bytes(orjson.dumps([_GOOD_CAMPAIGN, _GOOD_CAMPAIGN]))
    with pytest.raises(InputError, match="appears twice"):
        load_scan(folder)
    (folder / "campaigns.json").write_bytes(b"[]")
    (folder / "account_scores.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(InputError, match=r"account_scores\.parquet"):
        load_scan(folder)
    (folder / "account_scores.parquet").unlink()
    with pytest.raises(InputError, match="does not exist"):
        load_scan(folder)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected an object"),
        ({"statistic": 1.0, "p_value": 0.5}, "'method' is missing"),
        ({"method": "m", "statistic": 1.0, "p_value": 1.5}, "p-value"),
        ({"method": "m", "statistic": "x", "p_value": 0.5}, "'statistic'"),
        ({"method": "m", "statistic": 1.0, "p_value": 0.5, "n_scored": -3}, "n_scored"),
        ({"method": "m", "statistic": 1.0, "p_value": 0.5, "curve": [{"n_scored": 1}]}, "curve"),
        ({"result": 3}, "'result' must be an object"),
    ],
)
def test_bad_radioactivity(tmp_path: Path, doc: Any, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(InputError, match=message):
        load_radioactivity(path)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"verdict": None}, "'ranking' is missing"),
        ({"verdict": 3, "ranking": []}, "'verdict'"),
        ({"verdict": None, "ranking": [{"family": "f", "statistic": 1}]}, "ranking\\[0\\]"),
        ({"verdict": None, "ranking": ["f"]}, "ranking\\[0\\] is not an object"),
    ],
)
def test_bad_attribution(tmp_path: Path, doc: Any, message: str) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(InputError, match=message):
        load_attribution(path)


_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
_p = st.floats(0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    statistic=_finite,
    p=_p,
    curve=st.lists(st.tuples(st.integers(0, 10**9), _finite, _p), max_size=5),
    nested=st.booleans(),
)
def test_radioactivity_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    statistic: float,
    p: float,
    curve: list[tuple[int, float, float]],
    nested: bool,
) -> None:
    core = {"method": "kgw", "statistic": statistic, "p_value": p, "n_scored": 7}
    doc: dict[str, Any] = {"result": core} if nested else dict(core)
    doc["curve"] = [{"n_scored": n, "statistic": s, "p_value": q} for n, s, q in curve]
    path = tmp_path_factory.mktemp("r") / "r.json"
    path.write_bytes(orjson.dumps(doc))
    got = load_radioactivity(path)
    assert (got.statistic, got.p_value, got.n_scored) == (statistic, p, 7)
    assert [(c.n_scored, c.statistic, c.p_value) for c in got.curve] == curve


@settings(max_examples=60, deadline=None)
@given(
    junk=st.recursive(
        st.none() | st.booleans() | _finite | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=8,
    )
)
def test_arbitrary_json_is_accepted_or_refused_cleanly(
    tmp_path_factory: pytest.TempPathFactory, junk: Any
) -> None:
    path = tmp_path_factory.mktemp("j") / "j.json"
    path.write_bytes(orjson.dumps(junk))
    for loader in (load_radioactivity, load_attribution):
        try:
            loader(path)
        except InputError as exc:
            assert str(path) in exc.message
