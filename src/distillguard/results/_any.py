"""Reading a result file whose kind is not known in advance (an upload, a folder of results)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distillguard.errors import ResultFormatError
from distillguard.results import _common as c
from distillguard.results._attribution import AttributionResult
from distillguard.results._radioactivity import RadioactivityResult

__all__ = ["read_result"]


def read_result(path: Path) -> RadioactivityResult | AttributionResult:
    """A radioactivity or an attribution result, whichever the file is.

    The ``format`` marker decides when there is one (``distillguard-radioactivity/...``,
    ``distillguard-attribution/...``); without one, a file with a ``ranking`` is an attribution
    and anything else is read as a radioactivity result of the loose shape. (A radioactivity
    file of format 1 has a ``verdict`` too, so "has a verdict" does not tell the two apart.)

    Raises:
        ResultFormatError: the file is missing, not JSON, carries a marker of another format,
            or is not a valid result of the kind chosen; the message names the file and field.
    """
    raw = c.read_json(path)
    where = str(path)
    if not isinstance(raw, Mapping):
        raise ResultFormatError(f"{where}: expected an object")
    marker = raw.get("format")
    if isinstance(marker, str) and marker.startswith("distillguard-radioactivity/"):
        return RadioactivityResult.from_dict(raw, where=where)
    if isinstance(marker, str) and marker.startswith("distillguard-attribution/"):
        return AttributionResult.from_dict(raw, where=where)
    if marker is not None:
        raise ResultFormatError(
            f"{where}: format {marker!r:.80} is neither a radioactivity nor an attribution result"
        )
    if "ranking" in raw:
        return AttributionResult.from_dict(raw, where=where)
    return RadioactivityResult.from_dict(raw, where=where)
