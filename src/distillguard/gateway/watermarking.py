"""Watermarks the gateway applies: per-account payloads on top of :mod:`distillguard.watermark`.

* Closed upstreams (``openai`` URL, stub): the post-hoc lexical scheme
  (:class:`~distillguard.watermark._cater.CaterWatermark`) under a key derived from the keyring's
  watermark secret and the account's payload (:func:`payload_key`), so that detection can test
  a text against the payload of each suspect account (a multi-key test).
* Local transformers model: the generation-time KGW scheme under the same derived key
  (:func:`kgw_scheme_for`).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from distillguard.gateway.core import PostHocWatermarker
from distillguard.keyring import WatermarkKey

__all__ = ["CaterPostHoc", "kgw_scheme_for", "payload_key"]


def payload_key(key: WatermarkKey, payload: int) -> WatermarkKey:
    """The watermark key of one payload: HMAC-SHA256 of the payload under the secret."""
    secret = hmac.new(key.secret, b"dg-payload:%d" % payload, hashlib.sha256).digest()
    return WatermarkKey(kid=f"{key.kid}/p{payload}", created_at=key.created_at, secret=secret)


class CaterPostHoc(PostHocWatermarker):
    """Post-hoc lexical watermark with the account's payload (keys cached, bounded)."""

    name = "cater"

    def __init__(self, *, key: WatermarkKey, cache_size: int = 4096) -> None:
        self._key = key
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CaterPostHoc(kid={self._key.kid!r})"

    def scheme(self, payload: int) -> Any:
        """The :class:`~distillguard.watermark._cater.CaterWatermark` of ``payload``."""
        from distillguard.watermark import CaterConfig, CaterWatermark

        with self._lock:
            hit = self._cache.get(payload)
            if hit is not None:
                self._cache.move_to_end(payload)
                return hit
        scheme = CaterWatermark(CaterConfig(), key=payload_key(self._key, payload))
        with self._lock:
            self._cache[payload] = scheme
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return scheme

    def apply(self, text: str, *, payload: int) -> str:
        """``text`` rewritten with the payload's keyed word choices."""
        return str(self.scheme(payload).embed(text).text)


def kgw_scheme_for(key: WatermarkKey) -> Callable[[int | None], Any]:
    """For the local model: payload → KGW scheme under the payload key (None → the base key)."""
    from distillguard.watermark import KGWConfig, KGWWatermark

    def build(payload: int | None) -> Any:
        k = key if payload is None else payload_key(key, payload)
        return KGWWatermark(KGWConfig(), key=k)

    return build
