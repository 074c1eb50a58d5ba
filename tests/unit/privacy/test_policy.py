"""Retention policy: parsing the configuration, overrides, minimisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distillguard.config import RetentionSettings
from distillguard.errors import ConfigurationError
from distillguard.privacy import AccountProfile, Minimisation, RetentionPolicy

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _policy(**kw: object) -> RetentionPolicy:
    return RetentionPolicy.from_settings(RetentionSettings.model_validate(kw))


def test_defaults_keep_everything() -> None:
    policy = _policy()
    rule = policy.rule_for(AccountProfile("a"))
    assert (rule.content_days, rule.metadata_days, str(rule.minimise)) == (None, None, "keep")
    assert rule.content_cutoff(NOW) is None and rule.metadata_cutoff(NOW) is None
    assert not policy.has_limits and not policy.minimises


def test_overrides_inherit_and_first_match_wins() -> None:
    policy = _policy(
        content_days=30,
        metadata_days=365,
        overrides=[
            {"accounts": ["vip"], "content_days": "forever"},
            {"tiers": ["enterprise"], "minimise": "hash", "content_days": 0},
            {"channels": ["education"], "metadata_days": 90, "minimise": "truncate:40"},
            {"tiers": ["enterprise"], "content_days": 7},  # shadowed by the earlier one
        ],
    )
    default = policy.rule_for(AccountProfile("x", tier="free", channel="self_serve"))
    assert (default.content_days, default.metadata_days) == (30, 365)
    vip = policy.rule_for(AccountProfile("vip", tier="enterprise"))
    assert (vip.content_days, vip.metadata_days, str(vip.minimise)) == (None, 365, "keep")
    ent = policy.rule_for(AccountProfile("e", tier="enterprise", channel="education"))
    assert (ent.content_days, ent.metadata_days, str(ent.minimise)) == (0, 365, "hash")
    edu = policy.rule_for(AccountProfile("s", channel="education"))
    assert (edu.content_days, edu.metadata_days, str(edu.minimise)) == (30, 90, "truncate:40")
    assert edu.metadata_cutoff(NOW) == NOW - timedelta(days=90)
    assert policy.has_limits and policy.minimises
    assert policy.to_dict()["overrides"][1]["tiers"] == ["enterprise"]


def test_override_must_name_someone() -> None:
    with pytest.raises(ConfigurationError, match="names no accounts"):
        _policy(overrides=[{"content_days": 3}])


@pytest.mark.parametrize(
    "bad", ["", "truncate", "truncate:0", "truncate:-3", "hash:1", "KEEP", "x"]
)
def test_minimisation_parse_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        Minimisation.parse(bad)


def test_bad_settings_are_refused() -> None:
    for bad in ({"minimise": "truncate:0"}, {"content_days": -1}, {"metadata_days": "never"}):
        with pytest.raises(ValueError):
            RetentionSettings.model_validate(bad)


@given(st.text(max_size=200), st.integers(min_value=1, max_value=50))
def test_minimisation_apply(text: str, n: int) -> None:
    assert Minimisation.parse("keep").apply(text) == text
    assert Minimisation.parse("drop").apply(text) == ""
    assert Minimisation.parse(f"truncate:{n}").apply(text) == text[:n]
    hashed = Minimisation.parse("hash").apply(text)
    assert hashed is not None and hashed.startswith("sha256:") and len(hashed) == 71
    assert Minimisation.parse("hash").apply(text + "x") != hashed
    assert Minimisation.parse("hash").apply(None) is None
    assert str(Minimisation.parse(f"truncate:{n}")) == f"truncate:{n}"
