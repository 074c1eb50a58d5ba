"""The on-disk fingerprint cache: hits, invalidation, corrupt entries, exact round trips."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distillguard.fingerprint.cache as cache_mod
from distillguard.errors import InputError
from distillguard.fingerprint import Fingerprint, FingerprintOptions
from distillguard.fingerprint.cache import FingerprintCache, default_cache_dir


def _write(path: Path, texts: list[str]) -> Path:
    rows = [{"prompt_id": i, "instruction": f"q{i}", "output": t} for i, t in enumerate(texts)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _same(a: Fingerprint, b: Fingerprint) -> bool:
    return (
        a.name == b.name
        and a.prompt_ids == b.prompt_ids
        and all(
            (getattr(a, k) != getattr(b, k)).nnz == 0
            for k in ("opening_counts", "char_counts", "phrase_df")
        )
        and np.array_equal(a.style, b.style)
        and (
            (a.embeddings is None and b.embeddings is None)
            or (
                a.embeddings is not None
                and b.embeddings is not None
                and np.array_equal(a.embeddings, b.embeddings)
            )
        )
    )


TEXTS = ["Sure! Here is a list:\n\n1. one\n2. two", "The answer is 42.", "## Title\n- a\n- b"]


def test_second_read_is_a_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "model.jsonl", TEXTS)
    cache = FingerprintCache(tmp_path / "cache")
    opts = FingerprintOptions()
    out, first = cache.fingerprint_file(path, options=opts)
    assert out.name == "model"
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def boom(*args: object, **kwargs: object) -> Fingerprint:
        raise AssertionError("recomputed despite a cache entry")

    monkeypatch.setattr(cache_mod, "compute_fingerprint", boom)
    _, second = cache.fingerprint_file(path, options=opts)
    assert _same(first, second)


def test_edited_file_and_other_options_miss(tmp_path: Path) -> None:
    path = _write(tmp_path / "model.jsonl", TEXTS)
    cache = FingerprintCache(tmp_path / "cache")
    k1 = cache.key(path, name="model", options=FingerprintOptions())
    assert cache.key(path, name="model", options=FingerprintOptions(opening_words=20)) != k1
    assert cache.key(path, name="other", options=FingerprintOptions()) != k1
    cache.fingerprint_file(path, options=FingerprintOptions())
    _write(path, [*TEXTS[:2], "A different third answer."])
    assert cache.key(path, name="model", options=FingerprintOptions()) != k1
    _, fp = cache.fingerprint_file(path, options=FingerprintOptions())
    assert fp.style[2, 0] == pytest.approx(np.log1p(len("A different third answer.")))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


@pytest.mark.parametrize("garbage", [b"", b"not a zip", b"PK\x03\x04truncated"])
def test_corrupt_entry_is_recomputed(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "model.jsonl", TEXTS)
    cache = FingerprintCache(tmp_path / "cache")
    opts = FingerprintOptions()
    _, good = cache.fingerprint_file(path, options=opts)
    entry = tmp_path / "cache" / f"{cache.key(path, name='model', options=opts)}.npz"
    entry.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="distillguard.fingerprint.cache"):
        _, again = cache.fingerprint_file(path, options=opts)
    assert "unreadable" in caplog.text
    assert _same(good, again)
    assert cache.get(cache.key(path, name="model", options=opts), name="model", options=opts)


def test_entry_of_wrong_shape_is_rejected(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", TEXTS)
    b = _write(tmp_path / "b.jsonl", TEXTS[:2])
    cache = FingerprintCache(tmp_path / "cache")
    opts = FingerprintOptions()
    ka = cache.key(a, name="a", options=opts)
    kb = cache.key(b, name="b", options=opts)
    cache.fingerprint_file(b, options=opts)
    (tmp_path / "cache" / f"{ka}.npz").write_bytes((tmp_path / "cache" / f"{kb}.npz").read_bytes())
    _, fp = cache.fingerprint_file(a, options=opts)  # stale entry (2 rows) for a 3-row file
    assert fp.prompt_ids == (0, 1, 2)


def test_missing_file_and_unwritable_dir(tmp_path: Path) -> None:
    cache = FingerprintCache(tmp_path / "cache")
    with pytest.raises(InputError):
        cache.fingerprint_file(tmp_path / "absent.jsonl", options=FingerprintOptions())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = _write(tmp_path / "m.jsonl", TEXTS)
    _, fp = FingerprintCache(blocker / "sub").fingerprint_file(path, options=FingerprintOptions())
    assert fp.style.shape[0] == 3  # computed, only the cache write failed


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "distillguard" / "fingerprints"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(st.text(max_size=200), min_size=1, max_size=6))
def test_round_trip_is_exact(tmp_path: Path, texts: list[str]) -> None:
    path = _write(tmp_path / "p.jsonl", texts)
    cache = FingerprintCache(tmp_path / "cache")
    opts = FingerprintOptions()
    _, fp = cache.fingerprint_file(path, options=opts)
    key = cache.key(path, name="p", options=opts)
    back = cache.get(key, name="p", options=opts)
    assert back is not None
    assert _same(fp, back)
