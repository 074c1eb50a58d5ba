"""Scenario loading and validation, difficulty presets, and the id/address helpers."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import ConfigurationError
from distillguard.sim import Difficulty, list_scenarios, load_scenario, parse_scenario
from distillguard.sim._engine import _splitmix, hex_ids
from distillguard.sim._net import format_ipv4
from distillguard.sim.scenario import DIFFICULTY_PRESETS

MINIMAL = """
name = "m"
days = 1
[[campaigns]]
campaign_id = "c"
accounts = 10
concurrent_accounts = 5
exchanges_per_account_per_day = 3
strategies = { templated = 1.0 }
"""


def test_shipped_scenarios_load() -> None:
    names = list_scenarios()
    assert {"tiny", "small", "seed-2026", "adversarial"} <= set(names)
    for name in names:
        scenario = load_scenario(name)
        assert scenario.name == name


def test_seed_2026_matches_the_reported_scale() -> None:
    sc = load_scenario("seed-2026")
    fraud = sum(c.accounts for c in sc.campaigns)
    legit = sum(p.accounts for p in sc.populations)
    assert len(sc.campaigns) == 3
    assert 23_000 <= fraud <= 25_000
    assert legit >= 100_000


def test_difficulty_preset_fills_and_explicit_knob_wins() -> None:
    sc = parse_scenario(
        MINIMAL.replace(
            'campaign_id = "c"',
            'campaign_id = "c"\ndifficulty = "adversarial"\naccounts_per_ip = 5',
        )
    )
    c = sc.campaigns[0]
    assert c.difficulty == Difficulty.ADVERSARIAL
    assert c.accounts_per_ip == 5  # explicit
    preset = DIFFICULTY_PRESETS[Difficulty.ADVERSARIAL]
    assert c.payment_mode == preset["payment_mode"] == "unique"
    assert c.paraphrase_share == preset["paraphrase_share"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name = 'x'\ndays = ", "invalid TOML"),
        (MINIMAL + "bogus_knob = 1\n", "bogus_knob"),
        (MINIMAL.replace("concurrent_accounts = 5", "concurrent_accounts = 50"), "concurrent"),
        (MINIMAL.replace("templated = 1.0", "telepathy = 1.0"), "telepathy"),
        (MINIMAL.replace("templated = 1.0", "templated = -1.0"), "weights"),
        (MINIMAL.replace("days = 1", "days = 0"), "days"),
        ('name = "e"\ndays = 1\n', "at least one"),
        (MINIMAL.replace("days = 1", 'days = 1\nstart = "2026-01-05 00:00:00"'), "time zone"),
    ],
)
def test_bad_scenarios_are_refused_with_the_knob_named(text: str, needle: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        parse_scenario(text, source="test.toml")
    assert needle in err.value.message
    assert "test.toml" in err.value.message


def test_unknown_scenario_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no scenario named"):
        load_scenario("no-such-scenario")
    path = tmp_path / "s.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_scenario(path).name == "m"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_fails_with_anything_but_a_configuration_error(text: str) -> None:
    with contextlib.suppress(ConfigurationError):
        parse_scenario(text)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=1, max_size=50))
def test_format_ipv4_matches_ipaddress(values: list[int]) -> None:
    arr = np.array(values, dtype=np.uint32)
    assert format_ipv4(arr).to_pylist() == [str(ipaddress.IPv4Address(v)) for v in values]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=50, unique=True)
)
def test_hex_ids_are_fixed_width_and_distinct(values: list[int]) -> None:
    arr = _splitmix(np.array(values, dtype=np.uint64))
    ids = hex_ids("ex_", arr).to_pylist()
    assert all(len(i) == 19 and i.startswith("ex_") for i in ids)
    assert [int(i[3:], 16) for i in ids] == [int(v) for v in arr]
    assert len(set(ids)) == len(ids)
