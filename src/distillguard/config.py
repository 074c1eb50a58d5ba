"""Configuration: a ``distillguard.toml`` file, ``DISTILLGUARD_*`` environment variables, defaults.

Precedence, highest first: options given on the command line, environment variables, the TOML
file, built-in defaults. Sections of the file map to nested models; in the environment a section
and its key are joined by a double underscore, e.g. ``DISTILLGUARD_STORE__URL``.

The file is found, in order, at the path given with ``--config``, at ``$DISTILLGUARD_CONFIG``, as
``./distillguard.toml``, or as ``distillguard.toml`` in the per-user configuration folder
(:func:`default_config_file`); without one, the defaults are used. Unknown keys in the file are
refused, so that a typo does not silently fall back to a default.

The home (the SQLite store, the keyring, quarantine files) is ``home`` of the file or
``$DISTILLGUARD_HOME``; by default the per-user data folder of the platform
(:func:`default_home`: ``~/.local/share/distillguard`` on Linux), never the working directory, so
that a command run inside a git checkout leaves no keyring where ``git add .`` would commit it.

Example::

    home = "/var/lib/distillguard"

    [store]
    url = "postgresql://dg@db.internal:5432/distillguard"

    [ingest]
    batch_size = 10000
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import unquote

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from distillguard.errors import ConfigurationError

__all__ = [
    "AggregateLimitSettings",
    "AlertSettings",
    "ConsoleSettings",
    "GatewayImagesSettings",
    "GatewaySettings",
    "ImageSettings",
    "IngestSettings",
    "KeyringSettings",
    "LedgerSettings",
    "LoggingSettings",
    "NamedUpstreamSettings",
    "PassportSettings",
    "RedactionSettings",
    "RetentionOverride",
    "RetentionSettings",
    "RouteSettings",
    "SecretKind",
    "SecretUrl",
    "Settings",
    "SimSettings",
    "StoreSettings",
    "WatermarkSettings",
    "WebhookUrl",
    "default_cache_dir",
    "default_config_file",
    "default_home",
    "find_config_file",
    "load_settings",
    "mask_url",
    "scrub_url_secrets",
    "secret_kind",
    "url_secrets",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_NAME = "distillguard.toml"
#: The application name of the per-user folders (platformdirs).
APP_NAME = "distillguard"
#: The home of DistillGuard 0.1 and older: ``.distillguard`` in the working directory.
LEGACY_HOME = Path(".distillguard")


def default_home() -> Path:
    """The per-user data folder, the default ``home``: ``$XDG_DATA_HOME/distillguard`` or
    ``~/.local/share/distillguard`` on Linux, ``~/Library/Application Support/distillguard`` on
    macOS, ``%LOCALAPPDATA%\\distillguard`` on Windows (platformdirs). Not created here."""
    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def default_config_file() -> Path:
    """The per-user configuration file, read when no other is found:
    ``$XDG_CONFIG_HOME/distillguard/distillguard.toml`` (``~/.config/...``) on Linux."""
    return platformdirs.user_config_path(APP_NAME, appauthor=False) / DEFAULT_CONFIG_NAME


def default_cache_dir() -> Path:
    """The per-user cache folder (``$XDG_CACHE_HOME/distillguard``, ``~/.cache/distillguard``
    on Linux): things that can be recomputed, such as fingerprints of reference models."""
    return platformdirs.user_cache_path(APP_NAME, appauthor=False)


_CONFIG_FILE: ContextVar[Path | None] = ContextVar("distillguard_config_file", default=None)


class SecretKind:
    """Marks a setting as secret-bearing (see :data:`SecretUrl`, :data:`WebhookUrl`).

    ``kind`` is ``"url"`` (credentials in the user info or query are masked) or ``"webhook"``
    (everything after the host is masked too: webhook paths carry tokens).
    """

    __slots__ = ("kind",)

    def __init__(self, kind: Literal["url", "webhook"]) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"SecretKind({self.kind!r})"


#: A URL that may carry credentials (``user:password@``, ``?password=`` / ``token=`` ...): a plain
#: ``str`` to the code that uses it, masked by :func:`mask_url` wherever settings are shown,
#: ``repr`` included.
SecretUrl = Annotated[str, SecretKind("url")]
#: A webhook URL: its path is a credential too (``https://hooks.slack.com/services/T/B/XXXX``).
WebhookUrl = Annotated[str, SecretKind("webhook")]


def _masked_repr_args(model: BaseModel) -> Iterator[tuple[str | None, Any]]:
    """``repr`` arguments with secret-bearing settings masked (a logged model shows none)."""
    for name, info in type(model).model_fields.items():
        if info.repr:
            kind = secret_kind(info)
            value = getattr(model, name)
            yield name, value if kind in (None, "str") else _mask_value(value, kind)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        return _masked_repr_args(self)


class StoreSettings(_Section):
    """Where records are kept."""

    url: SecretUrl | None = Field(
        default=None,
        description=(
            "Store URL: 'sqlite:///PATH' (default: HOME/store.sqlite) or "
            "'postgresql://USER@HOST:PORT/DB[?schema=NAME]'."
        ),
    )

    @field_validator("url")
    @classmethod
    def _check_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.match(r"^(sqlite|postgresql|postgres)://", value):
            raise ValueError("store url must start with sqlite:// or postgresql://")
        return value


class KeyringSettings(_Section):
    """Where the keyring file lives."""

    path: Path | None = Field(default=None, description="Keyring file (default HOME/keyring.json).")
    passphrase: SecretStr | None = Field(
        default=None,
        description="Reserved: passphrase to encrypt the keyring at rest (not used yet).",
    )


class IngestSettings(_Section):
    """Reading and loading exchange logs."""

    batch_size: int = Field(default=5000, ge=1, le=1_000_000, description="Records per batch.")
    max_record_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Longest accepted JSONL line; longer ones are quarantined unread.",
    )
    quarantine_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Most bytes one validate/ingest run writes to its quarantine file (each "
        "record copy is cut to 64 KiB); later rejected records are counted, not copied.",
    )


class PassportSettings(_Section):
    """Agent passports and signed-request verification (see docs/passports.md)."""

    registry: Literal["file", "store"] = Field(
        default="file",
        description="Where passports and revocations live: their own SQLite file, or the store "
        "(PostgreSQL shares them between gateway replicas).",
    )
    registry_path: Path | None = Field(
        default=None, description="SQLite file of issued passports and revocations."
    )
    revocation_refresh_s: float = Field(
        default=1.0,
        ge=0,
        le=300,
        description="Verifiers reload the revocation list this often (a revocation made "
        "elsewhere takes effect within this time).",
    )
    revocation_max_stale_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long verifiers keep using the last revocation list while the registry "
        "cannot be read, before refusing requests.",
    )
    issuer: str = Field(default="distillguard", description="The 'iss' claim of passports.")
    default_ttl_days: int = Field(default=30, ge=1, le=3650, description="Passport lifetime.")
    authorities: list[str] = Field(
        default_factory=list,
        description="Accepted @authority values (host[:port]); empty accepts any.",
    )
    validity_window_s: int = Field(default=300, ge=1, le=3600, description="Signature window.")
    clock_skew_s: int = Field(default=60, ge=0, le=600, description="Clock-skew allowance.")
    replay_cache: Literal["memory", "redis", "redis-async"] = Field(
        default="memory",
        description="Nonce replay cache: in process, or Redis for replicas ('redis-async': "
        "redis.asyncio, for RequestVerifier.averify and the ASGI middleware).",
    )
    redis_url: SecretUrl = Field(
        default="redis://127.0.0.1:6379/0", description="Redis for nonces."
    )
    redis_prefix: str = Field(default="dg:nonce:", description="Redis key prefix for nonces.")


_MINIMISE = r"^(keep|hash|drop|truncate:[1-9][0-9]{0,6})$"
Days = Annotated[int, Field(ge=0)] | Literal["forever"]


class RetentionOverride(_Section):
    """Retention for some accounts: listed ids, tiers or sign-up channels (first match wins).

    A setting left out is inherited from the ``[retention]`` section.
    """

    accounts: list[str] = Field(default_factory=list, description="Account ids.")
    tiers: list[str] = Field(default_factory=list, description="Account tiers.")
    channels: list[str] = Field(default_factory=list, description="Sign-up channels.")
    content_days: Days | None = Field(default=None, description="Days content is kept.")
    metadata_days: Days | None = Field(default=None, description="Days records are kept.")
    minimise: str | None = Field(
        default=None, pattern=_MINIMISE, description="'keep', 'hash', 'drop' or 'truncate:N'."
    )


class RetentionSettings(_Section):
    """Retention limits, minimisation at ingest and the actor named in erasure records.

    Days count from the exchange's ``ts``; ``"forever"`` (the default) sets no limit.
    """

    content_days: Days = Field(
        default="forever", description="Days prompt/response content is kept (e.g. 30)."
    )
    metadata_days: Days = Field(
        default="forever", description="Days the record itself is kept (e.g. 365)."
    )
    minimise: str = Field(
        default="keep",
        pattern=_MINIMISE,
        description="Content kept at ingest: 'keep', 'hash', 'drop' or 'truncate:N' (chars).",
    )
    overrides: list[RetentionOverride] = Field(default_factory=list)
    actor: str = Field(default="retention-policy", min_length=1, description="Actor of apply.")


class RedactionSettings(_Section):
    """Masking of personal data and secrets in reports, console views and logs."""

    kinds: list[str] | None = Field(
        default=None, description="Built-in kinds to enable (default: all but ipv4/ipv6)."
    )
    disable: list[str] = Field(default_factory=list, description="Built-in kinds to disable.")
    style: Literal["label", "hash"] = Field(default="label", description="[EMAIL] or [EMAIL:h].")
    custom: dict[str, str] = Field(
        default_factory=dict, description="Extra patterns, LABEL = 'regex'."
    )
    logs: bool = Field(default=True, description="Redact log records of the CLI.")


class SimSettings(_Section):
    """The traffic simulator."""

    instructions_dir: Path | None = Field(
        default=None,
        description=(
            "Folder of AlpacaEval outputs (*.jsonl.gz) to draw real prompts and answers from; "
            "default: shared/data/alpaca_eval_dev/outputs found above the working directory or "
            "the package, else the copy shipped with the package."
        ),
    )


class LedgerSettings(_Section):
    """The Merkle ledger of stored exchanges."""

    origin: str = Field(
        default="distillguard.local/ledger",
        pattern=r"^[^\s+]+$",
        description=(
            "Name of the log in its checkpoints (C2SP origin), e.g. 'example.com/distillguard'; "
            "fixed when the ledger is created."
        ),
    )


class AggregateLimitSettings(_Section):
    """A rate limit on an aggregate key shared by many accounts (GCRA, per minute)."""

    key: Literal["cluster", "payment", "subnet24", "asn", "client_fingerprint"] = Field(
        description="What the limit aggregates over."
    )
    requests_per_minute: int = Field(default=600, ge=1, description="Sustained requests/minute.")
    tokens_per_minute: int = Field(default=600_000, ge=1, description="Sustained tokens/minute.")
    burst: int = Field(default=60, ge=1, description="Requests allowed at once above the rate.")


class NamedUpstreamSettings(_Section):
    """An OpenAI-compatible upstream that routes name (``[gateway.upstreams.NAME]``)."""

    url: SecretUrl = Field(description="Base URL (…/v1).")
    api_key: SecretStr | None = Field(default=None, description="Bearer for this upstream.")


class RouteSettings(_Section):
    """Where requests for some models go: named upstreams tried in order (fallback on
    unreachable, timeout, 5xx, 429, open circuit; a 4xx is final). First matching route wins."""

    models: list[str] = Field(
        min_length=1, description="Model names; a trailing * matches a prefix ('gpt-*', '*')."
    )
    upstreams: list[str] = Field(
        min_length=1, description="Names of [gateway.upstreams.NAME] sections, tried in order."
    )
    model: str | None = Field(
        default=None, description="The name the upstreams are asked for (default: the client's)."
    )


class AlertSettings(_Section):
    """Webhook alerts when an account or campaign crosses a risk level."""

    webhooks: list[WebhookUrl] = Field(
        default_factory=list, description="URLs alerts are POSTed to (shown as host only)."
    )
    level: float = Field(default=0.8, ge=0.0, le=1.0, description="Risk that raises an alert.")
    retries: int = Field(default=5, ge=0, le=20, description="Retries per webhook.")
    backoff_s: float = Field(default=0.5, gt=0, le=60, description="First retry delay (doubles).")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="Timeout of one POST.")
    dead_letter: Path | None = Field(
        default=None, description="JSONL file of undeliverable alerts (default HOME/alerts.dead)."
    )


class GatewayImagesSettings(_Section):
    """``POST /v1/images/generations`` on the gateway (see docs/gateway.md, docs/multimodal.md)."""

    enabled: bool = Field(default=True, description="Serve the images endpoint.")
    upstream: Literal["synthetic", "openai"] = Field(
        default="synthetic",
        description="'synthetic' (deterministic test images) or 'openai' (an OpenAI-compatible "
        "image API).",
    )
    upstream_url: SecretUrl | None = Field(
        default=None, description="Base URL (…/v1) for 'openai'."
    )
    upstream_api_key: SecretStr | None = Field(default=None, description="Bearer for upstream.")
    upstream_timeout_s: float = Field(default=180.0, gt=0, le=3600, description="Read timeout.")
    models: list[str] = Field(
        default_factory=lambda: ["stub-image-1"], description="Image models served."
    )
    max_n: int = Field(default=4, ge=1, le=10, description="Most images per request.")
    output_format: Literal["PNG", "JPEG"] = Field(
        default="PNG", description="Format of the delivered (watermarked, signed) images."
    )


class GatewaySettings(_Section):
    """The OpenAI-compatible gateway (``distillguard serve``)."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on.")
    public_url: SecretUrl | None = Field(
        default=None,
        description="The URL clients call (https://api.example.com); its host is the accepted "
        "@authority when [passport] authorities is empty.",
    )
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes.")
    replicas: int = Field(
        default=1,
        ge=1,
        le=10_000,
        description="Gateway replicas the deployment runs (containers, pods; the Helm chart and "
        "compose file set it): with more than one, serve refuses in-process nonces and limits.",
    )
    upstream: Literal["stub", "openai", "local"] = Field(
        default="stub",
        description="'stub' (deterministic), 'openai' (any OpenAI-compatible URL), 'local' "
        "(a transformers model path).",
    )
    upstream_url: SecretUrl | None = Field(
        default=None, description="Base URL (…/v1) for 'openai'."
    )
    upstream_api_key: SecretStr | None = Field(default=None, description="Bearer for upstream.")
    upstream_model_path: Path | None = Field(default=None, description="Model for 'local'.")
    models: list[str] = Field(default_factory=lambda: ["stub-1"], description="Served models.")
    upstreams: dict[str, NamedUpstreamSettings] = Field(
        default_factory=dict, description="Named OpenAI-compatible upstreams for 'routes'."
    )
    routes: list[RouteSettings] = Field(
        default_factory=list,
        description="Several upstreams routed by model with fallback (used instead of "
        "upstream/upstream_url when set; 'models' lists the names served).",
    )
    upstream_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Read timeout.")
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    upstream_retries: int = Field(default=2, ge=0, le=10, description="Retries on 5xx/connect.")
    breaker_failures: int = Field(default=5, ge=1, le=1000, description="Failures that open it.")
    breaker_reset_s: float = Field(default=30.0, gt=0, le=3600, description="Open time.")
    durability: Literal["sync", "batch"] = Field(
        default="batch", description="'sync': one fsynced commit per exchange; 'batch': group."
    )
    batch_max_size: int = Field(default=256, ge=1, le=100_000, description="Exchanges per group.")
    batch_max_delay_ms: float = Field(default=1.0, ge=0, le=1000, description="Group wait bound.")
    recorder: Literal["auto", "thread", "inline"] = Field(
        default="auto",
        description="Where commits run: a writer thread, or the event loop ('inline'); 'auto' "
        "is inline for a SQLite store with batch durability and no batch_fsync.",
    )
    batch_fsync: bool = Field(
        default=False,
        description="Also fsync each group (SQLite); off: a group survives a process crash, and "
        "the disk flush comes with SQLite's checkpoints.",
    )
    failure_mode: Literal["open", "closed"] = Field(
        default="closed",
        description="When the store or Redis cannot be reached: 'open' keeps answering "
        "(exchanges go to the local spool and are replayed when the store returns; limits and "
        "nonces fall back to this replica's own), 'closed' refuses with 503 and Retry-After.",
    )
    spool_dir: Path | None = Field(
        default=None, description="The local spool of failure_mode = 'open' (default HOME/spool)."
    )
    spool_max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 16,
        description="The spool's bound: when full, requests are refused (503) rather than "
        "answered unrecorded.",
    )
    spool_retry_s: float = Field(
        default=1.0, gt=0, le=300, description="How often the spool's replay tries the store."
    )
    unavailable_retry_after_s: int = Field(
        default=5, ge=1, le=3600, description="Retry-After of the 503 a down dependency causes."
    )
    rate_limits: Literal["memory", "redis"] = Field(default="memory", description="Backend.")
    redis_url: SecretUrl = Field(
        default="redis://127.0.0.1:6379/0", description="Redis for limits."
    )
    redis_prefix: str = Field(default="dg:rl:", description="Redis key prefix for limits.")
    account_requests_per_minute: int = Field(default=600, ge=1, description="Per account.")
    account_tokens_per_minute: int = Field(default=1_000_000, ge=1, description="Per account.")
    aggregate_limits: list[AggregateLimitSettings] = Field(default_factory=list)
    admin_token: SecretStr | None = Field(
        default=None, description="Admin API bearer token (default: HOME/admin.token, created)."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1 << 30, description="Body cap.")
    max_header_bytes: int = Field(
        default=65_536, ge=4096, le=1 << 24, description="Request line + headers cap (431)."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="Longest time to receive a request body."
    )
    trust_forwarded_for: bool = Field(default=False, description="Client IP from X-Forwarded-For.")
    throttle_at: float = Field(default=0.5, ge=0, le=1, description="Risk that throttles.")
    watermark_at: float = Field(default=0.6, ge=0, le=1, description="Risk that adds a payload.")
    canary_at: float = Field(default=0.7, ge=0, le=1, description="Risk that plants canaries.")
    reverify_at: float = Field(
        default=0.85, ge=0, le=1, description="Risk needing re-verification."
    )
    block_at: float = Field(default=0.95, ge=0, le=1, description="Risk that blocks.")
    throttle_factor: float = Field(default=0.1, gt=0, le=1, description="Rate kept when throttled.")
    online_scoring: bool = Field(
        default=True, description="Feed every exchange to the online scorer (monitor.online)."
    )
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    images: GatewayImagesSettings = Field(default_factory=GatewayImagesSettings)

    @model_validator(mode="after")
    def _routes_name_upstreams(self) -> GatewaySettings:
        unknown = sorted({n for r in self.routes for n in r.upstreams} - set(self.upstreams))
        if unknown:
            raise ValueError(f"routes name upstreams not in [gateway.upstreams]: {unknown}")
        return self


class WatermarkSettings(_Section):
    """Output watermarks (see docs/watermark.md); generator and detector read the same values."""

    scheme: Literal["kgw", "aaronson", "synthid", "mpac"] = Field(
        default="kgw", description="Generation-time scheme: kgw | aaronson | synthid | mpac."
    )
    gamma: float = Field(default=0.25, gt=0.0, lt=1.0, description="KGW green fraction.")
    delta: float = Field(default=2.0, ge=0.0, description="KGW/MPAC logit bias.")
    context_width: int = Field(default=1, ge=1, le=64, description="Tokens of context hashed.")
    self_hash: bool = Field(default=False, description="KGW self-hash anchoring.")
    depth: int = Field(default=16, ge=1, le=64, description="SynthID tournament layers.")
    bits: int = Field(default=16, ge=1, le=64, description="MPAC payload bits.")
    tokenizer: str = Field(
        default="word", description="Detection tokenizer: word | byte | a local HF folder."
    )
    fdr: float = Field(
        default=0.01, gt=0.0, lt=1.0, description="scan-dataset false-discovery rate."
    )


class ImageSettings(_Section):
    """Image outputs: the invisible watermark and C2PA manifests (see docs/multimodal.md)."""

    payload_bits: int = Field(default=32, ge=16, le=64, description="Watermark payload bits.")
    sync_bits: int = Field(default=32, ge=16, le=64, description="Key-fixed bits for detection.")
    strength: float = Field(default=2.0, ge=0.25, le=16.0, description="Luma amplitude (0-255).")
    alpha: float = Field(default=1e-3, gt=0, lt=1, description="Detection significance level.")
    c2pa_chain: Path | None = Field(
        default=None,
        description="PEM certificate chain (leaf first) of the C2PA signing key; unset: no C2PA.",
    )
    c2pa_key: Path | None = Field(
        default=None,
        description="PEM Ed25519 private key of c2pa_chain (default: the keyring's ledger key).",
    )
    trust_anchors: Path | None = Field(
        default=None, description="PEM trust anchors for verifying C2PA manifests."
    )
    tsa_url: SecretUrl | None = Field(
        default=None, description="RFC 3161 time-stamp authority URL."
    )


class LoggingSettings(_Section):
    """Library logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"


class ConsoleSettings(_Section):
    """The operator console at ``/console`` of the gateway (see docs/console.md)."""

    enabled: bool = Field(default=True, description="Mount the console at /console.")
    scan_results: Path | None = Field(
        default=None, description="Scan output folder shown as campaigns (distillguard scan --out)."
    )
    result_files: list[Path] = Field(
        default_factory=list, description="Radioactivity/attribution result JSON files to show."
    )
    upload_dir: Path | None = Field(
        default=None, description="Where uploaded result files go (default: HOME/console-results)."
    )
    session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 86400, description="Session life.")
    page_size: int = Field(default=50, ge=5, le=500, description="Accounts per page.")
    secure_cookie: bool = Field(
        default=False, description="Mark the session cookie Secure (set it behind TLS)."
    )


class Settings(BaseSettings):
    """The effective DistillGuard configuration.

    Build it with :func:`load_settings` rather than directly, so that the configuration file is
    found and errors become :class:`~distillguard.errors.ConfigurationError`.
    """

    model_config = SettingsConfigDict(
        env_prefix="DISTILLGUARD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        return _masked_repr_args(self)

    home: Path = Field(
        default_factory=default_home,
        description="Folder for embedded state: the SQLite store, the keyring, quarantine files "
        "(default: the per-user data folder, e.g. ~/.local/share/distillguard).",
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    keyring: KeyringSettings = Field(default_factory=KeyringSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    passport: PassportSettings = Field(default_factory=PassportSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    redaction: RedactionSettings = Field(default_factory=RedactionSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    watermark: WatermarkSettings = Field(default_factory=WatermarkSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def store_url(self) -> str:
        """The store URL, defaulting to the SQLite file under ``home``."""
        if self.store.url:
            return self.store.url
        return f"sqlite:///{self.home / 'store.sqlite'}"

    @property
    def keyring_path(self) -> Path:
        """The keyring file, defaulting to ``HOME/keyring.json``."""
        return self.keyring.path if self.keyring.path is not None else self.home / "keyring.json"

    @property
    def passport_registry_path(self) -> Path:
        """The passport registry file, defaulting to ``HOME/passports.sqlite``."""
        reg = self.passport.registry_path
        return reg if reg is not None else self.home / "passports.sqlite"

    def masked(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict, every secret-bearing setting masked.

        :class:`~pydantic.SecretStr` settings become ``"********"``; :data:`SecretUrl` and
        :data:`WebhookUrl` settings go through :func:`mask_url`.
        """
        data: dict[str, Any] = _mask_secrets(self, self.model_dump(mode="json"))
        data["store"]["url"] = mask_url(self.store_url)
        data["keyring"]["path"] = str(self.keyring_path)
        return data


def secret_kind(info: FieldInfo) -> Literal["str", "url", "webhook"] | None:
    """How a setting holds a secret: a ``SecretStr``, a :data:`SecretUrl`, a :data:`WebhookUrl`
    (alone, optional or in a list), or ``None`` if it holds none."""
    for marker in info.metadata:
        if isinstance(marker, SecretKind):
            return marker.kind
    stack: list[Any] = [info.annotation]
    while stack:
        tp = stack.pop()
        if tp is SecretStr:
            return "str"
        for marker in getattr(tp, "__metadata__", ()):
            if isinstance(marker, SecretKind):
                return marker.kind
        stack.extend(get_args(tp))
    return None


def _mask_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_mask_value(v, kind) for v in value]
    if kind == "str":
        return "********" if value else ""
    return mask_url(str(value), path=kind != "webhook")


def _mask_secrets(model: BaseModel, data: Any) -> Any:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        kind = secret_kind(info)
        if kind is not None:
            data[name] = _mask_value(data[name], kind)
        elif isinstance(value, BaseModel):
            data[name] = _mask_secrets(value, data[name])
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            data[name] = [_mask_secrets(v, d) for v, d in zip(value, data[name], strict=True)]
        elif (
            isinstance(value, dict) and value and isinstance(next(iter(value.values())), BaseModel)
        ):
            data[name] = {k: _mask_secrets(v, data[name][k]) for k, v in value.items()}
    return data


_MASK = "***"
#: Schemes whose path is a location, not a credential: a SQLite file, a database name, a Redis
#: database number. Their path stays readable; every other URL's path is masked segment by
#: segment except plain words (see :func:`mask_url`).
_PATH_SHOWN_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "redis", "rediss", "unix"})
#: A path segment shown in other URLs: a lowercase word (``v1``-style versions included).
_PLAIN_SEGMENT = re.compile(r"[a-z][a-z_.-]{0,23}|v\d{1,2}(?:[a-z]{1,8}\d{0,2})?")
#: Query (and key=value connection-string) parameters whose value stays readable: connection
#: options that carry no credential. Every other parameter's value is masked.
_SHOWN_PARAMS = frozenset(
    {
        "schema",
        "sslmode",
        "connect_timeout",
        "application_name",
        "target_session_attrs",
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "api-version",
    }
)
#: One ``key=value`` of a libpq-style connection string: the value is single-quoted (backslash
#: escapes, spaces allowed) or runs to the next blank.
_DSN_PAIR = re.compile(r"([A-Za-z_][\w.-]*)(\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")
_DSN_START = re.compile(r"\s*[A-Za-z_][\w.-]*\s*=")


def _mask_params(text: str, found: list[str]) -> str:
    """``a=1&b=2`` (or ``;``-separated) with every value not in :data:`_SHOWN_PARAMS` masked."""
    out = []
    for part in re.split(r"([&;])", text):
        if part in ("&", ";", ""):
            out.append(part)
            continue
        key, eq, value = part.partition("=")
        if eq and key.lower() in _SHOWN_PARAMS:
            out.append(part)
        elif eq:
            found.append(value)
            out.append(f"{key}={_MASK if value else ''}")
        else:  # a bare value (``?TOKEN``): all of it
            found.append(part)
            out.append(_MASK)
    return "".join(out)


def _mask_dsn(dsn: str, found: list[str]) -> str:
    def one(m: re.Match[str]) -> str:
        key, eq, value = m.group(1), m.group(2), m.group(3)
        if key.lower() in _SHOWN_PARAMS or not value:
            return m.group(0)
        found.append(value)
        found.append(value.strip("'").replace("\\'", "'"))
        found.extend(value.strip("'").split())
        return f"{key}{eq}{_MASK}"

    return _DSN_PAIR.sub(one, dsn)


def _mask(url: str, *, path: bool) -> tuple[str, list[str]]:
    """The masked form of ``url`` and the secret fragments it masked."""
    found: list[str] = []
    if "://" not in url and _DSN_START.match(url):
        return _mask_dsn(url, found), found
    scheme, sep, rest = url.partition("://")
    if not sep:  # scheme-less: ``user:pw@host/db``
        scheme, rest = "", url
    userinfo = ""
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if colon:
            found += [password, unquote(password), *re.split(r"[/@:?#%]", password)]
        userinfo = f"{user}{colon}{_MASK if colon else ''}@"
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    if not path:
        if tail:
            found.append(tail.lstrip("/"))
        return f"{scheme}{sep}{userinfo}{host}{'/' + _MASK if tail else ''}", found
    tail, hash_, fragment = tail.partition("#")
    tail, qmark, query = tail.partition("?")
    if scheme.lower() not in _PATH_SHOWN_SCHEMES:
        segments = tail.split("/")
        for i, segment in enumerate(segments):
            if segment and not _PLAIN_SEGMENT.fullmatch(segment):
                found.append(segment)
                segments[i] = _MASK
        tail = "/".join(segments)
    if qmark:
        query = _mask_params(query, found)
    if hash_:
        fragment = _mask_params(fragment, found)
    return f"{scheme}{sep}{userinfo}{host}{tail}{qmark}{query}{hash_}{fragment}", found


def mask_url(url: str, *, path: bool = True) -> str:
    """A URL with every credential it may carry masked; the one masking function for URLs.

    * user info: ``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``, also with no
      user (``redis://:pw@h``), with no scheme (``u:pw@h/db``) and passwords holding
      ``/ @ : % ? #`` (the user info ends at the *last* ``@``, so nothing of such a password
      shows); the user name stays readable;
    * every query and fragment value (``?pw=`` ``jwt=`` ``bearer=`` ... → ``pw=***``) except
      the connection options in :data:`_SHOWN_PARAMS` (``schema``, ``sslmode``, ``port``...);
    * the path: kept for ``sqlite``, ``postgresql`` and ``redis`` URLs (a file, a database
      name, a database number); in any other URL every segment but a plain lowercase word or
      an API version (``v1``) is masked: ``https://h/bot123:SECRET/send`` →
      ``https://h/***/send``;
    * libpq ``key=value`` connection strings: every value but those options, quoted values
      whole (``password='se cret'`` → ``password=***``);
    * ``path=False`` (webhooks) masks everything after the host:
      ``https://hooks.slack.com/services/T/B/XXXX`` → ``https://hooks.slack.com/***``.

    Scheme, user name, host and port stay readable.
    """
    return _mask(url, path=path)[0]


def url_secrets(url: str) -> list[str]:
    """The credential fragments of ``url`` (password, its decoded form and its pieces, masked
    parameter values and path segments), for scrubbing them out of a driver's error message."""
    found = _mask(url, path=True)[1]
    return sorted({f for f in found if len(f) >= 3}, key=len, reverse=True)


def scrub_url_secrets(text: str, url: str) -> str:
    """``text`` (e.g. a database driver's error) with every credential fragment of ``url``
    replaced by ``***``; errors that name a URL use :func:`mask_url` for the URL itself."""
    for secret in url_secrets(url):
        text = text.replace(secret, _MASK)
    return text


def find_config_file(explicit: Path | None = None) -> Path | None:
    """Locate the configuration file: the explicit path, ``$DISTILLGUARD_CONFIG``,
    ``./distillguard.toml``, or the per-user :func:`default_config_file`.

    Raises:
        ConfigurationError: an explicitly named file does not exist.
    """
    if explicit is None and os.environ.get("DISTILLGUARD_CONFIG"):
        explicit = Path(os.environ["DISTILLGUARD_CONFIG"])
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigurationError(
                f"configuration file {explicit} does not exist",
                hint="check the --config option or DISTILLGUARD_CONFIG",
            )
        return explicit
    for default in (Path(DEFAULT_CONFIG_NAME), default_config_file()):
        if default.is_file():
            return default
    return None


@contextmanager
def _config_file(path: Path | None) -> Iterator[None]:
    token = _CONFIG_FILE.set(path)
    try:
        yield
    finally:
        _CONFIG_FILE.reset(token)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the effective configuration.

    Args:
        config_file: a TOML file to read; see :func:`find_config_file` for the default search.
        **overrides: values that win over the file and the environment (command-line options).

    Raises:
        ConfigurationError: the file cannot be parsed or a value is invalid; the message names
            the setting and the source.
    """
    path = find_config_file(config_file)
    try:
        with _config_file(path):
            settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        source = f"{path}" if path else "environment/defaults"
        raise ConfigurationError(
            f"invalid configuration ({source}): {problems}",
            hint="fix the value in distillguard.toml or the DISTILLGUARD_* variable",
        ) from None
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigurationError(
            f"cannot read configuration file {path}: {exc}",
            hint="check that it is valid TOML",
        ) from None
    if "home" not in settings.model_fields_set and (LEGACY_HOME / "keyring.json").is_file():
        logger.warning(
            "%s/ here holds a keyring of an older DistillGuard, which kept its home in the "
            "working directory; the default home is now %s. To keep using the old one, set "
            "DISTILLGUARD_HOME=%s (or home in distillguard.toml), and keep it out of any git "
            "checkout",
            LEGACY_HOME,
            settings.home,
            LEGACY_HOME.resolve(),
        )
    return settings
