"""The client side: sign every request of an ``httpx`` client with an agent key and passport.

:class:`Auth` is an ``httpx.Auth``: give it to ``httpx.Client(auth=...)`` (or ``AsyncClient``)
and every request carries the passport header, a ``Content-Digest`` for a body, a
``Signature-Agent`` header when configured, and an RFC 9421 signature with
``tag="web-bot-auth"``, a fresh nonce and a short validity. The official ``openai`` SDK then works
unchanged::

    client = openai.OpenAI(base_url="https://api.example/v1", api_key="unused",
                           http_client=httpx.Client(auth=Auth.from_files(...)))

``openai`` 3.x ships on the ``httpx2`` fork of httpx: use :func:`httpx2_auth` for it (same
arguments), since ``httpx2.Client`` only accepts ``httpx2.Auth`` objects.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from distillguard.errors import ConfigurationError
from distillguard.passport._credential import agent_jwk, agent_kid
from distillguard.passport._digest import make_content_digest
from distillguard.passport._sfv import serialize_bare_item
from distillguard.passport._signatures import HttpRequest, sign_message
from distillguard.passport._verifier import PASSPORT_HEADER, WEB_BOT_AUTH_TAG

__all__ = ["Auth", "RequestSigner", "httpx2_auth", "load_agent_key"]


def load_agent_key(path: Path) -> Ed25519PrivateKey:
    """Read an agent's Ed25519 private key from a PEM (PKCS#8) file.

    Raises:
        ConfigurationError: the file is missing or is not an unencrypted Ed25519 PEM key.
    """
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot read agent key {path}: {type(exc).__name__}",
            hint="pass the PEM file written by `distillguard passport issue --new-agent-key`",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"agent key {path} is not an Ed25519 key")
    return key


class RequestSigner:
    """Adds passport, digest and signature headers to a request (library independent).

    Args:
        passport: the passport token (compact JWS).
        agent_key: the agent's Ed25519 private key (its public key is bound in the passport).
        signature_agent: value for the ``Signature-Agent`` header (the URL of the key
            directory), or None to omit it.
        validity_s: ``expires - created`` of each signature (at most the verifier's window).
        clock: time source (UNIX seconds).
    """

    def __init__(
        self,
        *,
        passport: str,
        agent_key: Ed25519PrivateKey,
        signature_agent: str | None = None,
        validity_s: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._passport = passport.strip()
        self._key = agent_key
        self.keyid = agent_kid(agent_jwk(agent_key.public_key()))
        self._agent = serialize_bare_item(signature_agent) if signature_agent else None
        self.validity_s = validity_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"RequestSigner(keyid={self.keyid!r})"

    def signed_headers(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> dict[str, str]:
        """The headers to add to a request with this method, URL, headers and body."""
        add: dict[str, str] = {PASSPORT_HEADER: self._passport}
        components = ["@method", "@authority", "@path"]
        if "?" in url:
            components.append("@query")
        components.append(PASSPORT_HEADER)
        if body:
            add["content-digest"] = make_content_digest(body)
            components.append("content-digest")
        if self._agent is not None:
            add["signature-agent"] = self._agent
            components.append("signature-agent")
        drop = {k.lower() for k in add} | {"signature", "signature-input"}
        all_headers = [(k, v) for k, v in headers if k.lower() not in drop] + list(add.items())
        view = HttpRequest.from_url(method, url, headers=all_headers)
        created = int(self._clock())
        out = sign_message(
            view,
            private_key=self._key,
            keyid=self.keyid,
            created=created,
            expires=created + self.validity_s,
            nonce=secrets.token_urlsafe(24),
            tag=WEB_BOT_AUTH_TAG,
            alg=None,
            components=components,
        )
        add["signature-input"] = out.signature_input
        add["signature"] = out.signature
        return add

    def sign(self, request: Any) -> None:
        """Sign an ``httpx``/``httpx2`` request in place (its body must have been read)."""
        headers = [(k, v) for k, v in request.headers.multi_items()]
        add = self.signed_headers(request.method, str(request.url), headers, request.content)
        for name, value in add.items():
            request.headers[name] = value


class Auth(httpx.Auth):
    """An ``httpx.Auth`` that signs every request (see :class:`RequestSigner` for arguments)."""

    requires_request_body = True

    def __init__(
        self,
        *,
        passport: str,
        agent_key: Ed25519PrivateKey,
        signature_agent: str | None = None,
        validity_s: int = 60,
    ) -> None:
        self.signer = RequestSigner(
            passport=passport,
            agent_key=agent_key,
            signature_agent=signature_agent,
            validity_s=validity_s,
        )

    @classmethod
    def from_files(
        cls, *, passport_file: Path, agent_key_file: Path, signature_agent: str | None = None
    ) -> Auth:
        """Read the passport token and the agent key PEM from files."""
        try:
            token = Path(passport_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read passport {passport_file}: {exc}") from None
        return cls(
            passport=token,
            agent_key=load_agent_key(agent_key_file),
            signature_agent=signature_agent,
        )

    def __repr__(self) -> str:
        return f"Auth(keyid={self.signer.keyid!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign the request, then send it."""
        self.signer.sign(request)
        yield request


def httpx2_auth(
    *,
    passport: str,
    agent_key: Ed25519PrivateKey,
    signature_agent: str | None = None,
    validity_s: int = 60,
) -> Any:
    """The same signer as an ``httpx2.Auth``, for clients built on ``httpx2`` (``openai`` 3.x).

    Raises:
        DependencyMissingError: ``httpx2`` is not installed.
    """
    try:
        import httpx2
    except ImportError:
        from distillguard.errors import DependencyMissingError

        raise DependencyMissingError("httpx2 is not installed", hint="pip install httpx2") from None

    signer = RequestSigner(
        passport=passport,
        agent_key=agent_key,
        signature_agent=signature_agent,
        validity_s=validity_s,
    )

    class _Httpx2Auth(httpx2.Auth):
        requires_request_body = True

        def __repr__(self) -> str:
            return f"Httpx2Auth(keyid={signer.keyid!r})"

        def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
            signer.sign(request)
            yield request

    return _Httpx2Auth()
