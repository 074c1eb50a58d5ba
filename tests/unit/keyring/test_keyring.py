"""Tests of :mod:`distillguard.keyring`: format, permissions, rotation, thumbprints, secrecy."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.config import load_settings
from distillguard.errors import (
    KeyNotFoundError,
    KeyringError,
    KeyringPermissionError,
    SignatureError,
)
from distillguard.keyring import (
    KEYRING_FORMAT,
    KeyPurpose,
    Keyring,
    jwk_thumbprint,
    open_keyring,
)

# RFC 7638 section 3.1: the example RSA key and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4v"
        "MQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

# RFC 8037 appendix A.1-A.3 (= RFC 8032 section 7.1, test 1): an Ed25519 key, its thumbprint,
# and (RFC 8032) the signature of the empty message.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC8032_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def ring_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "keyring.json"


@pytest.fixture
def ring(ring_path: Path) -> Keyring:
    return Keyring.create(ring_path)


def read_doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def write_doc(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


# -- create and load ------------------------------------------------------------------------------


def test_create_writes_owner_only_file_and_folder(ring: Keyring, ring_path: Path) -> None:
    assert stat.S_IMODE(ring_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ring_path.parent.stat().st_mode) == 0o700
    doc = read_doc(ring_path)
    assert doc["format"] == KEYRING_FORMAT
    assert sorted(k["purpose"] for k in doc["keys"]) == ["ledger", "passport", "watermark"]
    assert all(k["retired_at"] is None for k in doc["keys"])
    # nothing but the keyring is left in the folder (no temporary file)
    assert [p.name for p in ring_path.parent.iterdir()] == ["keyring.json"]


def test_round_trip_keeps_every_key(ring: Keyring, ring_path: Path) -> None:
    loaded = Keyring.load(ring_path)
    assert loaded.describe() == ring.describe()
    for purpose in (KeyPurpose.LEDGER, KeyPurpose.PASSPORT):
        original = ring.signing_key(purpose)
        again = loaded.signing_key(purpose)
        assert again.kid == original.kid
        sig = original.sign(b"payload")
        loaded.verify_key(original.kid).verify(sig, b"payload")
        assert again.sign(b"payload") == sig  # Ed25519 is deterministic: same private key
    assert loaded.watermark_key().secret == ring.watermark_key().secret
    assert loaded.watermark_key().kid == ring.watermark_key().kid


def test_keys_are_fresh_and_distinct(tmp_path: Path) -> None:
    a = Keyring.create(tmp_path / "a.json")
    b = Keyring.create(tmp_path / "b.json")
    assert a.watermark_key().secret != b.watermark_key().secret
    assert len(a.watermark_key().secret) == 32
    kids = {i.kid for i in a.describe()} | {i.kid for i in b.describe()}
    assert len(kids) == 6
    assert a.signing_key(KeyPurpose.LEDGER).kid != a.signing_key(KeyPurpose.PASSPORT).kid


def test_create_refuses_existing_file_unless_overwrite(ring: Keyring, ring_path: Path) -> None:
    with pytest.raises(KeyringError, match="already exists") as info:
        Keyring.create(ring_path)
    assert "--force" in (info.value.hint or "")
    assert Keyring.load(ring_path).describe() == ring.describe()  # untouched
    replaced = Keyring.create(ring_path, overwrite=True)
    assert {i.kid for i in replaced.describe()}.isdisjoint({i.kid for i in ring.describe()})
    assert stat.S_IMODE(ring_path.stat().st_mode) == 0o600


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(KeyringError) as info:
        Keyring.load(path)
    assert type(info.value) is KeyringError
    assert str(path) in info.value.message
    assert "distillguard keys init" in (info.value.hint or "")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="folder"):
        Keyring.load(tmp_path)


def test_open_keyring_uses_configured_path(
    ring: Keyring, ring_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISTILLGUARD_CONFIG", raising=False)
    monkeypatch.setenv("DISTILLGUARD_KEYRING__PATH", str(ring_path))
    loaded = open_keyring(load_settings())
    assert loaded.path == ring_path
    assert loaded.describe() == ring.describe()


def test_open_keyring_default_is_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISTILLGUARD_CONFIG", raising=False)
    monkeypatch.delenv("DISTILLGUARD_KEYRING__PATH", raising=False)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "home"))
    created = Keyring.create(tmp_path / "home" / "keyring.json")
    assert open_keyring(load_settings()).describe() == created.describe()


# -- permissions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode", [0o640, 0o644, 0o604, 0o660, 0o602, 0o620, 0o666], ids=lambda m: f"{m:04o}"
)
def test_load_refuses_group_or_world_accessible_file(
    ring: Keyring, ring_path: Path, mode: int
) -> None:
    ring_path.chmod(mode)
    with pytest.raises(KeyringPermissionError) as info:
        Keyring.load(ring_path)
    err = info.value
    assert str(ring_path) in err.message
    assert f"{mode:04o}" in err.message
    assert err.hint == f"chmod 600 {ring_path}"
    assert f"chmod 600 {ring_path}" in str(err)


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=lambda m: f"{m:04o}")
def test_load_accepts_owner_only_file(ring: Keyring, ring_path: Path, mode: int) -> None:
    ring_path.chmod(mode)
    assert Keyring.load(ring_path).describe() == ring.describe()


def test_rotate_refuses_a_file_made_readable_meanwhile(ring: Keyring, ring_path: Path) -> None:
    ring_path.chmod(0o644)
    with pytest.raises(KeyringPermissionError):
        ring.rotate(KeyPurpose.LEDGER)


# -- signing --------------------------------------------------------------------------------------


def test_sign_and_verify(ring: Keyring) -> None:
    key = ring.signing_key(KeyPurpose.PASSPORT)
    sig = key.sign(b"hello")
    assert len(sig) == 64
    vk = ring.verify_key(key.kid)
    vk.verify(sig, b"hello")
    assert vk.active and vk.purpose is KeyPurpose.PASSPORT
    with pytest.raises(SignatureError) as info:
        vk.verify(sig, b"hellO")
    assert key.kid in info.value.message
    bad = bytearray(sig)
    bad[0] ^= 1
    with pytest.raises(SignatureError):
        vk.verify(bytes(bad), b"hello")
    other = ring.signing_key(KeyPurpose.LEDGER)
    with pytest.raises(SignatureError):
        ring.verify_key(other.kid).verify(sig, b"hello")


def rfc8037_keyring_doc() -> dict[str, Any]:
    """A keyring whose ledger key is the RFC 8037 / RFC 8032 test key."""
    secret = bytes(range(32))
    from distillguard.keyring import _watermark_kid

    passport = Ed25519PrivateKey.generate()
    px = b64url(passport.public_key().public_bytes_raw())
    return {
        "format": KEYRING_FORMAT,
        "keys": [
            {
                "kid": RFC8037_THUMBPRINT,
                "purpose": "ledger",
                "created_at": "2026-01-01T00:00:00.000000Z",
                "retired_at": None,
                "jwk": {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "d": RFC8037_D},
            },
            {
                "kid": jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": px}),
                "purpose": "passport",
                "created_at": "2026-01-01T00:00:00Z",
                "retired_at": None,
                "jwk": {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": px,
                    "d": b64url(passport.private_bytes_raw()),
                },
            },
            {
                "kid": _watermark_kid(secret),
                "purpose": "watermark",
                "created_at": "2026-01-01T00:00:00+02:00",
                "retired_at": None,
                "secret": b64url(secret),
            },
        ],
    }


def test_known_answer_rfc8037_key(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_doc(path, rfc8037_keyring_doc())
    ring = Keyring.load(path)
    key = ring.signing_key(KeyPurpose.LEDGER)
    assert key.kid == RFC8037_THUMBPRINT
    assert key.public_jwk()["x"] == RFC8037_X
    assert key.sign(b"") == RFC8032_SIG_EMPTY
    ring.verify_key(RFC8037_THUMBPRINT).verify(RFC8032_SIG_EMPTY, b"")
    assert ring.watermark_key().secret == bytes(range(32))
    assert ring.watermark_key().created_at.isoformat() == "2025-12-31T22:00:00+00:00"


# -- thumbprints ----------------------------------------------------------------------------------


def test_thumbprint_rfc7638_example() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT


def test_thumbprint_rfc8037_example() -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}
    assert jwk_thumbprint(jwk) == RFC8037_THUMBPRINT
    assert jwk_thumbprint({**jwk, "kid": "x", "alg": "EdDSA", "d": RFC8037_D}) == (
        RFC8037_THUMBPRINT
    )


@pytest.mark.parametrize(
    "jwk",
    [{}, {"kty": "XYZ", "x": "a"}, {"kty": "OKP", "crv": "Ed25519"}, {"kty": "RSA", "n": "a"}],
)
def test_thumbprint_rejects_incomplete_jwk(jwk: dict[str, str]) -> None:
    with pytest.raises(KeyringError, match="thumbprint"):
        jwk_thumbprint(jwk)


@given(
    raw=st.binary(min_size=32, max_size=32),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in {"kty", "crv", "x"}),
        st.text(max_size=8),
        max_size=4,
    ),
)
def test_thumbprint_depends_only_on_required_members(raw: bytes, extra: dict[str, str]) -> None:
    x = b64url(raw)
    base = jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": x})
    shuffled = dict(reversed(list({"x": x, **extra, "crv": "Ed25519", "kty": "OKP"}.items())))
    assert jwk_thumbprint(shuffled) == base
    assert len(base) == 43 and "=" not in base
    changed = b64url(bytes([raw[0] ^ 1]) + raw[1:])
    assert jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": changed}) != base


def test_kids_are_thumbprints_of_exported_keys(ring: Keyring) -> None:
    jwks = ring.public_jwks()
    assert len(jwks["keys"]) == 2
    for jwk in jwks["keys"]:
        assert "d" not in jwk
        assert jwk["kid"] == jwk_thumbprint(jwk)
        assert jwk["alg"] == "EdDSA" and jwk["use"] == "sig"
        vk = ring.verify_key(jwk["kid"])
        assert b64url(vk.public_key.public_bytes_raw()) == jwk["x"]
        assert jwk["purpose"] == str(vk.purpose)
        assert jwk["retired_at"] is None
    assert ring.watermark_key().kid not in json.dumps(jwks)


# -- rotation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", [KeyPurpose.LEDGER, KeyPurpose.PASSPORT])
def test_rotation_keeps_old_signing_keys_verifiable(
    ring: Keyring, ring_path: Path, purpose: KeyPurpose
) -> None:
    old = ring.signing_key(purpose)
    old_sig = old.sign(b"signed before rotation")
    untouched = {
        p: ring.signing_key(p).kid for p in KeyPurpose if p not in (purpose, KeyPurpose.WATERMARK)
    }
    new_kid = ring.rotate(purpose)
    assert new_kid != old.kid
    for current in (ring, Keyring.load(ring_path)):
        assert current.signing_key(purpose).kid == new_kid
        retired = current.verify_key(old.kid)
        assert not retired.active and retired.retired_at is not None
        assert retired.retired_at >= retired.created_at
        retired.verify(old_sig, b"signed before rotation")
        kids = [vk.kid for vk in current.verify_keys(purpose)]
        assert kids == [new_kid, old.kid]  # active first
        new_sig = current.signing_key(purpose).sign(b"after")
        current.verify_key(new_kid).verify(new_sig, b"after")
        with pytest.raises(SignatureError):
            retired.verify(new_sig, b"after")
        for p, kid in untouched.items():
            assert current.signing_key(p).kid == kid
    assert {j["kid"] for j in ring.public_jwks()["keys"]} >= {old.kid, new_kid}
    assert stat.S_IMODE(ring_path.stat().st_mode) == 0o600


def test_watermark_rotation_keeps_old_secret(ring: Keyring, ring_path: Path) -> None:
    old = ring.watermark_key()
    new_kid = ring.rotate(KeyPurpose.WATERMARK)
    loaded = Keyring.load(ring_path)
    assert loaded.watermark_key().kid == new_kid != old.kid
    assert loaded.watermark_key().secret != old.secret
    kept = loaded.watermark_key(old.kid)
    assert kept.secret == old.secret and not kept.active
    assert [k.kid for k in loaded.watermark_keys()] == [new_kid, old.kid]


def test_rotation_many_times(ring: Keyring, ring_path: Path) -> None:
    kids = [ring.signing_key(KeyPurpose.LEDGER).kid]
    kids += [ring.rotate(KeyPurpose.LEDGER) for _ in range(4)]
    loaded = Keyring.load(ring_path)
    assert [vk.kid for vk in loaded.verify_keys(KeyPurpose.LEDGER)] == [
        kids[-1],
        *reversed(kids[:-1]),
    ]
    assert sum(1 for i in loaded.describe() if i.status == "active") == 3
    assert sorted(p.name for p in ring_path.parent.iterdir()) == [
        "keyring.json",
        "keyring.json.lock",
    ]


def test_stale_instances_do_not_lose_each_others_rotations(ring_path: Path) -> None:
    Keyring.create(ring_path)
    first = Keyring.load(ring_path)
    second = Keyring.load(ring_path)
    ledger_kid = first.rotate(KeyPurpose.LEDGER)
    passport_kid = second.rotate(KeyPurpose.PASSPORT)  # second had not seen the ledger rotation
    final = Keyring.load(ring_path)
    assert final.signing_key(KeyPurpose.LEDGER).kid == ledger_kid
    assert final.signing_key(KeyPurpose.PASSPORT).kid == passport_kid
    assert len(final.describe()) == 5


# -- lookups --------------------------------------------------------------------------------------


def test_unknown_kid(ring: Keyring) -> None:
    with pytest.raises(KeyNotFoundError, match="no-such-kid") as info:
        ring.verify_key("no-such-kid")
    assert "keys list" in (info.value.hint or "")
    with pytest.raises(KeyNotFoundError):
        ring.watermark_key("no-such-kid")


def test_wrong_kind_of_key(ring: Keyring) -> None:
    with pytest.raises(KeyNotFoundError, match="watermark"):
        ring.verify_key(ring.watermark_key().kid)
    with pytest.raises(KeyNotFoundError, match="not a watermark secret"):
        ring.watermark_key(ring.signing_key(KeyPurpose.LEDGER).kid)
    with pytest.raises(KeyNotFoundError):
        ring.signing_key(KeyPurpose.WATERMARK)
    with pytest.raises(KeyNotFoundError):
        ring.verify_keys(KeyPurpose.WATERMARK)


# -- secrecy --------------------------------------------------------------------------------------


def secret_strings(path: Path) -> list[str]:
    """Every secret in the file, in the encodings it could leak in."""
    out: list[str] = []
    for entry in read_doc(path)["keys"]:
        encoded = entry["jwk"]["d"] if "jwk" in entry else entry["secret"]
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        out += [encoded, raw.hex(), repr(raw), base64.b64encode(raw).decode()]
    return out


def test_secrets_never_in_repr_or_str(ring: Keyring, ring_path: Path) -> None:
    ring.rotate(KeyPurpose.WATERMARK)
    objects: list[object] = [
        ring,
        ring.signing_key(KeyPurpose.LEDGER),
        ring.signing_key(KeyPurpose.PASSPORT),
        ring.watermark_key(),
        *ring.watermark_keys(),
        *ring.verify_keys(KeyPurpose.LEDGER),
        *ring.describe(),
    ]
    texts = [f(o) for o in objects for f in (repr, str)]
    texts.append(json.dumps(ring.public_jwks()))
    texts.append(json.dumps([i.to_dict() for i in ring.describe()]))
    for secret in secret_strings(ring_path):
        for text in texts:
            assert secret not in text
    assert ring.watermark_key().kid in repr(ring.watermark_key())


def test_secrets_never_logged(
    ring_path: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.DEBUG):
        ring = Keyring.create(ring_path)
        ring.rotate(KeyPurpose.LEDGER)
        ring.rotate(KeyPurpose.WATERMARK)
        Keyring.load(ring_path)
    assert caplog.records  # creation and rotation are logged...
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in secret_strings(ring_path):  # ...without any key material
        assert secret not in logged


def test_errors_do_not_carry_secrets(ring: Keyring, ring_path: Path) -> None:
    doc = read_doc(ring_path)
    for entry in doc["keys"]:
        if entry["purpose"] == "ledger":
            entry["kid"] = "tampered"
    write_doc(ring_path, doc)
    with pytest.raises(KeyringError) as info:
        Keyring.load(ring_path)
    text = str(info.value) + json.dumps(info.value.to_dict())
    for secret in secret_strings(ring_path):
        assert secret not in text


# -- corrupt files --------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], object]


def _entry(doc: dict[str, Any], purpose: str) -> dict[str, Any]:
    found: dict[str, Any] = next(k for k in doc["keys"] if k["purpose"] == purpose)
    return found


def _set(purpose: str, name: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> object:
        _entry(doc, purpose)[name] = value
        return doc

    return mutate


def _set_jwk(name: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> object:
        _entry(doc, "ledger")["jwk"][name] = value
        return doc

    return mutate


def _dup_first(doc: dict[str, Any]) -> object:
    doc["keys"].append(dict(doc["keys"][0]))
    return doc


def _second_active_ledger(doc: dict[str, Any]) -> object:
    new = Ed25519PrivateKey.generate()
    x = b64url(new.public_key().public_bytes_raw())
    doc["keys"].append(
        {
            "kid": jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": x}),
            "purpose": "ledger",
            "created_at": "2026-01-01T00:00:00Z",
            "retired_at": None,
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x, "d": b64url(new.private_bytes_raw())},
        }
    )
    return doc


def _drop(purpose: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> object:
        doc["keys"] = [k for k in doc["keys"] if k["purpose"] != purpose]
        return doc

    return mutate


CORRUPTIONS: dict[str, tuple[Mutation, str]] = {
    "top level is a list": (lambda d: [d], "not a JSON object"),
    "other format": (lambda d: {**d, "format": "distillguard-keyring/v9"}, "v9"),
    "no format": (lambda d: {"keys": d["keys"]}, "format None"),
    "no keys": (lambda d: {"format": KEYRING_FORMAT}, "'keys'"),
    "keys not a list": (lambda d: {**d, "keys": {}}, "'keys'"),
    "unknown top member": (lambda d: {**d, "extra": 1}, "extra"),
    "entry not an object": (lambda d: {**d, "keys": [1]}, "keys[0]"),
    "unknown purpose": (_set("ledger", "purpose", "mint"), "mint"),
    "kid not a string": (_set("ledger", "kid", 7), "'kid'"),
    "created_at without zone": (_set("ledger", "created_at", "2026-01-01T00:00:00"), "time zone"),
    "retired_at a number": (_set("ledger", "retired_at", 3), "retired_at"),
    "unknown entry member": (_set("passport", "comment", "x"), "comment"),
    "watermark secret too short": (_set("watermark", "secret", b64url(b"x" * 16)), "16 bytes"),
    "watermark secret not base64url": (_set("watermark", "secret", "!!!!"), "keys["),
    "watermark secret padded": (_set("watermark", "secret", b64url(b"x" * 32) + "="), "keys["),
    "watermark kid mismatch": (_set("watermark", "kid", "wm-AAAAAAAAAAAAAAAAAAAAAA"), "match"),
    "jwk missing": (_set("ledger", "jwk", None), "'jwk'"),
    "jwk not Ed25519": (_set_jwk("crv", "X25519"), "Ed25519"),
    "private key wrong length": (_set_jwk("d", b64url(b"k" * 31)), "31 bytes"),
    "public key mismatch": (_set_jwk("x", RFC8037_X), "does not match"),
    "kid not thumbprint": (_set("ledger", "kid", RFC8037_THUMBPRINT), "thumbprint"),
    "duplicate kid": (_dup_first, "appears twice"),
    "two active ledger keys": (_second_active_ledger, "exactly one active ledger"),
    "no watermark key": (_drop("watermark"), "exactly one active watermark"),
    "ledger key retired, none active": (
        _set("ledger", "retired_at", "2026-01-01T00:00:00Z"),
        "exactly one active ledger",
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_file_is_refused_clearly(ring: Keyring, ring_path: Path, name: str) -> None:
    mutate, expected = CORRUPTIONS[name]
    write_doc(ring_path, mutate(read_doc(ring_path)))
    with pytest.raises(KeyringError) as info:
        Keyring.load(ring_path)
    err = info.value
    assert type(err) is KeyringError
    assert str(ring_path) in err.message
    assert expected in err.message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b'{"format": "distillguard-keyring/v1", "keys": [', "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"null", "not a JSON object"),
    ],
)
def test_unreadable_content_is_refused_clearly(
    ring_path: Path, content: bytes, expected: str
) -> None:
    ring_path.parent.mkdir(parents=True)
    ring_path.write_bytes(content)
    ring_path.chmod(0o600)
    with pytest.raises(KeyringError, match=expected) as info:
        Keyring.load(ring_path)
    assert "keys init --force" in (info.value.hint or "")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=2),
    member=st.sampled_from(["kid", "purpose", "created_at", "retired_at", "jwk", "secret", "x"]),
    value=json_values,
)
def test_parser_fuzz_only_raises_keyring_errors(index: int, member: str, value: object) -> None:
    doc = rfc8037_keyring_doc()
    doc["keys"][index][member] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "k.json"
        path.write_text(json.dumps(doc))
        os.chmod(path, 0o600)  # noqa: PTH101
        try:
            ring = Keyring.load(path)
        except KeyringError as exc:
            assert str(path) in exc.message
        else:  # the mutation kept the document valid: its keys must still work
            key = ring.signing_key(KeyPurpose.LEDGER)
            ring.verify_key(key.kid).verify(key.sign(b"m"), b"m")


@settings(max_examples=100, deadline=None)
@given(document=json_values)
def test_parser_fuzz_arbitrary_documents(document: object) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "k.json"
        path.write_text(json.dumps(document))
        os.chmod(path, 0o600)  # noqa: PTH101
        with pytest.raises(KeyringError):
            Keyring.load(path)


_ROTATE_SCRIPT = """
import sys
from pathlib import Path
from distillguard.keyring import Keyring, KeyPurpose
ring = Keyring.load(Path(sys.argv[1]))
print(" ".join(ring.rotate(KeyPurpose(sys.argv[2])) for _ in range(int(sys.argv[3]))))
"""


def test_concurrent_rotations_in_two_processes_lose_nothing(ring_path: Path) -> None:
    import subprocess
    import sys

    Keyring.create(ring_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ROTATE_SCRIPT, str(ring_path), purpose, "30"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for purpose in ("ledger", "passport")
    ]
    made = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        made.append(out.split())
    final = Keyring.load(ring_path)
    kids = {i.kid for i in final.describe()}
    assert len(made[0]) == len(made[1]) == 30
    assert set(made[0]) | set(made[1]) <= kids
    assert len(kids) == 3 + 60
    assert final.signing_key(KeyPurpose.LEDGER).kid == made[0][-1]
    assert final.signing_key(KeyPurpose.PASSPORT).kid == made[1][-1]


def test_retired_key_trusts_only_signatures_up_to_its_retirement(tmp_path: Path) -> None:
    ring = Keyring.create(tmp_path / "k.json")
    old = ring.signing_key(KeyPurpose.LEDGER)
    ring.rotate(KeyPurpose.LEDGER)
    retired = ring.verify_key(old.kid)
    assert retired.retired_at is not None
    before = retired.retired_at.timestamp() - 1
    assert retired.trusts(before) and retired.trusts(retired.retired_at)
    assert not retired.trusts(retired.retired_at.timestamp() + 1)
    assert not retired.trusts(None)
    assert ring.verify_keys(KeyPurpose.LEDGER)[0].trusts(None)  # the active key


def test_mark_compromised_distrusts_rotates_exports_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    ring = Keyring.create(path)
    active = ring.signing_key(KeyPurpose.PASSPORT)
    sig = active.sign(b"data")
    info, new_kid = ring.mark_compromised(active.kid, reason="laptop stolen")
    assert info.status == "compromised" and info.compromise_reason == "laptop stolen"
    assert new_kid is not None and ring.signing_key(KeyPurpose.PASSPORT).kid == new_kid
    loaded = Keyring.load(path)
    assert [k.kid for k in loaded.verify_keys(KeyPurpose.PASSPORT)] == [new_kid]
    bad = loaded.verify_key(active.kid)
    assert bad.compromised and not bad.trusts(0)
    with pytest.raises(SignatureError, match="compromised"):
        bad.verify(sig, b"data")
    exported = {k["kid"]: k for k in loaded.public_jwks()["keys"]}
    assert exported[active.kid]["status"] == "compromised"
    assert exported[active.kid]["compromised_at"] is not None
    assert "d" not in exported[active.kid]
    # idempotent: a second mark keeps the first time and reason, and makes no new key
    again, none = loaded.mark_compromised(active.kid, reason="other")
    assert none is None and again.compromise_reason == "laptop stolen"
    with pytest.raises(KeyNotFoundError):
        loaded.mark_compromised("no-such-kid", reason="x")


def test_old_keyring_without_retired_at_is_migrated(tmp_path: Path) -> None:
    """A keyring written without 'retired_at' members: older keys of a purpose count as retired
    when their successor was created, the newest stays active."""
    path = tmp_path / "k.json"
    ring = Keyring.create(path)
    ring.rotate(KeyPurpose.PASSPORT)
    doc = json.loads(path.read_text())
    for key in doc["keys"]:
        del key["retired_at"]
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    loaded = Keyring.load(path)
    keys = loaded.verify_keys(KeyPurpose.PASSPORT)
    assert keys[0].active and not keys[1].active
    assert keys[1].retired_at == keys[0].created_at
