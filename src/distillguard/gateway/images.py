"""Images through the gateway: an OpenAI-compatible ``POST /v1/images/generations``.

The request path is the text endpoints' pipeline (:class:`~distillguard.gateway.pipeline.Pipeline`):
bounded body, passport and RFC 9421 signature, the policy action (block and re-verification
refuse and are recorded; throttle scales the limits), GCRA rate limits on requests and tokens,
the upstream (502/504 on failure, recorded with the failure), then provenance, then the exchange
record in the store and the ledger before the answer.

Provenance: every returned image goes through :func:`distillguard.image.protect_image`: an
invisible keyed watermark (the keyring's watermark key) carrying the account's payload (the same
keyed hash of the account id the policy uses for text watermarks,
:func:`~distillguard.gateway.policy.payload_for`), then, when C2PA credentials are configured
(``[image] c2pa_chain``), a C2PA manifest signed with the provider's key. Without credentials
the images are watermarked but carry no manifest; the exchange records which.

Recording: the gateway has no blob store, so the exchange's ``response`` holds a JSON summary of
the images (SHA-256 of the exact bytes delivered, size, format, manifest or not), not the pixels;
the hash lets an investigator match a suspect file to its exchange and ledger leaf.

Token accounting (for the token rate limits): the prompt's tokens at admission, and each image
charged afterwards like a vision input, ``85 + 170 × (512-pixel tiles)`` (765 for 1024×1024).

Upstreams (:class:`ImageUpstream`): :class:`SyntheticImageUpstream`, deterministic natural-looking
images per prompt (tests, demos, load tests), and :class:`OpenAIImageUpstream`, any
OpenAI-compatible image API over httpx with timeouts, retries and a circuit breaker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
import orjson

from distillguard.errors import DistillGuardError, UpstreamError
from distillguard.gateway._api_schema import OPENAI_ERROR_SCHEMA
from distillguard.gateway._http import Receive, Scope, Send, send_bytes
from distillguard.gateway._openai_wire import OPENAI_SHAPE
from distillguard.gateway.pipeline import ErrorShape, Pipeline, Refusal, RequestContext
from distillguard.gateway.policy import payload_for
from distillguard.gateway.upstream import (
    CircuitBreaker,
    CompletionRequest,
    CompletionResult,
    UpstreamHints,
    count_tokens,
    send_with_retries,
)

if TYPE_CHECKING:
    from distillguard.config import Settings
    from distillguard.gateway.app import Gateway
    from distillguard.image import ImageWatermarkConfig, ManifestCredentials
    from distillguard.keyring import Keyring, WatermarkKey

__all__ = [
    "IMAGES_PATH",
    "IMAGES_PREFIX",
    "IMAGE_SCHEME",
    "GeneratedImage",
    "ImageProtector",
    "ImageRequest",
    "ImageResult",
    "ImageUpstream",
    "ImagesEndpoint",
    "OpenAIImageUpstream",
    "ProtectedImage",
    "SyntheticImageUpstream",
    "image_tokens",
    "images_paths_schema",
    "mount_images",
    "parse_image_request",
]

logger = logging.getLogger(__name__)

IMAGES_PREFIX = "/v1/images"
"""Where the images endpoint is mounted."""
IMAGES_PATH = IMAGES_PREFIX + "/generations"
"""The OpenAI-compatible image generation path."""
IMAGE_SCHEME = "distillguard-image-wm-v1"
"""The name recorded for the image watermark scheme."""

_MIN_SIDE = 128
_MAX_SIDE = 2048
_MAX_PROMPT_CHARS = 32_000


# -- request and result --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A validated image generation request.

    Attributes:
        model: the image model asked for.
        prompt: the text prompt.
        n: images to generate.
        width, height: size in pixels.
        quality, style: passed through to an OpenAI-compatible upstream when given.
    """

    model: str
    prompt: str
    n: int = 1
    width: int = 1024
    height: int = 1024
    quality: str | None = None
    style: str | None = None

    @property
    def size(self) -> str:
        """The size as OpenAI writes it (``"1024x1024"``)."""
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image from the upstream: encoded bytes (PNG, JPEG or WebP), and a revised prompt."""

    data: bytes = field(repr=False)
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What the upstream returned."""

    images: tuple[GeneratedImage, ...]


def parse_image_request(body: bytes, *, default_model: str | None, max_n: int) -> ImageRequest:
    """Validate an OpenAI ``images/generations`` body.

    ``response_format`` must be ``b64_json`` (the default here): the gateway keeps no image
    store to serve URLs from.

    Raises:
        ValueError: the body is not a valid request (the message says why; HTTP 400).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    model = data.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise ValueError("'model' must be a non-empty string")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("'prompt' must be a non-empty string")
    if len(prompt) > _MAX_PROMPT_CHARS:
        raise ValueError(f"'prompt' is longer than {_MAX_PROMPT_CHARS} characters")
    n = data.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_n:
        raise ValueError(f"'n' must be an integer between 1 and {max_n}")
    size = data.get("size", "1024x1024")
    if size is None or size == "auto":
        size = "1024x1024"
    if not isinstance(size, str):
        raise ValueError("'size' must be a string such as '1024x1024'")
    w, sep, h = size.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise ValueError("'size' must be WIDTHxHEIGHT, e.g. '1024x1024'")
    width, height = int(w), int(h)
    if not (_MIN_SIDE <= width <= _MAX_SIDE and _MIN_SIDE <= height <= _MAX_SIDE):
        raise ValueError(f"each side of 'size' must be between {_MIN_SIDE} and {_MAX_SIDE}")
    fmt = data.get("response_format", "b64_json")
    if fmt is None:
        fmt = "b64_json"
    if fmt != "b64_json":
        raise ValueError("only response_format 'b64_json' is served (the gateway stores no URLs)")
    quality, style = data.get("quality"), data.get("style")
    if quality is not None and not isinstance(quality, str):
        raise ValueError("'quality' must be a string")
    if style is not None and not isinstance(style, str):
        raise ValueError("'style' must be a string")
    return ImageRequest(
        model=model,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        quality=quality,
        style=style,
    )


def image_tokens(width: int, height: int) -> int:
    """Token cost of one image for the rate limits: ``85 + 170 × ceil(w/512) × ceil(h/512)``."""
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


# -- upstreams ----------------------------------------------------------------------------------


class ImageUpstream(Protocol):
    """The image model behind the gateway."""

    name: str

    def models(self) -> list[str]:
        """The image model names served."""
        ...

    async def generate(self, request: ImageRequest) -> ImageResult:
        """``request.n`` images.

        Raises:
            UpstreamError: the model failed or answered garbage (HTTP 502).
            UpstreamTimeoutError: the model did not answer in time (HTTP 504).
        """
        ...

    def ready(self) -> bool:
        """Whether calls may go through now."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class SyntheticImageUpstream:
    """A deterministic test model: one natural-looking synthetic image per prompt and index.

    The image is :func:`distillguard.image.synthetic_image` seeded by a hash of the
    model, prompt, index and size, encoded as PNG; rendering runs off the event loop.
    """

    name = "synthetic"

    def __init__(self, *, models: Sequence[str] = ("stub-image-1",)) -> None:
        if not models:
            raise ValueError("at least one image model name is needed")
        self._models = list(models)

    def __repr__(self) -> str:
        return f"SyntheticImageUpstream(models={self._models!r})"

    def models(self) -> list[str]:
        """The configured model names."""
        return list(self._models)

    def ready(self) -> bool:
        """Always ready."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""

    @staticmethod
    def seed(request: ImageRequest, index: int) -> int:
        """The seed of image ``index`` of ``request``."""
        label = f"{request.model}\x00{request.prompt}\x00{index}\x00{request.size}".encode()
        return int.from_bytes(hashlib.sha256(label).digest()[:8], "big")

    def render(self, request: ImageRequest, index: int) -> bytes:
        """PNG bytes of image ``index`` (blocking)."""
        from PIL import Image

        from distillguard.image import synthetic_image

        pixels = synthetic_image(
            seed=self.seed(request, index), width=request.width, height=request.height
        )
        out = io.BytesIO()
        Image.fromarray(pixels, mode="RGB").save(out, format="PNG", compress_level=1)
        return out.getvalue()

    async def generate(self, request: ImageRequest) -> ImageResult:
        """``request.n`` images (see the class documentation)."""

        def all_images() -> tuple[GeneratedImage, ...]:
            return tuple(GeneratedImage(data=self.render(request, i)) for i in range(request.n))

        return ImageResult(images=await asyncio.to_thread(all_images))


_IMAGE_HINTS = UpstreamHints(
    circuit_open="the gateway retries it automatically after the breaker's reset time",
    timeout="raise the image upstream timeout or check the upstream",
    unreachable="check the image upstream URL and that the server runs",
)


class OpenAIImageUpstream:
    """Any OpenAI-compatible image API (``POST {base_url}/images/generations``, ``b64_json``).

    Args:
        base_url: the API base, e.g. ``http://127.0.0.1:8000/v1``.
        api_key: sent as a bearer token (never logged).
        models: image model names served.
        connect_timeout_s, read_timeout_s: httpx timeouts (image generation is slow).
        retries: extra attempts on connection errors and 5xx, with exponential backoff.
        backoff_s: first retry delay.
        breaker: the circuit breaker (default: 5 failures, 30 s).
        max_image_bytes: larger decoded images are refused as garbage.
        transport: an httpx transport (tests: ``httpx.ASGITransport``).
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        models: Sequence[str] = (),
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 180.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        breaker: CircuitBreaker | None = None,
        max_image_bytes: int = 64 << 20,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
        )
        self.base_url = base_url
        self._models = list(models)
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_image_bytes = max_image_bytes
        self.breaker = breaker or CircuitBreaker()

    def __repr__(self) -> str:
        return f"OpenAIImageUpstream(base_url={self.base_url!r})"

    def models(self) -> list[str]:
        """The configured model names."""
        return list(self._models)

    def ready(self) -> bool:
        """False while the circuit is open."""
        return self.breaker.state != "open"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        return await send_with_retries(
            self._client,
            "/images/generations",
            body,
            stream=False,
            breaker=self.breaker,
            retries=self.retries,
            backoff_s=self.backoff_s,
            what="the image upstream",
            hints=_IMAGE_HINTS,
        )

    def _images(self, response: httpx.Response, request: ImageRequest) -> ImageResult:
        try:
            data = response.json()
            items = data["data"]
            if not isinstance(items, list) or not items:
                raise TypeError("no images")
            images: list[GeneratedImage] = []
            for item in items[: request.n]:
                b64 = item["b64_json"]
                if not isinstance(b64, str) or len(b64) > self.max_image_bytes * 4 // 3 + 4:
                    raise TypeError("b64_json is not a string of a bounded size")
                revised = item.get("revised_prompt")
                images.append(
                    GeneratedImage(
                        data=base64.b64decode(b64, validate=True),
                        revised_prompt=revised if isinstance(revised, str) else None,
                    )
                )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
            self.breaker.failure()
            raise UpstreamError(
                f"the image upstream answered something that is not an OpenAI image response "
                f"({type(exc).__name__})",
                hint="the gateway asks for response_format b64_json; check the upstream",
            ) from None
        self.breaker.success()
        return ImageResult(images=tuple(images))

    async def generate(self, request: ImageRequest) -> ImageResult:
        """``request.n`` images from the upstream (see :class:`ImageUpstream`)."""
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "n": request.n,
            "size": request.size,
            "response_format": "b64_json",
        }
        if request.quality is not None:
            body["quality"] = request.quality
        if request.style is not None:
            body["style"] = request.style
        return self._images(await self._post(body), request)


# -- provenance -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProtectedImage:
    """An image as delivered: the bytes, and what the exchange record says about them."""

    data: bytes = field(repr=False)
    sha256: str
    width: int
    height: int
    format: str
    c2pa: bool
    revised_prompt: str | None = None

    def summary(self, index: int) -> dict[str, Any]:
        """The JSON summary recorded in the exchange (no pixels)."""
        return {
            "index": index,
            "sha256": self.sha256,
            "bytes": len(self.data),
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "c2pa": self.c2pa,
        }


class ImageProtector:
    """Watermarks each image with the account's payload and signs a C2PA manifest over it.

    Args:
        key: the watermark key (the keyring's active one); its secret also derives the payload.
        credentials: C2PA signing credentials (``None``: watermark only, no manifest).
        config: the image watermark parameters (``[image]``); detection must use the same.
        output_format: ``PNG`` (lossless, default) or ``JPEG``.
    """

    def __init__(
        self,
        *,
        key: WatermarkKey,
        credentials: ManifestCredentials | None = None,
        config: ImageWatermarkConfig | None = None,
        output_format: Literal["PNG", "JPEG"] = "PNG",
    ) -> None:
        self.key = key
        self.credentials = credentials
        self.config = config
        self.output_format = output_format

    def __repr__(self) -> str:
        return (
            f"ImageProtector(kid={self.key.kid!r}, c2pa={self.credentials is not None}, "
            f"format={self.output_format!r})"
        )

    def payload(self, account_id: str) -> int:
        """The account's payload: the policy's keyed hash (:func:`payload_for`)."""
        return payload_for(self.key.secret, account_id)

    def protect(
        self, image: GeneratedImage, *, account_id: str, model: str, title: str
    ) -> ProtectedImage:
        """Watermark and sign one image (blocking: run it off the event loop).

        Raises:
            ImageFormatError: the upstream's bytes are not a usable image; SignatureError:
                C2PA signing failed.
        """
        from PIL import Image

        from distillguard.image import protect_image

        out = protect_image(
            image.data,
            payload=self.payload(account_id),
            key=self.key,
            credentials=self.credentials,
            config=self.config,
            model=model,
            title=title,
            output_format=self.output_format,
        )
        with Image.open(io.BytesIO(out)) as decoded:  # our own PNG or JPEG
            width, height = decoded.size
            fmt = str(decoded.format)
        return ProtectedImage(
            data=out,
            sha256=hashlib.sha256(out).hexdigest(),
            width=width,
            height=height,
            format=fmt,
            c2pa=self.credentials is not None,
            revised_prompt=image.revised_prompt,
        )


# -- the endpoint ---------------------------------------------------------------------------------


class ImagesEndpoint:
    """``POST /v1/images/generations``: a handler on the gateway's pipeline.

    Mounted at :data:`IMAGES_PREFIX` by :func:`mount_images`; verification, policy, limits,
    recording, refusals, metrics and scoring are the pipeline's
    (:class:`~distillguard.gateway.pipeline.Pipeline`); errors have OpenAI's shape.

    Args:
        core: the pipeline (the gateway's :class:`~distillguard.gateway.core.GatewayCore`).
        upstream: the image model.
        protector: watermark and C2PA signing.
        max_n: most images per request.
    """

    path = IMAGES_PATH
    method = "POST"
    shape: ErrorShape = OPENAI_SHAPE

    def __init__(
        self,
        *,
        core: Pipeline,
        upstream: ImageUpstream,
        protector: ImageProtector,
        max_n: int = 4,
    ) -> None:
        if not 1 <= max_n <= 10:
            raise ValueError("max_n must be between 1 and 10")
        self.core = core
        self.upstream = upstream
        self.protector = protector
        self.max_n = max_n
        self._models = frozenset(upstream.models())
        self._default_model = upstream.models()[0] if upstream.models() else None

    def __repr__(self) -> str:
        return f"ImagesEndpoint(upstream={self.upstream!r}, protector={self.protector!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (mounted: ``scope['path']`` is relative to the prefix)."""
        if scope["type"] != "http":
            return
        inner_path = scope["path"]
        root = str(scope.get("root_path", ""))
        full = dict(scope)
        if root.endswith(IMAGES_PREFIX):  # undo the mount's split, for the signature's @path
            full["root_path"] = root[: -len(IMAGES_PREFIX)]
            full["path"] = IMAGES_PREFIX + inner_path
        await self.core.serve(full, receive, send, self)

    async def handle(self, ctx: RequestContext, body: bytes, send: Send) -> None:
        """Parse, admit, generate, protect, record, answer."""
        try:
            request = parse_image_request(body, default_model=self._default_model, max_n=self.max_n)
        except ValueError as exc:
            raise Refusal(400, "invalid_request", "Invalid request", str(exc)) from None
        if request.model not in self._models:
            raise Refusal(
                404,
                "model_not_found",
                "Model not found",
                f"the image model {request.model!r} is not served here",
            )
        core = self.core
        account_id = ctx.identity.account_id
        as_text = self._as_completion(request)
        admission = await core.admit(ctx, as_text, prompt_text=request.prompt)
        t0 = time.perf_counter()
        try:
            result = await self.upstream.generate(request)
            if not result.images:
                raise UpstreamError("the image upstream returned no image")
        except Exception as exc:  # whatever the upstream does, a recorded refusal
            core.observe_upstream(time.perf_counter() - t0)
            raise await core.upstream_failed(ctx, as_text, exc) from None
        core.observe_upstream(time.perf_counter() - t0)
        try:
            protected = await asyncio.to_thread(self._protect_all, result, account_id, request)
        except DistillGuardError as exc:  # unusable image bytes, or C2PA signing failed
            failure = UpstreamError(f"the generated image could not be protected: {exc.message}")
            raise await core.upstream_failed(ctx, as_text, failure) from None
        ctx.extra["dg_watermark"] = {
            "payload": self.protector.payload(account_id),
            "applied": True,
            "scheme": IMAGE_SCHEME,
            "kid": self.protector.key.kid,
        }
        ctx.extra["dg_images"] = len(protected)
        summary = orjson.dumps(
            {
                "object": "image.generations",
                "size": request.size,
                "images": [p.summary(i) for i, p in enumerate(protected)],
            }
        ).decode()
        cost = sum(image_tokens(p.width, p.height) for p in protected)
        done = CompletionResult(
            text=summary, prompt_tokens=count_tokens(request.prompt), completion_tokens=cost
        )
        exchange = core.exchange(ctx, as_text, status=200, result=done, text=summary)
        await core.record(ctx, exchange)
        core.charge(admission, cost)
        data: list[dict[str, Any]] = []
        for p in protected:
            item: dict[str, Any] = {"b64_json": base64.b64encode(p.data).decode("ascii")}
            if p.revised_prompt is not None:
                item["revised_prompt"] = p.revised_prompt
            data.append(item)
        answer = orjson.dumps({"created": int(ctx.ts.timestamp()), "data": data})
        await send_bytes(
            send,
            200,
            answer,
            headers=[(b"x-distillguard-exchange-id", exchange.exchange_id.encode())],
        )
        core.done(ctx, exchange)

    @staticmethod
    def _as_completion(request: ImageRequest) -> CompletionRequest:
        """The exchange's view of the request (the prompt as one user message)."""
        return CompletionRequest(
            kind="completion",
            model=request.model,
            prompt=request.prompt,
            max_tokens=1,
            raw={"n": request.n, "size": request.size},
        )

    def _protect_all(
        self, result: ImageResult, account_id: str, request: ImageRequest
    ) -> list[ProtectedImage]:
        return [
            self.protector.protect(
                image, account_id=account_id, model=request.model, title=f"{request.model} #{i}"
            )
            for i, image in enumerate(result.images[: request.n])
        ]


# -- assembly -------------------------------------------------------------------------------------


def images_paths_schema() -> dict[str, Any]:
    """The OpenAPI path item of ``/v1/images/generations``."""
    refused = {
        "description": "Refused (OpenAI's error shape)",
        "content": {"application/json": {"schema": OPENAI_ERROR_SCHEMA}},
    }
    errors = {str(s): refused for s in (400, 401, 403, 404, 408, 413, 429, 502, 503, 504)}
    body = {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "model": {"type": "string"},
            "prompt": {"type": "string", "minLength": 1, "maxLength": _MAX_PROMPT_CHARS},
            "n": {"type": "integer", "minimum": 1, "maximum": 10},
            "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
            "response_format": {"type": "string", "enum": ["b64_json"]},
        },
    }
    signed = [
        {"name": n, "in": "header", "required": True, "schema": {"type": "string"}}
        for n in ("DistillGuard-Passport", "Signature-Input", "Signature")
    ]
    return {
        IMAGES_PATH: {
            "post": {
                "tags": ["openai"],
                "summary": "Image generation (OpenAI-compatible; watermarked, C2PA-signed)",
                "parameters": signed,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": {
                    "200": {
                        "description": "The images, base64 (b64_json)",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **errors,
                },
            }
        }
    }


def _credentials(settings: Settings, keyring: Keyring) -> ManifestCredentials | None:
    from distillguard.image import ManifestCredentials
    from distillguard.keyring import KeyPurpose

    image = settings.image
    if image.c2pa_chain is None:
        return None
    key = None if image.c2pa_key else keyring.signing_key(KeyPurpose.LEDGER).private_key
    return ManifestCredentials.from_pem(
        chain_path=image.c2pa_chain, key_path=image.c2pa_key, private_key=key, tsa_url=image.tsa_url
    )


def _image_upstream(settings: Settings) -> ImageUpstream:
    from distillguard.errors import ConfigurationError

    cfg = settings.gateway.images
    if cfg.upstream == "synthetic":
        return SyntheticImageUpstream(models=cfg.models)
    if not cfg.upstream_url:
        raise ConfigurationError(
            "gateway.images.upstream = 'openai' needs gateway.images.upstream_url",
            hint="set the base URL of the image API, e.g. http://127.0.0.1:8000/v1",
        )
    gw = settings.gateway
    return OpenAIImageUpstream(
        base_url=cfg.upstream_url,
        api_key=cfg.upstream_api_key.get_secret_value() if cfg.upstream_api_key else None,
        models=cfg.models,
        connect_timeout_s=gw.upstream_connect_timeout_s,
        read_timeout_s=cfg.upstream_timeout_s,
        retries=gw.upstream_retries,
        breaker=CircuitBreaker(failures=gw.breaker_failures, reset_s=gw.breaker_reset_s),
    )


def mount_images(
    gateway: Gateway,
    settings: Settings,
    keyring: Keyring,
    *,
    upstream: ImageUpstream | None = None,
) -> ImagesEndpoint | None:
    """Serve ``/v1/images/generations`` on ``gateway`` as ``settings`` say (``None`` when off).

    The watermark key is the keyring's active one, the watermark parameters and the C2PA
    credentials come from ``[image]``; the upstream from ``[gateway.images]`` unless given.

    Raises:
        ConfigurationError: unreadable C2PA credentials or a missing upstream URL.
    """
    from distillguard.image import ImageWatermarkConfig

    cfg = settings.gateway.images
    if not cfg.enabled:
        return None
    credentials = _credentials(settings, keyring)
    if credentials is None:
        logger.warning(
            "images are watermarked but not C2PA-signed: set image.c2pa_chain to sign manifests"
        )
    protector = ImageProtector(
        key=keyring.watermark_key(),
        credentials=credentials,
        config=ImageWatermarkConfig(
            payload_bits=settings.image.payload_bits,
            sync_bits=settings.image.sync_bits,
            strength=settings.image.strength,
        ),
        output_format=cfg.output_format,
    )
    the_upstream = upstream if upstream is not None else _image_upstream(settings)
    endpoint = ImagesEndpoint(
        core=gateway.core, upstream=the_upstream, protector=protector, max_n=cfg.max_n
    )
    gateway.mount(IMAGES_PREFIX, endpoint, admin_only=False)
    api = gateway.api
    base_openapi = api.openapi

    def openapi() -> dict[str, Any]:
        schema = base_openapi()
        schema.setdefault("paths", {}).update(images_paths_schema())
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
    return endpoint
