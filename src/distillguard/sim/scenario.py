"""Scenarios of the traffic simulator: what populations and campaigns to simulate, and how.

A scenario is a TOML file validated by :class:`Scenario`. Shipped scenarios (``tiny``, ``small``,
``seed-2026``, ``adversarial``) are package data and are loaded by name with
:func:`load_scenario`; any other argument is read as a path. Every knob is documented on its field
(``Field(description=...)``), in the shipped files and in ``docs/simulator.md``.

Campaigns take a ``difficulty`` (``easy``, ``medium``, ``hard``, ``adversarial``): a preset of
knob values that the keys written in the campaign's table override, so a scenario can say
``difficulty = "hard"`` and still pin, say, ``accounts_per_ip``.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillguard.errors import ConfigurationError

__all__ = [
    "DIFFICULTY_PRESETS",
    "Campaign",
    "CampaignStrategy",
    "Capability",
    "Difficulty",
    "IpMode",
    "IpRotation",
    "ModelRelease",
    "Population",
    "PopulationKind",
    "ProxyNetwork",
    "Scenario",
    "Timing",
    "list_scenarios",
    "load_scenario",
    "parse_scenario",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PopulationKind(StrEnum):
    """Kinds of legitimate traffic, each with its own timing and prompt behaviour."""

    DEVELOPER = "developer"
    """Individual developers and hobbyists: light, bursty, office-hours traffic."""
    CHAT_APP = "chat_app"
    """Chat and product apps: heavy-tailed volumes, strong daily and weekly rhythm."""
    ENTERPRISE_BATCH = "enterprise_batch"
    """Service accounts running nightly batch jobs with templated prompts."""
    SHARED_NAT = "shared_nat"
    """Universities and companies: many accounts behind one NAT /24."""
    EVAL_RUNNER = "eval_runner"
    """Evaluation/benchmark runners: the same benchmark prompts from several accounts."""
    RESELLER = "reseller"
    """Legitimate resellers and proxy services: high, diverse volume from datacenter IPs."""


class IpMode(StrEnum):
    """Where an account's requests come from."""

    STATIC = "static"
    """A few home/office addresses of consumer ISPs per account."""
    NAT = "nat"
    """The organisation's /24 behind a NAT: accounts of one organisation share addresses."""
    DATACENTER = "datacenter"
    """Cloud/hosting addresses (servers, CI runners, proxies)."""
    MOBILE = "mobile"
    """Carrier-grade NAT addresses of mobile networks, changing often."""
    RESIDENTIAL_PROXY = "residential_proxy"
    """The scenario's residential proxy network (see :class:`ProxyNetwork`)."""


class IpRotation(StrEnum):
    """How a campaign account uses the proxy network's addresses."""

    PER_REQUEST = "per_request"
    """A new exit address for every request."""
    STICKY = "sticky"
    """One exit address per session of ``session_minutes``."""
    STATIC = "static"
    """A fixed exit address per account, shared by ``accounts_per_ip`` accounts."""


class Timing(StrEnum):
    """How a campaign schedules its requests."""

    SYNCHRONIZED = "synchronized"
    """All active accounts fire in the same short waves, around the clock."""
    LOAD_BALANCED = "load_balanced"
    """Requests spread evenly over accounts and time, around the clock, with low variance."""
    RANDOMIZED = "randomized"
    """Poisson traffic imitating a human daily rhythm, heavy-tailed per-account volumes."""


class CampaignStrategy(StrEnum):
    """Prompt strategies of distillation campaigns."""

    COT_ELICITATION = "cot_elicitation"
    """Ask the model to articulate the reasoning behind a completed answer, step by step."""
    RUBRIC_GRADING = "rubric_grading"
    """Use the model as a reward model: grade a response against a rubric."""
    CAPABILITY_SWEEP = "capability_sweep"
    """Systematic sweeps over capability areas (see :class:`Capability`)."""
    TEMPLATED = "templated"
    """A few fixed templates with filled slots."""
    PARAPHRASED = "paraphrased"
    """The campaign's templates, each request paraphrased so no two look the same."""


class Capability(StrEnum):
    """Capability areas of systematic sweeps (and of legitimate technical prompts)."""

    CODING = "coding"
    MATH = "math"
    AGENTIC = "agentic"
    DATA_ANALYSIS = "data_analysis"
    VISION = "vision"


class Difficulty(StrEnum):
    """How hard a campaign is to detect; a preset of campaign knobs."""

    EASY = "easy"
    MEDIUM = "medium"
    HARD = "hard"
    ADVERSARIAL = "adversarial"


#: Knob values each difficulty sets unless the campaign's table gives them explicitly.
DIFFICULTY_PRESETS: Final[dict[Difficulty, dict[str, Any]]] = {
    Difficulty.EASY: {
        "timing": "synchronized",
        "payment_mode": "shared",
        "payment_pool": 3,
        "ip_rotation": "static",
        "accounts_per_ip": 40,
        "rotate_user_agent": False,
        "shared_client_fingerprint": True,
        "paraphrase_share": 0.0,
        "burst_size": 200,
    },
    Difficulty.MEDIUM: {
        "timing": "load_balanced",
        "payment_mode": "rotating",
        "payment_pool": 20,
        "ip_rotation": "sticky",
        "accounts_per_ip": 8,
        "rotate_user_agent": False,
        "shared_client_fingerprint": True,
        "paraphrase_share": 0.2,
        "burst_size": 50,
    },
    Difficulty.HARD: {
        "timing": "randomized",
        "payment_mode": "rotating",
        "payment_pool": 200,
        "ip_rotation": "per_request",
        "accounts_per_ip": 3,
        "rotate_user_agent": True,
        "shared_client_fingerprint": False,
        "paraphrase_share": 0.6,
        "burst_size": 10,
    },
    Difficulty.ADVERSARIAL: {
        "timing": "randomized",
        "payment_mode": "unique",
        "payment_pool": 1,
        "ip_rotation": "static",
        "accounts_per_ip": 1,
        "rotate_user_agent": True,
        "shared_client_fingerprint": False,
        "paraphrase_share": 1.0,
        "burst_size": 2,
    },
}

Weights = dict[str, float]


def _check_weights(name: str, weights: Weights, allowed: set[str] | None = None) -> None:
    if not weights:
        raise ValueError(f"{name} must name at least one entry")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"{name} weights must be >= 0 with a positive sum")
    if allowed is not None:
        unknown = sorted(set(weights) - allowed)
        if unknown:
            raise ValueError(f"{name}: unknown entries {unknown}; allowed: {sorted(allowed)}")


#: Prompt kinds legitimate populations can draw from (``prompt_mix`` keys).
LEGIT_PROMPT_KINDS: Final = frozenset(
    {"general", "coding", "math", "agentic", "data_analysis", "vision", "templated", "benchmark"}
)
#: Client families (``clients`` keys).
CLIENT_FAMILIES: Final = frozenset(
    {"openai_python", "openai_node", "httpx", "requests", "curl", "browser", "langchain", "go"}
)


class ModelRelease(_Model):
    """A model the provider serves, available from ``released_day`` (0 = before the start)."""

    name: str = Field(description="Model name as it appears in the `model` field.")
    released_day: float = Field(default=0.0, ge=0, description="Release day after the start.")
    reasoning: bool = Field(default=False, description="Returns visible reasoning text.")


class ProxyNetwork(_Model):
    """The residential proxy network rented by campaigns (and by some legitimate users)."""

    exit_ips: int = Field(default=50_000, ge=10, description="Exit addresses in the network.")
    asns: int = Field(default=300, ge=1, description="Residential/mobile ASNs they spread over.")


class Population(_Model):
    """A legitimate population of accounts."""

    name: str = Field(description="Label written to labels.parquet (`population`).")
    kind: PopulationKind = Field(description="Traffic behaviour, see PopulationKind.")
    accounts: int = Field(ge=1, description="Number of accounts.")
    accounts_per_org: int = Field(default=1, ge=1, description="Accounts per organisation.")
    exchanges_per_account_per_day: float = Field(
        gt=0, description="Mean daily requests of an account (mean of a log-normal)."
    )
    volume_sigma: float = Field(
        default=1.0, ge=0, le=3, description="Log-normal sigma of per-account volume (tail)."
    )
    diurnal_amplitude: float = Field(
        default=0.6, ge=0, le=1, description="Day/night swing of the rate (0 = flat)."
    )
    peak_hour_local: float = Field(default=14.0, ge=0, lt=24, description="Local peak hour.")
    weekend_factor: float = Field(
        default=0.5, ge=0, le=3, description="Weekend rate relative to weekdays."
    )
    countries: Weights = Field(
        default_factory=lambda: {
            "US": 0.4,
            "GB": 0.1,
            "DE": 0.1,
            "IN": 0.15,
            "FR": 0.05,
            "JP": 0.05,
            "BR": 0.05,
            "CA": 0.05,
            "SG": 0.05,
        },
        description="Country weights (ISO 3166-1 alpha-2); sets the time zone of the rhythm.",
    )
    signup_channels: Weights = Field(
        default_factory=lambda: {"self_serve": 1.0}, description="Sign-up channel weights."
    )
    tiers: Weights = Field(default_factory=lambda: {"free": 0.6, "tier1": 0.4})
    ip_mode: IpMode = Field(default=IpMode.STATIC, description="Where requests come from.")
    ips_per_account: int = Field(default=2, ge=1, description="Addresses an account uses.")
    proxy_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of accounts using the residential proxy network (privacy VPNs).",
    )
    clients: Weights = Field(
        default_factory=lambda: {
            "openai_python": 0.6,
            "openai_node": 0.2,
            "curl": 0.1,
            "requests": 0.1,
        },
        description="Client family weights (user agent and TLS fingerprint).",
    )
    prompt_mix: Weights = Field(
        default_factory=lambda: {
            "general": 0.6,
            "coding": 0.25,
            "math": 0.1,
            "data_analysis": 0.05,
        },
        description="Prompt kind weights: general, coding, math, agentic, data_analysis, vision, "
        "templated, benchmark.",
    )
    system_prompt_share: float = Field(default=0.3, ge=0, le=1)
    multi_turn_share: float = Field(default=0.2, ge=0, le=1)
    adoption_days: float = Field(
        default=10.0, gt=0, description="Mean delay before an account moves to a new model."
    )
    batch_hour_local: float = Field(
        default=2.0, ge=0, lt=24, description="enterprise_batch: local hour jobs start."
    )
    batch_hours: float = Field(
        default=3.0, gt=0, le=12, description="enterprise_batch: duration of a nightly job."
    )
    benchmark_size: int = Field(
        default=200, ge=1, description="eval_runner: prompts in one benchmark run."
    )
    runs_per_week: float = Field(default=2.0, gt=0, description="eval_runner: runs per week.")
    run_minutes: float = Field(
        default=30.0, gt=0, le=60, description="eval_runner: duration of one run."
    )
    error_rate: float = Field(default=0.01, ge=0, le=0.5, description="Share of 4xx/5xx.")

    @model_validator(mode="after")
    def _check(self) -> Population:
        _check_weights(f"population {self.name}: countries", self.countries)
        _check_weights(f"population {self.name}: signup_channels", self.signup_channels)
        _check_weights(f"population {self.name}: tiers", self.tiers)
        _check_weights(f"population {self.name}: clients", self.clients, set(CLIENT_FAMILIES))
        _check_weights(
            f"population {self.name}: prompt_mix", self.prompt_mix, set(LEGIT_PROMPT_KINDS)
        )
        return self


class Campaign(_Model):
    """A distillation campaign: a hydra cluster of accounts harvesting outputs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    campaign_id: str = Field(description="Label written to labels.parquet (`campaign_id`).")
    difficulty: Difficulty = Field(default=Difficulty.MEDIUM, description="Preset of knobs.")
    accounts: int = Field(
        ge=1, description="Accounts created over the scenario, replacements included."
    )
    concurrent_accounts: int = Field(ge=1, description="Accounts active at once.")
    exchanges_per_account_per_day: float = Field(gt=0, description="Mean daily requests.")
    start_day: float = Field(default=0.0, ge=0, description="Day the campaign starts sending.")
    signup_channels: Weights = Field(
        default_factory=lambda: {
            "education": 0.4,
            "startup_program": 0.35,
            "research_program": 0.25,
        },
        description="Abused sign-up channels.",
    )
    burst_size: int = Field(ge=1, description="Accounts created together in one sign-up burst.")
    burst_minutes: float = Field(default=20.0, gt=0, description="Duration of a sign-up burst.")
    payment_mode: Literal["shared", "rotating", "unique"] = Field(
        description="shared: a small pool for all; rotating: one per burst; unique: per account."
    )
    payment_pool: int = Field(ge=1, description="shared: number of payment fingerprints.")
    countries: Weights = Field(
        default_factory=lambda: {"US": 0.5, "SG": 0.2, "GB": 0.1, "CA": 0.1, "DE": 0.1},
        description="Declared countries.",
    )
    ip_rotation: IpRotation = Field(description="How exit addresses are used.")
    accounts_per_ip: int = Field(ge=1, description="static rotation: accounts per exit address.")
    session_minutes: float = Field(default=30.0, gt=0, description="sticky: session length.")
    timing: Timing = Field(description="Request scheduling.")
    wave_minutes: float = Field(
        default=6.0, gt=0, le=60, description="synchronized: length of a wave in each hour."
    )
    rate_limit_per_hour: int = Field(
        default=120, ge=1, description="Per-account limit; requests over it get HTTP 429."
    )
    replacement_delay_hours: float = Field(
        default=2.0, ge=0, description="Delay between a ban and the replacement's first request."
    )
    strategies: Weights = Field(description="Prompt strategy weights (CampaignStrategy).")
    capabilities: Weights = Field(
        default_factory=lambda: {
            "coding": 0.4,
            "math": 0.2,
            "agentic": 0.2,
            "data_analysis": 0.1,
            "vision": 0.1,
        },
        description="capability_sweep: area weights.",
    )
    templates: int = Field(default=6, ge=1, le=40, description="Distinct templates used.")
    paraphrase_share: float = Field(
        ge=0, le=1, description="Share of templated requests that are paraphrased."
    )
    rotate_user_agent: bool = Field(description="Each request picks a random user agent.")
    shared_client_fingerprint: bool = Field(
        description="All accounts share one client (TLS) fingerprint (same tooling)."
    )
    pivot_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of traffic moved to a new model on release."
    )
    pivot_hours: float = Field(default=20.0, gt=0, description="Hours the pivot takes.")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        difficulty = Difficulty(data.get("difficulty", Difficulty.MEDIUM))
        return {**DIFFICULTY_PRESETS[difficulty], **data}

    @model_validator(mode="after")
    def _check(self) -> Campaign:
        if self.concurrent_accounts > self.accounts:
            raise ValueError(f"campaign {self.campaign_id}: concurrent_accounts > accounts")
        _check_weights(
            f"campaign {self.campaign_id}: strategies",
            self.strategies,
            {s.value for s in CampaignStrategy},
        )
        _check_weights(
            f"campaign {self.campaign_id}: capabilities",
            self.capabilities,
            {c.value for c in Capability},
        )
        _check_weights(f"campaign {self.campaign_id}: signup_channels", self.signup_channels)
        _check_weights(f"campaign {self.campaign_id}: countries", self.countries)
        return self


class Scenario(_Model):
    """A complete simulation: time span, models, populations and campaigns."""

    name: str = Field(description="Scenario name.")
    description: str = Field(default="", description="What the scenario is for.")
    start: str = Field(default="2026-01-05T00:00:00Z", description="RFC 3339 start (UTC).")
    days: float = Field(gt=0, le=366, description="Duration in days.")
    models: list[ModelRelease] = Field(
        default_factory=lambda: [ModelRelease(name="dg-large-1")],
        description="Models served, with release days.",
    )
    proxy_network: ProxyNetwork = Field(default_factory=ProxyNetwork)
    populations: list[Population] = Field(default_factory=list)
    campaigns: list[Campaign] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        from distillguard._internal.timeutil import parse_rfc3339

        try:
            parse_rfc3339(self.start)
        except ValueError as exc:
            raise ValueError(f"start: {exc}") from None
        if not self.populations and not self.campaigns:
            raise ValueError("a scenario needs at least one population or campaign")
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names):
            raise ValueError("population names must be unique")
        ids = [c.campaign_id for c in self.campaigns]
        if len(set(ids)) != len(ids):
            raise ValueError("campaign ids must be unique")
        if not self.models or self.models[0].released_day != 0:
            raise ValueError("the first model must have released_day = 0")
        days = [m.released_day for m in self.models]
        if days != sorted(days):
            raise ValueError("models must be listed in release order")
        return self


_SCENARIO_PACKAGE: Final = "distillguard.sim.scenarios"


def list_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files(_SCENARIO_PACKAGE)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name (``small``) or a scenario TOML file by path.

    Raises:
        ConfigurationError: no such scenario or file, invalid TOML, or an invalid knob (the
            message names the knob).
    """
    text: str
    source: str
    shipped = list_scenarios()
    if isinstance(name_or_path, str) and name_or_path in shipped:
        source = f"scenario {name_or_path!r}"
        text = (
            resources.files(_SCENARIO_PACKAGE)
            .joinpath(f"{name_or_path}.toml")
            .read_text(encoding="utf-8")
        )
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigurationError(
                f"no scenario named {str(name_or_path)!r} and no such file",
                hint=f"use one of {', '.join(shipped)} or a path to a .toml file",
            )
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read scenario file {path}: {exc}") from None
    return parse_scenario(text, source=source)


def parse_scenario(text: str, *, source: str = "<string>") -> Scenario:
    """Validate scenario TOML text (see :func:`load_scenario`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: invalid TOML: {exc}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(
            f"{source}: invalid scenario: {problems}",
            hint="see docs/simulator.md for every knob",
        ) from None
