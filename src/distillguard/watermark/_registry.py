"""Schemes by name, built from the ``[watermark]`` settings (one registry, no ``if`` chains)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from distillguard.errors import ConfigurationError
from distillguard.keyring import WatermarkKey
from distillguard.watermark._aaronson import AaronsonConfig, AaronsonWatermark
from distillguard.watermark._base import WatermarkScheme
from distillguard.watermark._kgw import KGWConfig, KGWWatermark
from distillguard.watermark._mpac import MPACConfig, MPACWatermark
from distillguard.watermark._synthid import SynthIDConfig, SynthIDWatermark

if TYPE_CHECKING:  # the configuration models cost ~0.1 s to import
    from distillguard.config import WatermarkSettings

__all__ = ["SCHEMES", "build_scheme"]

Builder = Callable[["WatermarkSettings", WatermarkKey], WatermarkScheme]

#: Scheme name -> builder from settings and a key.
SCHEMES: dict[str, Builder] = {
    "kgw": lambda s, k: KGWWatermark(
        KGWConfig(
            gamma=s.gamma, delta=s.delta, context_width=s.context_width, self_hash=s.self_hash
        ),
        key=k,
    ),
    "aaronson": lambda s, k: AaronsonWatermark(
        AaronsonConfig(context_width=s.context_width), key=k
    ),
    "synthid": lambda s, k: SynthIDWatermark(
        SynthIDConfig(depth=s.depth, context_width=s.context_width), key=k
    ),
    "mpac": lambda s, k: MPACWatermark(
        MPACConfig(bits=s.bits, delta=s.delta, context_width=s.context_width), key=k
    ),
}


def build_scheme(settings: WatermarkSettings, key: WatermarkKey) -> WatermarkScheme:
    """The scheme named by ``settings.scheme`` with its parameters, under ``key``."""
    try:
        builder = SCHEMES[settings.scheme]
    except KeyError:
        raise ConfigurationError(
            f"unknown watermark scheme {settings.scheme!r}",
            hint=f"use one of {', '.join(sorted(SCHEMES))}",
        ) from None
    return builder(settings, key)
