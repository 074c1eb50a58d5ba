"""The header parsers' fuzz target (fuzz/fuzz_signature_headers.py) runs on Hypothesis input.

The target is what atheris drives for hours; here it must at least import against the current
package layout and hold its own invariants (no exception but the parsers' documented ones) on
arbitrary bytes, so that it cannot rot unnoticed between fuzzing campaigns.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st


def _fuzz_target() -> Callable[[bytes], None]:
    path = Path(__file__).parents[3] / "fuzz" / "fuzz_signature_headers.py"
    spec = importlib.util.spec_from_file_location("fuzz_signature_headers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target: Callable[[bytes], None] = module.test_one_input
    return target


_FUZZ = _fuzz_target()

_HEADERISH = st.text(
    alphabet=st.sampled_from(list('sig1=:;,()"*?abcXYZ0129+/= \t\\-_.')), max_size=200
).map(str.encode)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), _HEADERISH))
def test_the_fuzz_target_holds_on_arbitrary_bytes(data: bytes) -> None:
    _FUZZ(data)


def test_the_fuzz_target_accepts_a_well_formed_header() -> None:
    _FUZZ(b'sig1=("@method" "@authority");created=1700000000;keyid="k";alg="ed25519"')
