"""Agents that call the gateway: an Ed25519 key and a passport per account, and signed clients.

Used by the simulator's ``--target`` replay, the benchmark and the tests; also a short example
of what a client of the gateway does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from distillguard.passport import (
    Auth,
    PassportIssuer,
    RateTier,
    RequestSigner,
    Scopes,
    agent_jwk,
    httpx2_auth,
)

__all__ = ["Agent", "AgentFactory"]


@dataclass(frozen=True)
class Agent:
    """An account's agent: its passport token and private key (``repr`` shows neither)."""

    account_id: str
    passport_id: str
    token: str = field(repr=False)
    key: Ed25519PrivateKey = field(repr=False)

    def auth(self) -> Auth:
        """An ``httpx.Auth`` signing every request."""
        return Auth(passport=self.token, agent_key=self.key)

    def httpx2_auth(self) -> Any:
        """The same for ``httpx2`` clients (the ``openai`` SDK)."""
        return httpx2_auth(passport=self.token, agent_key=self.key)

    def signer(self) -> RequestSigner:
        """A library-independent signer."""
        return RequestSigner(passport=self.token, agent_key=self.key)

    def client(self, base_url: str, **kwargs: Any) -> httpx.Client:
        """A signing ``httpx.Client``."""
        return httpx.Client(base_url=base_url, auth=self.auth(), **kwargs)

    def async_client(self, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
        """A signing ``httpx.AsyncClient``."""
        return httpx.AsyncClient(base_url=base_url, auth=self.auth(), **kwargs)


class AgentFactory:
    """Issues agents: a new key, a passport from the keyring's passport key, registered.

    Args:
        issuer: the passport issuer (keyring passport key).
        registry: where the gateway's verifier finds passports and revocations.
        requests_per_minute, tokens_per_day: the rate tier of issued passports.
        ttl_s: passport lifetime.
    """

    def __init__(
        self,
        *,
        issuer: PassportIssuer,
        registry: Any,
        requests_per_minute: int = 600,
        tokens_per_day: int = 10_000_000,
        ttl_s: int = 86_400,
    ) -> None:
        self.issuer = issuer
        self.registry = registry
        self.rate = RateTier(requests_per_minute=requests_per_minute, tokens_per_day=tokens_per_day)
        self.ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"AgentFactory(issuer={self.issuer!r})"

    def close(self) -> None:
        """Close the passport registry (its store connection pool, for a store registry)."""
        close = getattr(self.registry, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> AgentFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> AgentFactory:
        """The factory for the keyring and passport registry of ``settings``."""
        from distillguard.keyring import KeyPurpose, open_keyring
        from distillguard.passport import open_registry

        keyring = open_keyring(settings)
        issuer = PassportIssuer(
            key=keyring.signing_key(KeyPurpose.PASSPORT), issuer=settings.passport.issuer
        )
        return cls(issuer=issuer, registry=open_registry(settings), **kwargs)

    def issue(self, account_id: str, *, org_id: str | None = None) -> Agent:
        """A new agent for ``account_id``."""
        key = Ed25519PrivateKey.generate()
        passport = self.issuer.issue(
            account_id=account_id,
            org_id=org_id or f"org-{account_id}",
            agent_public_jwk=agent_jwk(key.public_key()),
            scopes=Scopes(models=("*",), endpoints=("/v1/*",)),
            rate=self.rate,
            ttl_s=self.ttl_s,
        )
        self.registry.record_issued(passport)
        return Agent(
            account_id=account_id, passport_id=passport.passport_id, token=passport.token, key=key
        )
