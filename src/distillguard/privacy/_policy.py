"""Retention policies: how long content and records are kept, and what content ingest keeps.

A :class:`RetentionPolicy` is a default :class:`RetentionRule` plus overrides for some accounts
(by id, tier or sign-up channel; the first matching override wins, and a setting it leaves out
is inherited). Build one from the ``[retention]`` configuration section with
:meth:`RetentionPolicy.from_settings`.

Example (``distillguard.toml``)::

    [retention]
    content_days = 30        # prompts, responses and reasoning
    metadata_days = 365      # the record itself (ids, times, IPs, token counts...)
    minimise = "keep"        # at ingest: keep | hash | drop | truncate:N

    [[retention.overrides]]  # enterprise contracts: no content kept at all
    tiers = ["enterprise"]
    minimise = "hash"
    content_days = 0
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from distillguard.errors import ConfigurationError

if TYPE_CHECKING:
    from distillguard.config import RetentionOverride, RetentionSettings

__all__ = [
    "AccountProfile",
    "Minimisation",
    "RetentionOverrideRule",
    "RetentionPolicy",
    "RetentionRule",
]

MinimiseMode = Literal["keep", "hash", "drop", "truncate"]


@dataclass(frozen=True, slots=True)
class Minimisation:
    """What ingest keeps of prompt, response and reasoning text.

    * ``keep``: everything;
    * ``hash``: each text replaced by ``sha256:<hex>`` of it, so that exact repeats (templates
      sent by many accounts) can still be counted, but the text cannot be read;
    * ``truncate``: the first ``length`` characters of each text;
    * ``drop``: nothing (messages keep their roles, with empty content).
    """

    mode: MinimiseMode = "keep"
    length: int | None = None

    def __post_init__(self) -> None:
        if (self.mode == "truncate") != (self.length is not None):
            raise ConfigurationError("minimisation 'truncate' needs a length, and only it does")
        if self.length is not None and self.length < 1:
            raise ConfigurationError("minimisation 'truncate:N' needs N >= 1")

    @classmethod
    def parse(cls, text: str) -> Minimisation:
        """Parse ``keep``, ``hash``, ``drop`` or ``truncate:N``.

        Raises:
            ConfigurationError: anything else.
        """
        if text in ("keep", "hash", "drop"):
            return cls(mode=text)  # type: ignore[arg-type]
        head, sep, tail = text.partition(":")
        if head == "truncate" and sep and tail.isdigit() and int(tail) >= 1:
            return cls(mode="truncate", length=int(tail))
        raise ConfigurationError(
            f"unknown minimisation {text!r}", hint="use keep, hash, drop or truncate:N"
        )

    def __str__(self) -> str:
        return f"truncate:{self.length}" if self.mode == "truncate" else self.mode

    @property
    def changes_content(self) -> bool:
        """Whether ingest alters content under this setting."""
        return self.mode != "keep"

    def apply(self, text: str | None) -> str | None:
        """The minimised form of one text (None stays None)."""
        if text is None or self.mode == "keep":
            return text
        if self.mode == "hash":
            return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        if self.mode == "drop":
            return ""
        assert self.length is not None
        return text[: self.length]


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Limits for one group of accounts: ``None`` days means no limit."""

    content_days: int | None = None
    metadata_days: int | None = None
    minimise: Minimisation = field(default_factory=Minimisation)

    def __post_init__(self) -> None:
        for name in ("content_days", "metadata_days"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"retention {name} must be >= 0, not {value}")

    def content_cutoff(self, now: datetime) -> datetime | None:
        """Exchanges strictly older than this lose their content (None: never)."""
        return None if self.content_days is None else now - timedelta(days=self.content_days)

    def metadata_cutoff(self, now: datetime) -> datetime | None:
        """Exchanges strictly older than this are erased (None: never)."""
        return None if self.metadata_days is None else now - timedelta(days=self.metadata_days)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "content_days": self.content_days,
            "metadata_days": self.metadata_days,
            "minimise": str(self.minimise),
        }


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """What an override can match on."""

    account_id: str
    tier: str | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class RetentionOverrideRule:
    """An override: whom it applies to and its (fully resolved) rule."""

    accounts: frozenset[str]
    tiers: frozenset[str]
    channels: frozenset[str]
    rule: RetentionRule

    def matches(self, who: AccountProfile) -> bool:
        """Whether the override applies to this account."""
        return (
            who.account_id in self.accounts
            or (who.tier is not None and who.tier in self.tiers)
            or (who.channel is not None and who.channel in self.channels)
        )


def _days(value: int | str | None, inherited: int | None) -> int | None:
    if value is None:
        return inherited
    if value == "forever":
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The default rule and the overrides, first match wins."""

    default: RetentionRule = field(default_factory=RetentionRule)
    overrides: tuple[RetentionOverrideRule, ...] = ()

    @classmethod
    def from_settings(cls, settings: RetentionSettings) -> RetentionPolicy:
        """The policy of a ``[retention]`` configuration section."""
        default = RetentionRule(
            content_days=_days(settings.content_days, None),
            metadata_days=_days(settings.metadata_days, None),
            minimise=Minimisation.parse(settings.minimise),
        )
        return cls(
            default=default, overrides=tuple(_override(o, default) for o in settings.overrides)
        )

    def rule_for(self, who: AccountProfile) -> RetentionRule:
        """The rule that applies to an account."""
        for override in self.overrides:
            if override.matches(who):
                return override.rule
        return self.default

    @property
    def rules(self) -> Sequence[RetentionRule]:
        """Every rule of the policy, the default first."""
        return (self.default, *(o.rule for o in self.overrides))

    @property
    def has_limits(self) -> bool:
        """Whether any rule limits content or records."""
        return any(r.content_days is not None or r.metadata_days is not None for r in self.rules)

    @property
    def minimises(self) -> bool:
        """Whether any rule alters content at ingest."""
        return any(r.minimise.changes_content for r in self.rules)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "default": self.default.to_dict(),
            "overrides": [
                {
                    "accounts": sorted(o.accounts),
                    "tiers": sorted(o.tiers),
                    "channels": sorted(o.channels),
                    **o.rule.to_dict(),
                }
                for o in self.overrides
            ],
        }


def _override(o: RetentionOverride, default: RetentionRule) -> RetentionOverrideRule:
    if not (o.accounts or o.tiers or o.channels):
        raise ConfigurationError(
            "a [[retention.overrides]] entry names no accounts, tiers or channels",
            hint="add accounts = [...], tiers = [...] or channels = [...]",
        )
    rule = RetentionRule(
        content_days=_days(o.content_days, default.content_days),
        metadata_days=_days(o.metadata_days, default.metadata_days),
        minimise=Minimisation.parse(o.minimise) if o.minimise else default.minimise,
    )
    return RetentionOverrideRule(
        accounts=frozenset(o.accounts),
        tiers=frozenset(o.tiers),
        channels=frozenset(o.channels),
        rule=rule,
    )
