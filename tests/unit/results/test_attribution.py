"""Attribution results: the previous release's output read and rewritten byte for byte, the
minimal hand-written shape, round trips, and bad files refused with the file and field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.errors import ResultFormatError
from distillguard.fingerprint import AttributionResult as FingerprintAttributionResult
from distillguard.results import (
    AttributionResult,
    FamilyScore,
    ProviderScore,
    dumps_attribution,
    read_attribution,
    write_attribution,
)

#: ``distillguard --json fingerprint attribute`` output of the previous release (data/README.md).
GOLDEN = Path(__file__).parent / "data" / "attribution-v1.json"


def _golden_result() -> AttributionResult:
    """The result the previous release printed into :data:`GOLDEN` (same inputs)."""
    ranking = (
        FamilyScore(
            "gpt-3.5",
            6.123456789,
            1.2e-05,
            3e-06,
            "gpt-3.5-turbo-0613",
            {"opening_words": 4.12345, "char_ngrams": 5.55555, "style": -0.1234567},
            provider="openai",
            p_style=2e-06,
            identity={"p_family": 0.004, "formula": "I am ChatGPT", "hits": 3},
        ),
        FamilyScore(
            "llama-2",
            1.5,
            0.31,
            0.155,
            "llama-2-13b-chat",
            {"style": 0.333333},
            provider="meta",
            p_style=0.155,
        ),
        FamilyScore("unknown-fam", -0.25, 1.0, 0.9, "mystery", {}, provider=None, p_style=None),
    )
    return AttributionResult(
        suspect="vicuna-7b.jsonl.gz",
        verdict="gpt-3.5",
        alpha=0.01,
        ranking=ranking,
        n_prompts=805,
        channels=("opening_words", "char_ngrams", "style"),
        null_pairs=120,
        null_units=16,
        explanation={
            "closest": "gpt-3.5-turbo-0613",
            "why": ["opening words", "n-grams"],
            "shared_phrases": [{"phrase": "as an ai language model", "suspect": 12, "closest": 30}],
        },
        provider_verdict="openai",
        provider_ranking=(
            ProviderScore("openai", 1.2e-05, 3e-06, "gpt-3.5"),
            ProviderScore("meta", 0.31, 0.155, "llama-2"),
        ),
        extra={
            "teacher": {"target": "gpt-3.5-turbo", "learned": True, "p_value": 0.0001},
            "baseline": {"family": "gpt-3.5", "reference": "gpt-3.5-turbo-0613"},
        },
    )


def test_one_type_for_producer_and_reader() -> None:
    assert FingerprintAttributionResult is AttributionResult


def test_same_result_gives_the_bytes_of_the_previous_release(tmp_path: Path) -> None:
    assert dumps_attribution(_golden_result()) == GOLDEN.read_bytes()
    write_attribution(tmp_path / "a.json", _golden_result())
    assert (tmp_path / "a.json").read_bytes() == GOLDEN.read_bytes()


def test_reads_the_previous_release_and_rewrites_it_unchanged(tmp_path: Path) -> None:
    got = read_attribution(GOLDEN)
    assert got.verdict == "gpt-3.5" and got.alpha == 0.01 and got.suspect == "vicuna-7b.jsonl.gz"
    top = got.ranking[0]
    assert top.statistic == 6.1235 and top.channels == {
        "opening_words": 4.123,
        "char_ngrams": 5.556,
        "style": -0.123,
    }
    assert top.identity is not None and top.identity["p_family"] == 0.004
    assert got.ranking[2].provider is None and got.ranking[2].p_style is None
    assert got.provider_ranking[1] == ProviderScore("meta", 0.31, 0.155, "llama-2")
    assert (got.n_prompts, got.null_pairs, got.null_units) == (805, 120, 16)
    assert list(got.extra) == ["teacher", "baseline"]
    write_attribution(tmp_path / "again.json", got)
    assert (tmp_path / "again.json").read_bytes() == GOLDEN.read_bytes()


def test_the_minimal_shape(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(
        orjson.dumps(
            {"verdict": None, "ranking": [{"family": "f", "statistic": 2, "p_value": 0.5}]}
        )
    )
    got = read_attribution(path)
    assert got.verdict is None and got.ranking == (FamilyScore("f", 2.0, 0.5),)
    assert got.suspect is None and got.alpha is None and got.method is None
    assert got.n_prompts is None and got.provider_ranking == () and got.extra == {}


_finite = st.floats(-1e6, 1e6, allow_nan=False)
_p = st.floats(0.0, 1.0)
_name = st.text(max_size=10)
_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _finite | _name
_obj = st.dictionaries(_name, st.recursive(_leaf, lambda x: st.lists(x, max_size=3)), max_size=3)
_families = st.builds(
    FamilyScore,
    family=_name,
    statistic=_finite,
    p_value=_p,
    p_raw=st.none() | _p,
    reference=st.none() | _name,
    channels=st.dictionaries(_name, _finite, max_size=3),
    provider=st.none() | _name,
    p_style=st.none() | _p,
    identity=st.none() | _obj,
)
_results = st.builds(
    AttributionResult,
    suspect=st.none() | _name,
    verdict=st.none() | _name,
    alpha=st.none() | _p,
    ranking=st.lists(_families, max_size=4).map(tuple),
    n_prompts=st.none() | st.integers(0, 10**6),
    channels=st.lists(_name, max_size=3).map(tuple),
    null_pairs=st.none() | st.integers(0, 10**6),
    null_units=st.none() | st.integers(0, 10**6),
    explanation=_obj,
    method=st.none() | _name,
    provider_verdict=st.none() | _name,
    provider_ranking=st.lists(
        st.builds(ProviderScore, provider=_name, p_value=_p, p_raw=st.none() | _p, family=_name),
        max_size=3,
    ).map(tuple),
    extra=st.dictionaries(st.sampled_from(["teacher", "baseline", "note"]), _leaf),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(result=_results)
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, result: AttributionResult) -> None:
    """Statistics and channels are written rounded (4 and 3 decimals): what is read back is the
    rounded result, and writing that again gives the same bytes."""
    path = tmp_path_factory.mktemp("a") / "a.json"
    write_attribution(path, result)
    got = read_attribution(path)
    assert got.ranking == tuple(
        FamilyScore(
            f.family,
            round(f.statistic, 4),
            f.p_value,
            f.p_raw,
            f.reference,
            {k: round(v, 3) for k, v in f.channels.items()},
            f.provider,
            f.p_style,
            f.identity,
        )
        for f in result.ranking
    )
    assert (got.suspect, got.verdict, got.alpha, got.method) == (
        result.suspect,
        result.verdict,
        result.alpha,
        result.method,
    )
    assert got.provider_ranking == result.provider_ranking and got.extra == result.extra
    assert dumps_attribution(got) == path.read_bytes()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected an object"),
        ({"verdict": None}, "'ranking' is missing"),
        ({"verdict": 3, "ranking": []}, "'verdict'"),
        ({"verdict": None, "ranking": [{"family": "f", "statistic": 1}]}, r"ranking\[0\]"),
        ({"verdict": None, "ranking": ["f"]}, r"ranking\[0\] is not an object"),
        ({"ranking": [{"family": "f", "statistic": 1, "p_value": 2}]}, "p-value"),
        ({"ranking": [], "alpha": "0.01"}, "'alpha' has the wrong type"),
        ({"ranking": [], "n_prompts": -1}, "'n_prompts' is negative"),
        ({"ranking": [], "null": {"pairs": "many"}}, "null: field 'pairs'"),
        ({"ranking": [], "channels": [1]}, "'channels' must list"),
        ({"ranking": [], "provider_ranking": [{"provider": "p"}]}, r"provider_ranking\[0\]"),
        ({"ranking": [], "format": "distillguard-attribution/2"}, "newer than this release"),
        ({"ranking": [], "format": "distillguard-scan/1"}, "not a distillguard-attribution"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, doc: Any, message: str) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(ResultFormatError, match=message) as err:
        read_attribution(path)
    assert str(path) in err.value.message


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ResultFormatError, match="does not exist"):
        read_attribution(tmp_path / "nope.json")
    (tmp_path / "f.json").write_bytes(GOLDEN.read_bytes()[:-40])
    with pytest.raises(ResultFormatError, match="not valid JSON"):
        read_attribution(tmp_path / "f.json")


_junk = st.recursive(
    _leaf, lambda x: st.lists(x, max_size=3) | st.dictionaries(_name, x, max_size=4), max_leaves=12
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=_junk,
    mutate=st.tuples(
        st.sampled_from(["ranking", "provider_ranking", "null", "alpha", "explanation", "format"]),
        _junk,
    ),
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
            read_attribution(path)
        except ResultFormatError as exc:
            assert str(path) in exc.message
