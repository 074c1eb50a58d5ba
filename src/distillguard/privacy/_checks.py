"""Checksums and heuristics that confirm a pattern match is what it looks like.

Each function takes the matched text and answers whether it is a plausible instance; they are
pure and cheap, called only on the rare candidates a pattern found.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter

__all__ = [
    "digits_of",
    "iban_ok",
    "ipv4_ok",
    "ipv6_ok",
    "luhn_ok",
    "phone_ok",
    "secret_value_ok",
    "shannon_entropy",
]

_DATE_LIKE = re.compile(
    r"(?:19|20)\d\d[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)\d\d"
)
_PLACEHOLDER = re.compile(
    r"(?i)^(?:x+|\*+|\.+|<[^>]*>|\$\{?[\w.]+\}?|%\(?\w+\)?s?|\{\{?[\w. ]+\}?\}|none|null|"
    r"true|false|changeme|password|secret|token|example|redacted|your[_-]?\w*|\[[A-Z_]+\])$"
)


def digits_of(text: str) -> str:
    """The decimal digits of ``text``, in order."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


def luhn_ok(text: str) -> bool:
    """Whether the digits of ``text`` form a plausible payment card number.

    13 to 19 digits, an issuer prefix in use (Visa 4, Mastercard 51-55/2221-2720, American
    Express 34/37, Discover/UnionPay 6, Diners 30/36/38, JCB 35) and a valid Luhn check digit.
    """
    digits = digits_of(text)
    if not 13 <= len(digits) <= 19:
        return False
    if not (
        digits[0] in "46"
        or digits[:2] in {"34", "37", "30", "36", "38", "35"}
        or "51" <= digits[:2] <= "55"
        or "2221" <= digits[:4] <= "2720"
    ):
        return False
    if len(set(digits)) == 1:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# ISO 13616 lengths of the countries that issue IBANs most often (others: any length 15-34).
_IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
    "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip


def iban_ok(text: str) -> bool:
    """Whether ``text`` (spaces allowed) is an IBAN: country length and ISO 7064 mod-97 check."""
    iban = text.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    expected = _IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def phone_ok(text: str) -> bool:
    """Whether ``text`` is a plausible phone number rather than a date, version or id.

    International numbers (leading ``+``) have 8 to 15 digits (E.164); national ones 9 to 11.
    Date-shaped strings are refused.
    """
    digits = digits_of(text)
    if _DATE_LIKE.search(text):
        return False
    if text.lstrip("(").startswith("+"):
        return 8 <= len(digits) <= 15
    return 9 <= len(digits) <= 11 and len(set(digits)) > 2


def shannon_entropy(text: str) -> float:
    """Shannon entropy of the characters of ``text``, in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def secret_value_ok(value: str, *, password_like: bool) -> bool:
    """Whether the value of a ``key=value`` assignment looks like a real secret.

    Passwords count from 6 characters unless they are an obvious placeholder; keys and tokens
    need 16 characters, letters and digits, and at least 3 bits of entropy per character (so that
    ``token=refresh_interval_seconds`` or ``api_key=YOUR_API_KEY_HERE`` stay).
    """
    stripped = value.strip("'\"`")
    if _PLACEHOLDER.match(stripped):
        return False
    if password_like:
        return len(stripped) >= 6
    if len(stripped) < 16:
        return False
    has_digit = any(ch.isdigit() for ch in stripped)
    has_alpha = any(ch.isalpha() for ch in stripped)
    return has_digit and has_alpha and shannon_entropy(stripped) >= 3.0


def ipv4_ok(text: str) -> bool:
    """Whether ``text`` is a dotted-quad IPv4 address."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def ipv6_ok(text: str) -> bool:
    """Whether ``text`` is an IPv6 address with at least three groups (not a ``12:30:45`` time)."""
    if text.count(":") < 2 or sum(ch.isalnum() for ch in text) < 3:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
