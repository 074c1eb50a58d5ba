"""Radioactivity results: the previous release's files read and rewritten byte for byte, the loose
shape, round trips, and bad files refused with the file and the field named."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.errors import ResultFormatError
from distillguard.keyring import WatermarkKey
from distillguard.radioactivity import (
    KgramFilter,
    ModeResult,
    RadioactivityReport,
    RadioactivityScorer,
    TokenText,
)
from distillguard.results import (
    CurvePoint,
    PooledTest,
    RadioactivityResult,
    SubjectResult,
    read_radioactivity,
    write_radioactivity,
)
from distillguard.watermark import KGWConfig, KGWWatermark

DATA = Path(__file__).parent / "data"
#: Written by ``RadioactivityReport.write_json`` of the previous release (data/README.md).
GOLDEN = DATA / "radioactivity-v1.json"
GOLDEN_NO_CONTROL = DATA / "radioactivity-v1-nocontrol.json"


def _key(name: str) -> WatermarkKey:
    return WatermarkKey(
        kid=name,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        secret=hashlib.sha256(name.encode()).digest(),
    )


def _texts(seed: int, n: int = 6) -> list[TokenText]:
    rng = np.random.default_rng(seed)
    return [TokenText.of(rng.integers(0, 500, size=200), prompt_len=5) for _ in range(n)]


def _golden_reports() -> tuple[RadioactivityReport, RadioactivityReport]:
    """The runs the previous release wrote into the two golden files (same code there)."""
    scheme = KGWWatermark(KGWConfig(), key=_key("wm-golden"))
    filt = KgramFilter.from_texts(_texts(1, 3), width=scheme.context_width)
    s = RadioactivityScorer(scheme, kgram_filter=filt, curve_points=8)
    s.add_texts(_texts(2))
    suspect = ModeResult.from_scorer(
        s, subject="student-7b", mode="open", role="suspect", n_texts=6
    )
    c = RadioactivityScorer(KGWWatermark(KGWConfig(), key=_key("wm-control")), curve_points=8)
    c.add_texts(_texts(3))
    control = ModeResult.from_scorer(
        c,
        subject="student-7b (key wm-control)",
        mode="open",
        role="control",
        n_texts=6,
        notes=["control key: fresh"],
    )
    both = RadioactivityReport(
        suspect=suspect,
        control=control,
        alpha=1e-3,
        extra={"key_id": "wm-golden", "control_key_id": "wm-control"},
    )
    alone = RadioactivityReport(
        suspect=suspect, control=None, alpha=0.05, tracing={"payload": 5, "p_value": 0.01}
    )
    return both, alone


def test_the_producer_writes_the_bytes_of_the_previous_release(tmp_path: Path) -> None:
    both, alone = _golden_reports()
    both.write_json(tmp_path / "a.json")
    alone.write_json(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == GOLDEN.read_bytes()
    assert (tmp_path / "b.json").read_bytes() == GOLDEN_NO_CONTROL.read_bytes()
    assert read_radioactivity(tmp_path / "a.json") == both.to_result()


def test_reads_the_previous_release_and_rewrites_it_unchanged(tmp_path: Path) -> None:
    got = read_radioactivity(GOLDEN)
    assert got.verdict == "not detected" and got.alpha == 1e-3
    assert got.suspect.subject == "student-7b" and got.suspect.mode == "open"
    assert got.method == "kgw-binomial" and got.suspect.detection.key_id == "wm-golden"
    assert got.n_scored == 810 and got.statistic == 212.0
    assert got.curve and all(p.n_texts is not None for p in got.curve)
    assert got.curve[-1].p_value == got.p_value
    assert got.control is not None and got.control.notes == ("control key: fresh",)
    assert got.extra == {"key_id": "wm-golden", "control_key_id": "wm-control"}
    for golden in (GOLDEN, GOLDEN_NO_CONTROL):
        write_radioactivity(tmp_path / "again.json", read_radioactivity(golden))
        assert (tmp_path / "again.json").read_bytes() == golden.read_bytes()
    alone = read_radioactivity(GOLDEN_NO_CONTROL)
    assert alone.control is None and alone.tracing == {"payload": 5, "p_value": 0.01}


_finite = st.floats(allow_nan=False, allow_infinity=False)
_p = st.floats(0.0, 1.0)
_count = st.integers(0, 2**40)
_text = st.text(max_size=10)
_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _finite | _text
_obj = st.dictionaries(_text, st.recursive(_leaf, lambda x: st.lists(x, max_size=3)), max_size=3)
_points = st.builds(
    CurvePoint, n_scored=_count, statistic=_finite, p_value=_p, n_texts=st.none() | _count
)
_tests = st.builds(
    PooledTest,
    method=_text,
    statistic=_finite,
    p_value=_p,
    n_scored=st.none() | _count,
    key_id=st.none() | _text,
    n_tokens=st.none() | _count,
    n_duplicates=st.none() | _count,
    expected=st.none() | _finite,
    details=_obj,
)


def _subjects(role: str) -> st.SearchStrategy[SubjectResult]:
    return st.builds(
        SubjectResult,
        subject=st.none() | _text,
        mode=st.none() | st.sampled_from(["open", "closed", "texts"]),
        role=st.just(role),
        detection=_tests,
        curve=st.lists(_points, max_size=4).map(tuple),
        n_texts=st.none() | _count,
        n_filtered_out=st.none() | _count,
        filter=st.none() | _obj,
        notes=st.lists(_text, max_size=2).map(tuple),
    )


_results = st.builds(
    RadioactivityResult,
    suspect=_subjects("suspect"),
    control=st.none() | _subjects("control"),
    alpha=st.none() | _p,
    verdict=st.none() | st.sampled_from(["radioactive", "not detected"]),
    tracing=st.none() | _obj,
    extra=st.dictionaries(st.sampled_from(["key_id", "control_key_id", "note"]), _leaf),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(result=_results)
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, result: RadioactivityResult) -> None:
    path = tmp_path_factory.mktemp("r") / "r.json"
    write_radioactivity(path, result)
    assert read_radioactivity(path) == result


@settings(max_examples=60, deadline=None)
@given(
    statistic=_finite,
    p=_p,
    curve=st.lists(st.tuples(st.integers(0, 10**9), _finite, _p), max_size=5),
    nested=st.booleans(),
)
def test_the_loose_shape(
    tmp_path_factory: pytest.TempPathFactory,
    statistic: float,
    p: float,
    curve: list[tuple[int, float, float]],
    nested: bool,
) -> None:
    core = {"method": "kgw", "statistic": statistic, "p_value": p, "n_scored": 7}
    doc: dict[str, Any] = {"result": core} if nested else dict(core)
    doc["curve"] = [{"n_scored": n, "statistic": s, "p_value": q} for n, s, q in curve]
    doc["suspect"] = "model-x"
    path = tmp_path_factory.mktemp("r") / "r.json"
    path.write_bytes(orjson.dumps(doc))
    got = read_radioactivity(path)
    assert (got.statistic, got.p_value, got.n_scored) == (statistic, p, 7)
    assert [(x.n_scored, x.statistic, x.p_value) for x in got.curve] == curve
    assert got.suspect.subject == "model-x" and got.control is None and got.verdict is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected an object"),
        ({"statistic": 1.0, "p_value": 0.5}, "'method' is missing"),
        ({"method": "m", "statistic": 1.0, "p_value": 1.5}, "p-value"),
        ({"method": "m", "statistic": "x", "p_value": 0.5}, "'statistic'"),
        ({"method": "m", "statistic": 1.0, "p_value": 0.5, "n_scored": -3}, "n_scored"),
        ({"method": "m", "statistic": 1.0, "p_value": 0.5, "curve": [{"n_scored": 1}]}, "curve"),
        ({"method": "m", "statistic": 1.0, "p_value": 0.5, "curve": {}}, "'curve' must be a list"),
        ({"result": 3}, "'result' must be an object"),
        ({"format": "distillguard-radioactivity/2"}, "newer than this release reads"),
        ({"format": "distillguard-scan/1"}, "not a distillguard-radioactivity result"),
        ({"format": "distillguard-radioactivity/1"}, "suspect is not an object"),
        (
            {"format": "distillguard-radioactivity/1", "suspect": {"detection": 1}},
            "'detection' must be an object",
        ),
    ],
)
def test_bad_files_are_named(tmp_path: Path, doc: Any, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(ResultFormatError, match=message) as err:
        read_radioactivity(path)
    assert str(path) in err.value.message


@pytest.mark.parametrize(
    ("path", "change", "message"),
    [
        (("suspect", "detection", "p_value"), -0.1, "suspect.detection: field 'p_value'"),
        (("suspect", "curve"), [{"n_scored": -1, "statistic": 0, "p_value": 1}], "negative"),
        (("suspect", "notes"), [1], "'notes' must list strings"),
        (("control", "n_texts"), "six", "control: field 'n_texts'"),
        (("control", "filter"), [], "'filter' must be an object"),
        (("alpha",), "0.01", "'alpha' has the wrong type"),
        (("verdict",), 1, "'verdict' must be a string"),
    ],
)
def test_bad_fields_of_the_format(
    tmp_path: Path, path: tuple[str, ...], change: Any, message: str
) -> None:
    doc = orjson.loads(GOLDEN.read_bytes())
    at = doc
    for key in path[:-1]:
        at = at[key]
    at[path[-1]] = change
    file = tmp_path / "r.json"
    file.write_bytes(orjson.dumps(doc))
    with pytest.raises(ResultFormatError, match=message):
        read_radioactivity(file)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ResultFormatError, match="does not exist"):
        read_radioactivity(tmp_path / "nope.json")
    with pytest.raises(ResultFormatError, match="is a folder"):
        read_radioactivity(tmp_path)
    (tmp_path / "r.json").write_bytes(GOLDEN.read_bytes()[:200])
    with pytest.raises(ResultFormatError, match="not valid JSON"):
        read_radioactivity(tmp_path / "r.json")


_junk = st.recursive(
    _leaf,
    lambda x: st.lists(x, max_size=3) | st.dictionaries(_text, x, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=_junk,
    mutate=st.tuples(st.sampled_from(["suspect", "control", "alpha", "format", "tracing"]), _junk),
)
def test_arbitrary_json_is_read_or_refused_cleanly(
    tmp_path_factory: pytest.TempPathFactory, junk: Any, mutate: tuple[str, Any]
) -> None:
    folder = tmp_path_factory.mktemp("j")
    doc = orjson.loads(GOLDEN.read_bytes())
    doc[mutate[0]] = mutate[1]
    for i, content in enumerate((junk, doc)):
        path = folder / f"{i}.json"
        path.write_bytes(orjson.dumps(content))
        try:
            read_radioactivity(path)
        except ResultFormatError as exc:
            assert str(path) in exc.message
