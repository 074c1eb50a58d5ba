"""What the three result formats share: reading a JSON file, typed fields, the version check.

Every failure raises :class:`~distillguard.errors.ResultFormatError` with a message that starts
with the file (and the place inside it) and names the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from distillguard._internal.timeutil import parse_rfc3339
from distillguard.errors import ResultFormatError

__all__ = [
    "check_format",
    "field",
    "number",
    "optional_number",
    "p_value",
    "read_json",
    "time",
]

_UPGRADE = "upgrade DistillGuard to read it (pip install -U distillguard)"


def read_json(path: Path, *, hint: str | None = None) -> Any:
    """The parsed content of a JSON file.

    Raises:
        ResultFormatError: the file is missing, unreadable or not valid JSON.
    """
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ResultFormatError(f"{path} does not exist", hint=hint) from None
    except IsADirectoryError:
        raise ResultFormatError(f"{path} is a folder, not a result file", hint=hint) from None
    except OSError as exc:
        raise ResultFormatError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ResultFormatError(f"{path} is not valid JSON ({exc})") from None


def field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[name]``, which must be an instance of ``kind`` (a bool is never an int or float).

    Raises:
        ResultFormatError: the field is missing or has another type.
    """
    if name not in obj:
        raise ResultFormatError(f"{where}: field {name!r} is missing")
    value = obj[name]
    if isinstance(value, bool) and kind is not bool:
        raise ResultFormatError(f"{where}: field {name!r} has the wrong type")
    if not isinstance(value, kind):
        raise ResultFormatError(f"{where}: field {name!r} has the wrong type")
    return value


def number(obj: Mapping[str, Any], name: str, where: str) -> float:
    """A finite number (int or float in the JSON), as a float.

    Raises:
        ResultFormatError: missing, not a number, or NaN/infinite.
    """
    value = float(field(obj, name, (int, float), where))
    if not math.isfinite(value):
        raise ResultFormatError(f"{where}: field {name!r} is not a finite number")
    return value


def optional_number(obj: Mapping[str, Any], name: str, where: str) -> float | None:
    """Like :func:`number`, but an absent field or ``null`` gives ``None``."""
    if obj.get(name) is None:
        return None
    return number(obj, name, where)


def p_value(obj: Mapping[str, Any], name: str, where: str) -> float:
    """A p-value: a number in [0, 1].

    Raises:
        ResultFormatError: missing, not a number, or outside [0, 1].
    """
    value = number(obj, name, where)
    if not 0.0 <= value <= 1.0:
        raise ResultFormatError(f"{where}: field {name!r} is not a p-value in [0, 1]")
    return value


def time(obj: Mapping[str, Any], name: str, where: str) -> datetime:
    """An RFC 3339 timestamp, as an aware UTC datetime.

    Raises:
        ResultFormatError: missing, not a string, or not RFC 3339.
    """
    text = field(obj, name, str, where)
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ResultFormatError(f"{where}: field {name!r} is not an RFC 3339 timestamp") from None


_FORMAT = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)/(?P<version>[0-9]{1,6})$")


def check_format(value: Any, *, name: str, version: int, where: str) -> None:
    """Check a file's ``format`` marker (``"<name>/<version>"``) against what this release reads.

    ``None`` (no marker) is version 1 for the formats whose first version had none (scan and
    attribution results).

    Raises:
        ResultFormatError: the marker is not a string of that form, names another format, or a
            version newer than ``version`` (the message says to upgrade).
    """
    if value is None:
        return
    match = _FORMAT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ResultFormatError(f"{where}: field 'format' is not a format marker ({value!r:.80})")
    if match["name"] != name:
        raise ResultFormatError(
            f"{where}: format {value!r} is not a {name} result (expected {name}/{version})"
        )
    found = int(match["version"])
    if found > version:
        raise ResultFormatError(
            f"{where}: format {value!r} is newer than this release reads ({name}/{version})",
            hint=_UPGRADE,
        )
    if found < 1:
        raise ResultFormatError(f"{where}: format {value!r} has no such version")
