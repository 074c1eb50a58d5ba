"""Coverage-guided fuzz target for the gateway's request parsing (atheris).

Splits the input into a body and three forwarded header values and feeds them to the parsers of
the OpenAI endpoints (``_openai_wire.parse_chat`` and ``parse_completion``), to the passport
verifier's model reader (``_model_of``) and to the forwarded-header readers (``X-Forwarded-For``,
``X-Client-ASN``, ``X-Client-Fingerprint``). The only exception allowed out of the body parser
is :class:`ValueError` (answered 400); the header readers and the model reader never raise.
What is accepted must be storable: every string valid Unicode, ``max_tokens`` and
``temperature`` in range, the client address an IP address, the ASN a 32-bit number.

Run (not part of CI)::

    pip install atheris==3.1.0
    python fuzz/fuzz_gateway_request.py -max_len=8192 -runs=1000000

Without atheris installed it runs each file given on the command line once (a corpus replay).
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys

from distillguard.gateway._openai_wire import parse_chat, parse_completion, parse_object
from distillguard.gateway.core import (
    _asn,
    _forwarded_ip,
    _header_text,
)
from distillguard.passport._verifier import _model_of


def _storable(text: str) -> None:
    text.encode("utf-8")  # raises on a lone surrogate


def test_one_input(data: bytes) -> None:
    """One fuzz iteration."""
    body, _, rest = data.partition(b"\n\n")
    fwd, _, rest = rest.partition(b"\n")
    asn_raw, _, fingerprint = rest.partition(b"\n")
    model = _model_of(body)
    if model is not None:
        _storable(model)
    for parse in (parse_chat, parse_completion):
        with contextlib.suppress(ValueError):
            request, stream, include_usage = parse(parse_object(body))
            max_tokens, temperature = request.max_tokens, request.temperature
            if max_tokens is not None and not 1 <= max_tokens <= 1_000_000:
                raise AssertionError("an out-of-range max_tokens was accepted")
            if temperature is not None and not 0 <= temperature <= 2:
                raise AssertionError("an out-of-range temperature was accepted")
            if not isinstance(stream, bool) or not isinstance(include_usage, bool):
                raise AssertionError("stream flags are not booleans")
            _storable(request.model)
            _storable(request.prompt_text)
            for role, _content in request.messages:
                _storable(role)
    ip = _forwarded_ip(fwd)
    if ip is not None:
        ipaddress.ip_address(ip)  # what is stored is an address
    asn = _asn(asn_raw)
    if asn is not None and not 0 <= asn <= 4_294_967_295:
        raise AssertionError("an ASN outside 32 bits was accepted")
    text = _header_text(fingerprint, 128)
    if text is not None and (len(text) > 128 or any(ord(c) < 0x20 for c in text)):
        raise AssertionError("a header text kept control characters or its length")


def main() -> None:
    """Run under atheris when available, else replay the given files."""
    try:
        import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        for name in sys.argv[1:]:
            with open(name, "rb") as fh:  # noqa: PTH123
                test_one_input(fh.read())
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
