"""Scan results: today's files read back, written back byte for byte, and bad folders refused."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.errors import InputError, ResultFormatError
from distillguard.results import (
    ACCOUNT_SCORES_SCHEMA,
    CAMPAIGNS_FILE,
    SCAN_FILES,
    SCAN_SUMMARY_FILE,
    Campaign,
    read_account_scores,
    read_scan,
    write_scan,
)

#: Written by the scan writer of the release before the results package (see data/README.md).
GOLDEN = Path(__file__).parent / "data" / "scan-v1"

_GOOD_CAMPAIGN: dict[str, Any] = {
    "campaign_id": "camp-1",
    "accounts": ["a", "b"],
    "score": 0.8,
    "first_seen": "2026-01-01T00:00:00Z",
    "last_seen": "2026-01-02T00:00:00Z",
    "exchanges": 10,
    "signals": {"synchrony_p": 0.01},
}


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(GOLDEN, tmp_path / "scan"))


def test_reads_a_folder_written_by_the_previous_release() -> None:
    scan = read_scan(GOLDEN)
    first, second = scan.campaigns
    assert first.campaign_id == "camp-0123456789ab"
    assert first.accounts == ("acct-1", "acct-2é")
    assert first.first_seen_us == 1767225600123456 and first.last_seen_us == 1767312000000001
    assert first.first_seen == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert first.signals["synchrony_p"] == 1.8e-06 and first.signals["unavailable"] is None
    assert second.accounts == ("acct-4",) and second.signals == {}
    assert scan.accounts.num_rows == 4
    assert scan.accounts["account_id"].to_pylist() == ["acct-1", "acct-2é", "acct,3", "acct-4"]
    assert scan.summary["accounts_flagged"] == 3
    assert scan.campaign("camp-ba9876543210") is second and scan.campaign("nope") is None


def _golden_inputs() -> tuple[pa.Table, list[Campaign], dict[str, Any]]:
    """The inputs the previous release's writer turned into :data:`GOLDEN` (data/README.md)."""
    reasons = ["elicits reasoning in 29/30 requests (base 2%, p=1e-9)", "shares a card; and a /24"]
    rows = [
        {"account_id": "acct-1", "score": 0.93, "flagged": True,
         "campaign_id": "camp-0123456789ab", "reasons": reasons},
        {"account_id": "acct-2é", "score": 0.8125, "flagged": True,
         "campaign_id": "camp-0123456789ab", "reasons": ["clockwork timing"]},
        {"account_id": "acct,3", "score": 0.0, "flagged": False, "campaign_id": None,
         "reasons": []},
        {"account_id": "acct-4", "score": 0.5, "flagged": True,
         "campaign_id": "camp-ba9876543210", "reasons": None},
    ]  # fmt: skip
    signals = {"accounts": 2, "cot_share": 0.6, "synchrony_p": 1.8e-06, "unavailable": None}
    campaigns = [
        Campaign("camp-0123456789ab", ["acct-1", "acct-2é"], 0.8713, 1767225600123456,
                 1767312000000001, 57, signals),
        Campaign("camp-ba9876543210", ["acct-4"], 0.5, 1767225600000000, 1767225600000000, 1, {}),
    ]  # fmt: skip
    summary = {
        "source": "golden",
        "accounts_read": 4,
        "accounts_flagged": 3,
        "campaigns": 2,
        "unavailable_signals": ["infrastructure: user agents"],
        "timings_s": {"load": 0.125},
    }
    return pa.Table.from_pylist(rows, schema=ACCOUNT_SCORES_SCHEMA), campaigns, summary


def test_same_inputs_give_the_bytes_of_the_previous_release(tmp_path: Path) -> None:
    table, campaigns, summary = _golden_inputs()
    write_scan(tmp_path, accounts=table, campaigns=campaigns, summary=summary)
    for name in SCAN_FILES:
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), name
    scan = read_scan(tmp_path)
    assert list(scan.campaigns) == campaigns and scan.accounts.equals(table)


def test_timestamps_are_written_as_the_previous_release_did() -> None:
    # the old writer: format_ts(datetime.fromtimestamp(us / 1e6, UTC)); exact microseconds now
    @settings(max_examples=300, deadline=None)
    @given(us=st.integers(0, 7_258_118_400_000_000))  # 1970 .. 2200
    def check(us: int) -> None:
        old = datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        campaign = Campaign("c", ["a"], 1.0, us, us, 1)
        assert campaign.to_dict()["first_seen"] == old

    check()


_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_signals = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        _json_leaf, lambda x: st.lists(x, max_size=3) | st.dictionaries(st.text(max_size=4), x)
    ),
    max_size=4,
)


@st.composite
def _campaigns(draw: st.DrawFn) -> list[Campaign]:
    ids = draw(st.lists(_ids, unique=True, max_size=4))
    out = []
    for cid in ids:
        first = draw(st.integers(0, 7_258_118_400_000_000))
        out.append(
            Campaign(
                campaign_id=cid,
                accounts=draw(st.lists(_ids, max_size=5)),
                score=draw(st.floats(allow_nan=False, allow_infinity=False)),
                first_seen_us=first,
                last_seen_us=first + draw(st.integers(0, 10**12)),
                exchanges=draw(st.integers(0, 2**40)),
                signals=draw(_signals),
            )
        )
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(campaigns=_campaigns(), scores=st.lists(st.tuples(_ids, st.floats(0, 1)), max_size=6))
def test_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    campaigns: list[Campaign],
    scores: list[tuple[str, float]],
) -> None:
    table = pa.Table.from_pylist(
        [
            {"account_id": a, "score": s, "flagged": s >= 0.5, "campaign_id": None, "reasons": []}
            for a, s in scores
        ],
        schema=ACCOUNT_SCORES_SCHEMA,
    )
    folder = tmp_path_factory.mktemp("scan")
    write_scan(folder, accounts=table, campaigns=campaigns, summary={"campaigns": len(campaigns)})
    got = read_scan(folder)
    assert list(got.campaigns) == campaigns
    assert got.accounts.equals(table)
    assert got.summary == {"campaigns": len(campaigns)}


def _scan_with(tmp_path: Path, campaigns: Any) -> Path:
    folder = _copy(tmp_path)
    (folder / CAMPAIGNS_FILE).write_bytes(orjson.dumps(campaigns))
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"accounts": "a"}, "'accounts' has the wrong type"),
        ({"accounts": ["a", 3]}, "must list account ids"),
        ({"score": "high"}, "'score' has the wrong type"),
        ({"score": True}, "'score' has the wrong type"),
        ({"exchanges": -1}, "negative"),
        ({"exchanges": 1.5}, "'exchanges' has the wrong type"),
        ({"first_seen": "yesterday"}, "RFC 3339"),
        ({"last_seen": "2025-01-01T00:00:00Z"}, "before"),
        ({"signals": []}, "'signals' must be an object"),
        ({"campaign_id": None}, "'campaign_id' has the wrong type"),
    ],
)
def test_bad_campaign_is_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    folder = _scan_with(tmp_path, [{**_GOOD_CAMPAIGN, **change}])
    with pytest.raises(ResultFormatError, match=message) as err:
        read_scan(folder)
    assert "campaigns.json: campaign 0" in err.value.message


def test_bad_scan_files(tmp_path: Path) -> None:
    with pytest.raises(ResultFormatError, match="not a scan output folder"):
        read_scan(tmp_path / "nope")
    folder = _scan_with(tmp_path, {"not": "a list"})
    with pytest.raises(ResultFormatError, match="expected a list"):
        read_scan(folder)
    (folder / CAMPAIGNS_FILE).write_text("[{")
    with pytest.raises(ResultFormatError, match="not valid JSON"):
        read_scan(folder)
    (folder / CAMPAIGNS_FILE).write_bytes(orjson.dumps([_GOOD_CAMPAIGN, _GOOD_CAMPAIGN]))
    with pytest.raises(ResultFormatError, match="appears twice"):
        read_scan(folder)
    (folder / CAMPAIGNS_FILE).unlink()
    with pytest.raises(ResultFormatError, match=r"campaigns\.json does not exist"):
        read_scan(folder)
    (folder / CAMPAIGNS_FILE).write_bytes(b"[]")
    (folder / "account_scores.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(ResultFormatError, match=r"account_scores\.parquet"):
        read_scan(folder)
    (folder / "account_scores.parquet").unlink()
    with pytest.raises(ResultFormatError, match="does not exist"):
        read_account_scores(folder)
    (folder / SCAN_SUMMARY_FILE).write_bytes(b"[1]")
    with pytest.raises(ResultFormatError, match="expected an object"):
        read_scan(folder)


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("score", pa.array(["high"] * 4), "'score' must hold numbers"),
        ("flagged", pa.array([1, 0, 0, 1]), "'flagged' must hold booleans"),
        ("account_id", pa.array([1, 2, 3, 4]), "'account_id' must hold strings"),
    ],
)
def test_account_scores_of_the_wrong_type(
    tmp_path: Path, column: str, values: pa.Array, message: str
) -> None:
    folder = _copy(tmp_path)
    table = pq.read_table(folder / "account_scores.parquet")
    table = table.set_column(table.schema.get_field_index(column), column, values)
    pq.write_table(table, folder / "account_scores.parquet")
    with pytest.raises(ResultFormatError, match=message):
        read_scan(folder)
    pq.write_table(table.drop_columns([column]), folder / "account_scores.parquet")
    with pytest.raises(ResultFormatError, match=f"column\\(s\\) {column} missing"):
        read_account_scores(folder)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("distillguard-scan/2", "newer than this release reads"),
        ("distillguard-scan/0", "no such version"),
        ("distillguard-radioactivity/1", "is not a distillguard-scan result"),
        ("scan v2", "not a format marker"),
        (2, "not a format marker"),
    ],
)
def test_format_marker(tmp_path: Path, marker: Any, message: str) -> None:
    folder = _copy(tmp_path)
    summary = orjson.loads((folder / SCAN_SUMMARY_FILE).read_bytes())
    (folder / SCAN_SUMMARY_FILE).write_bytes(orjson.dumps({**summary, "format": marker}))
    with pytest.raises(ResultFormatError, match=message) as err:
        read_scan(folder)
    assert isinstance(err.value, InputError)
    with pytest.raises(ResultFormatError, match=message):
        read_account_scores(folder)


def test_version_one_marker_and_no_summary_read(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / SCAN_SUMMARY_FILE).write_bytes(orjson.dumps({"format": "distillguard-scan/1"}))
    assert read_scan(folder).summary == {"format": "distillguard-scan/1"}
    (folder / SCAN_SUMMARY_FILE).unlink()
    assert read_scan(folder).summary == {}


_junk = st.recursive(
    _json_leaf,
    lambda x: st.lists(x, max_size=3) | st.dictionaries(st.text(max_size=12), x, max_size=4),
    max_leaves=12,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    campaigns=_junk
    | st.lists(
        st.fixed_dictionaries(
            {}, optional={k: st.just(v) | _junk for k, v in _GOOD_CAMPAIGN.items()}
        )
        | _junk
    ),
    summary=_junk,
)
def test_arbitrary_json_is_read_or_refused_cleanly(
    tmp_path_factory: pytest.TempPathFactory, campaigns: Any, summary: Any
) -> None:
    folder = Path(shutil.copytree(GOLDEN, tmp_path_factory.mktemp("j") / "scan"))
    (folder / CAMPAIGNS_FILE).write_bytes(orjson.dumps(campaigns))
    (folder / SCAN_SUMMARY_FILE).write_bytes(orjson.dumps(summary))
    try:
        got = read_scan(folder)
    except ResultFormatError as exc:
        assert str(folder) in exc.message
    else:
        assert isinstance(campaigns, list) and len(got.campaigns) == len(campaigns)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_cleanly(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    folder = Path(shutil.copytree(GOLDEN, tmp_path_factory.mktemp("b") / "scan"))
    (folder / CAMPAIGNS_FILE).write_bytes(data)
    (folder / "account_scores.parquet").write_bytes(data)
    with pytest.raises(ResultFormatError):
        read_scan(folder)
