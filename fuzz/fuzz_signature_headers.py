"""Coverage-guided fuzz target for the network-facing header parsers (atheris).

Feeds arbitrary bytes to the RFC 8941 parser (as ``Signature-Input``/``Signature``), to
``parse_signatures`` and to ``check_content_digest``. The only exceptions allowed out are
:class:`~distillguard.errors.StructuredFieldError`; anything else is a bug the fuzzer reports.
It also checks the verifier's fast path against the full parser: whatever the fast path accepts,
the full parser must accept with the same result, and a fast digest match must be a full match.

Run (not part of CI)::

    pip install atheris==3.1.0
    python fuzz/fuzz_signature_headers.py -max_len=4096 -runs=1000000

Without atheris installed it runs each file given on the command line once (a corpus replay).
"""

from __future__ import annotations

import contextlib
import sys

from distillguard.errors import StructuredFieldError
from distillguard.passport._digest import check_content_digest
from distillguard.passport._fastpath import digest_matches, parse_canonical
from distillguard.passport._sfv import parse_dictionary, parse_item, parse_list
from distillguard.passport._signatures import parse_signatures


def test_one_input(data: bytes) -> None:
    """One fuzz iteration."""
    text = data.decode("latin-1")
    first, _, second = text.partition("\n")
    for parse in (parse_dictionary, parse_list, parse_item):
        with contextlib.suppress(StructuredFieldError):
            parse(text)
    full = None
    with contextlib.suppress(StructuredFieldError):
        full = parse_signatures(first, second)
    fast = parse_canonical([first], [second])
    if fast is not None and (
        full is None or list(full) != [fast[0].label] or full[fast[0].label] != fast[0]
    ):
        raise AssertionError("the fast path disagrees with the full parser")
    check = check_content_digest(text, data)
    if digest_matches({"content-digest": (text,)}, data) and not check.ok:
        raise AssertionError("the fast digest check disagrees with the full one")


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
