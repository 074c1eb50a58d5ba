"""The header parsers' fuzz target (fuzz/fuzz_signature_headers.py) runs on Hypothesis input.

The target is what atheris drives for hours; here it must at least import against the current
package layout and hold its own invariants (no exception but the parsers' documented ones) on
arbitrary bytes, so that it cannot rot unnoticed between fuzzing campaigns.
"""

from __future__ import annotations

# the repository root is on sys.path (tests/conftest.py): fuzz/ imports as a namespace package;
# renamed so that pytest does not collect the target as a test of this module
from fuzz.fuzz_signature_headers import test_one_input as _fuzz_one_input
from hypothesis import given, settings
from hypothesis import strategies as st

_HEADERISH = st.text(
    alphabet=st.sampled_from(list('sig1=:;,()"*?abcXYZ0129+/= \t\\-_.')), max_size=200
).map(str.encode)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), _HEADERISH))
def test_the_fuzz_target_holds_on_arbitrary_bytes(data: bytes) -> None:
    _fuzz_one_input(data)


def test_the_fuzz_target_accepts_a_well_formed_header() -> None:
    _fuzz_one_input(b'sig1=("@method" "@authority");created=1700000000;keyid="k";alg="ed25519"')
