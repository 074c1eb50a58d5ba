"""The passport registry file is owner-only, and a verifier without a registry check says so
(issue 24 follow-up)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard.keyring import Keyring
from distillguard.passport import (
    MemoryNonceCache,
    Passport,
    PassportValidator,
    RegistrationCache,
    RequestVerifier,
    SQLitePassportRegistry,
)
from distillguard.passport import _verifier as verifier_module


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the common default: files would be 0644
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_new_registry_file_and_its_wal_are_owner_only(tmp_path: Path, passport: Passport) -> None:
    path = tmp_path / "home" / "passports.sqlite"
    reg = SQLitePassportRegistry(path)
    try:
        reg.record_issued(passport)
        assert reg.get(passport.passport_id) is not None
        files = [p for p in path.parent.iterdir() if p.name.startswith("passports.sqlite")]
        assert path in files and len(files) >= 2  # the database and its -wal / -shm
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        reg.close()


@pytest.mark.usefixtures("open_umask")
def test_an_existing_world_readable_registry_is_narrowed(
    tmp_path: Path, passport: Passport
) -> None:
    path = tmp_path / "passports.sqlite"
    SQLitePassportRegistry(path).close()
    path.chmod(0o644)
    reg = SQLitePassportRegistry(path)
    try:
        assert _mode(path) == 0o600
        reg.record_issued(passport)  # still a working registry
        assert reg.get(passport.passport_id) is not None
    finally:
        reg.close()


def _verifier(keyring: Keyring, **kw: object) -> RequestVerifier:
    return RequestVerifier(
        passports=PassportValidator.from_keyring(keyring),
        nonce_cache=MemoryNonceCache(),
        **kw,  # type: ignore[arg-type]
    )


def test_verifier_without_registry_warns_once(
    keyring: Keyring,
    registry: SQLitePassportRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(verifier_module, "_warned_no_registry", False)
    caplog.set_level(logging.WARNING, logger="distillguard.passport._verifier")
    _verifier(keyring, registrations=RegistrationCache(registry))
    assert not caplog.records  # a verifier with a registry check is quiet
    _verifier(keyring)
    _verifier(keyring, registrations=None)
    warnings = [r for r in caplog.records if "without a passport registry" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "from_settings" in warnings[0].getMessage()
