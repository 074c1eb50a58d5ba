"""RFC 8941 parser and serialiser: examples, round trips, bad input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.errors import StructuredFieldError
from distillguard.passport._sfv import (
    InnerList,
    Item,
    Limits,
    Token,
    parse_dictionary,
    parse_item,
    parse_list,
    serialize_dictionary,
    serialize_item,
    serialize_list,
)


def test_rfc8941_examples() -> None:
    d = parse_dictionary("a=?0, b, c; foo=bar")
    assert d["a"] == Item(False)
    assert d["b"] == Item(True)
    assert d["c"] == Item(True, {"foo": Token("bar")})
    assert serialize_dictionary(d) == "a=?0, b, c;foo=bar"
    lst = parse_list('("foo" "bar");lvl=5, ("baz");lvl=1, ()')
    assert lst[0] == InnerList((Item("foo"), Item("bar")), {"lvl": 5})
    assert lst[2] == InnerList(())
    assert parse_item("4.5").value == 4.5
    assert parse_item(":cHJldGVuZCB0aGlzIGlzIGJpbmFyeSBjb250ZW50Lg==:").value == (
        b"pretend this is binary content."
    )
    assert parse_item('"hello \\"world\\""').value == 'hello "world"'
    assert serialize_item(Item('a"b\\c')) == '"a\\"b\\\\c"'


@pytest.mark.parametrize(
    "bad",
    [
        "a=(",
        'a="unterminated',
        "a=:not base64!:",
        "a=1,",
        "a=1 b=2",
        "A=1",
        "a=1234567890123456",
        "a=1.2345",
        "a=?2",
        'a="é"',
        "a=1;b=2;b=3",
        "a=1, a=2",
        'a=("x""y")',
        "a=\x00",
    ],
)
def test_malformed_dictionaries_are_refused(bad: str) -> None:
    with pytest.raises(StructuredFieldError):
        parse_dictionary(bad)


def test_duplicates_allowed_only_when_asked() -> None:
    d = parse_dictionary("a=1;p=1;p=2, a=3", limits=Limits(allow_duplicates=True))
    assert d["a"] == Item(3)


def test_limits_bound_size_and_counts() -> None:
    with pytest.raises(StructuredFieldError, match="limit"):
        parse_dictionary("a=" + "1" * 20000)
    with pytest.raises(StructuredFieldError, match="too many"):
        parse_dictionary(", ".join(f"k{i}=1" for i in range(100)))
    with pytest.raises(StructuredFieldError, match="too long"):
        parse_dictionary("a=(" + " ".join("1" for _ in range(100)) + ")")
    with pytest.raises(StructuredFieldError, match="too many parameters"):
        parse_dictionary("a=1" + "".join(f";p{i}" for i in range(50)))


_keys = st.from_regex(r"[a-z][a-z0-9_\-.*]{0,8}", fullmatch=True)
_bare = st.one_of(
    st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
    st.booleans(),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.binary(max_size=40),
    st.from_regex(r"[A-Za-z*][A-Za-z0-9:/*!#$%&'+\-.^_`|~]{0,8}", fullmatch=True).map(Token),
)
_params = st.dictionaries(_keys, _bare, max_size=4)
_items = st.builds(Item, _bare, _params)
_members = st.one_of(_items, st.builds(InnerList, st.lists(_items, max_size=5).map(tuple), _params))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _members, max_size=6))
def test_dictionary_round_trip(d: dict[str, Item | InnerList]) -> None:
    text = serialize_dictionary(d)
    assert parse_dictionary(text) == d
    assert serialize_dictionary(parse_dictionary(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(_members, max_size=6))
def test_list_round_trip(lst: list[Item | InnerList]) -> None:
    assert parse_list(serialize_list(lst)) == lst


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    for parse in (parse_dictionary, parse_list, parse_item):
        with contextlib.suppress(StructuredFieldError):
            parse(text)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "sig1=",
                '("@method"',
                ' "@path")',
                ";created=",
                "1",
                ";keyid=",
                '"k"',
                ":AAAA:",
                ",",
                " ",
                ";",
                "(",
                ")",
                '"',
                "=",
                "?1",
                "-",
                ".",
            ]
        ),
        max_size=40,
    ).map("".join)
)
def test_signature_like_fragments_never_crash(text: str) -> None:
    with contextlib.suppress(StructuredFieldError):
        parse_dictionary(text)
