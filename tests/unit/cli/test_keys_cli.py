"""Tests of ``distillguard keys``, driven through :func:`distillguard.cli.main.main`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from distillguard.cli.main import main
from distillguard.keyring import KeyPurpose, Keyring, jwk_thumbprint


@pytest.fixture
def ring_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated environment: no config file, the keyring path given by the environment."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    path = tmp_path / "secrets" / "keyring.json"
    monkeypatch.setenv("DISTILLGUARD_KEYRING__PATH", str(path))
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_init_creates_owner_only_keyring(
    ring_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "init"]) == 0
    out = capsys.readouterr().out
    assert str(ring_path) in out
    assert stat.S_IMODE(ring_path.stat().st_mode) == 0o600
    ring = Keyring.load(ring_path)
    for info in ring.describe():
        assert info.kid in out  # the table shows every key id in full
    for secret in secrets_in(ring_path):
        assert secret not in out


def secrets_in(path: Path) -> list[str]:
    """The encoded private keys and watermark secrets of a keyring file."""
    doc = json.loads(path.read_text())
    return [k["jwk"]["d"] if "jwk" in k else k["secret"] for k in doc["keys"]]


def test_no_command_prints_a_secret(ring_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for args in (
        ["keys", "init"],
        ["keys", "list"],
        ["--json", "keys", "list"],
        ["keys", "rotate", "watermark"],
        ["--json", "keys", "rotate", "ledger"],
        ["keys", "export-public"],
        ["config", "show"],
    ):
        assert main(args) == 0
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    secrets = secrets_in(ring_path)
    assert len(secrets) == 5
    for text in outputs:
        for secret in secrets:
            assert secret not in text


def test_init_json(ring_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "keys", "init")
    assert code == 0
    assert data["ok"] is True and data["path"] == str(ring_path)
    assert sorted(k["purpose"] for k in data["keys"]) == ["ledger", "passport", "watermark"]
    assert {k["status"] for k in data["keys"]} == {"active"}
    assert {k["kid"] for k in data["keys"]} == {i.kid for i in Keyring.load(ring_path).describe()}


def test_init_twice_needs_force(ring_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init"]) == 0
    before = {i.kid for i in Keyring.load(ring_path).describe()}
    capsys.readouterr()
    assert main(["keys", "init"]) == 3
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and "Traceback" not in err
    assert {i.kid for i in Keyring.load(ring_path).describe()} == before
    assert main(["keys", "init", "--force"]) == 0
    assert {i.kid for i in Keyring.load(ring_path).describe()}.isdisjoint(before)


def test_list_text_and_json(ring_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["keys", "init"])
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    ring = Keyring.load(ring_path)
    for info in ring.describe():
        assert info.kid in out
    assert out.count("active") == 3
    code, data = run_json(capsys, "keys", "list")
    assert code == 0
    assert [k["kid"] for k in data["keys"]] == [i.kid for i in ring.describe()]
    assert {
        "kid",
        "purpose",
        "algorithm",
        "created_at",
        "retired_at",
        "compromised_at",
        "compromise_reason",
        "status",
    } == set(data["keys"][0])


def test_rotate_then_list(ring_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["keys", "init"])
    old = Keyring.load(ring_path).signing_key(KeyPurpose.PASSPORT).kid
    code, data = run_json(capsys, "keys", "rotate", "passport")
    assert code == 0
    assert data["purpose"] == "passport" and data["retired"] == old and data["kid"] != old
    ring = Keyring.load(ring_path)
    assert ring.signing_key(KeyPurpose.PASSPORT).kid == data["kid"]
    code, listed = run_json(capsys, "keys", "list")
    status = {k["kid"]: k["status"] for k in listed["keys"]}
    assert status[old] == "retired" and status[data["kid"]] == "active"
    assert len(status) == 4
    capsys.readouterr()
    assert main(["keys", "rotate", "WATERMARK"]) == 0  # purpose is case-insensitive
    out = capsys.readouterr().out
    assert Keyring.load(ring_path).watermark_key().kid in out


def test_rotate_unknown_purpose_is_a_usage_error(
    ring_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keys", "init"])
    capsys.readouterr()
    assert main(["keys", "rotate", "mint"]) == 2
    assert "mint" in capsys.readouterr().err
    assert len(Keyring.load(ring_path).describe()) == 3


def test_export_public_stdout_and_file(
    ring_path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    main(["keys", "init"])
    old_ledger = Keyring.load(ring_path).signing_key(KeyPurpose.LEDGER).kid
    main(["keys", "rotate", "ledger"])
    capsys.readouterr()
    assert main(["keys", "export-public"]) == 0
    jwks = json.loads(capsys.readouterr().out)
    kids = [k["kid"] for k in jwks["keys"]]
    ring = Keyring.load(ring_path)
    assert old_ledger in kids and ring.signing_key(KeyPurpose.LEDGER).kid in kids
    assert ring.signing_key(KeyPurpose.PASSPORT).kid in kids
    assert ring.watermark_key().kid not in kids
    assert len(kids) == 3
    for jwk in jwks["keys"]:
        assert "d" not in jwk and jwk["kid"] == jwk_thumbprint(jwk)
    out = tmp_path / "jwks.json"
    assert main(["keys", "export-public", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == jwks
    assert str(out) in capsys.readouterr().out
    code, data = run_json(capsys, "keys", "export-public", "-o", str(out))
    assert code == 0 and data == {"ok": True, "out": str(out), "keys": 3}


def test_export_public_to_unwritable_place(
    ring_path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    main(["keys", "init"])
    capsys.readouterr()
    target = tmp_path / "no" / "such" / "folder" / "jwks.json"
    assert main(["keys", "export-public", "--out", str(target)]) == 3
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["list"], ["rotate", "ledger"], ["export-public"]])
def test_missing_keyring_says_to_init(
    ring_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main(["keys", *command]) == 3
    err = capsys.readouterr().err
    assert "DG110" in err and str(ring_path) in err.replace("\n", "")
    assert "distillguard keys init" in err.replace("\n", "")
    assert "Traceback" not in err


def test_readable_keyring_refused_with_chmod_hint(
    ring_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keys", "init"])
    ring_path.chmod(0o644)
    capsys.readouterr()
    code, data = run_json(capsys, "keys", "list")
    assert code == 3
    assert data["ok"] is False and data["code"] == "DG111"
    assert data["hint"] == f"chmod 600 {ring_path}"
    assert data["details"]["mode"] == "0644"


def test_keyring_path_from_config_file(
    ring_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISTILLGUARD_KEYRING__PATH")
    target = Path("from-toml") / "ring.json"  # relative to the working directory
    config = Path("custom.toml")
    config.write_text(f'[keyring]\npath = "{target}"\n')
    assert main(["--config", str(config), "keys", "init"]) == 0
    assert Keyring.load(target).describe()
    assert not ring_path.exists()
    code, data = run_json(capsys, "-c", str(config), "keys", "list")
    assert code == 0 and data["path"] == str(target)


def test_default_keyring_path_is_under_home(
    ring_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DISTILLGUARD_KEYRING__PATH")
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "home"))
    assert main(["keys", "init"]) == 0
    assert (tmp_path / "home" / "keyring.json").is_file()


@pytest.mark.parametrize("sub", ["init", "list", "rotate", "export-public"])
def test_help_has_an_example(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", sub, "--help"]) == 0
    assert "Example" in capsys.readouterr().out


def test_keys_listed_in_main_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "keys" in capsys.readouterr().out


def test_compromised_distrusts_the_key_everywhere(
    ring_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 24: `keys compromised` marks a ledger key so that nothing it signed verifies, in
    the keyring and in the exported public keys; it is listed and audited, with no secret."""
    from distillguard.console import ConsoleQueries
    from distillguard.errors import SignatureError
    from distillguard.ledger import load_public_keys, sign_checkpoint, verify_checkpoint
    from distillguard.store import open_store

    store_url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    monkeypatch.setenv("DISTILLGUARD_STORE__URL", store_url)
    assert main(["keys", "init"]) == 0
    ring = Keyring.load(ring_path)
    ledger_key = ring.signing_key(KeyPurpose.LEDGER)
    cp = sign_checkpoint(origin="o", size=1, root_hash=b"\0" * 32, key=ledger_key)
    jwks = tmp_path / "jwks.json"
    assert main(["keys", "export-public", "--out", str(jwks)]) == 0
    assert verify_checkpoint(cp.note, public_keys=load_public_keys(jwks)).kid == ledger_key.kid

    capsys.readouterr()
    assert main(["keys", "compromised", ledger_key.kid, "--reason", "leaked"]) == 4  # no --yes
    assert Keyring.load(ring_path).verify_key(ledger_key.kid).compromised is False
    code, data = run_json(
        capsys, "keys", "compromised", ledger_key.kid, "--reason", "leaked in a backup", "--yes"
    )
    assert code == 0 and data["key"]["status"] == "compromised" and data["new_kid"]
    ring = Keyring.load(ring_path)
    assert ring.signing_key(KeyPurpose.LEDGER).kid == data["new_kid"]
    with pytest.raises(SignatureError):
        verify_checkpoint(
            cp.note, public_keys=[k.public_key for k in ring.verify_keys(KeyPurpose.LEDGER)]
        )
    assert main(["keys", "export-public", "--out", str(jwks)]) == 0
    exported = {k["kid"]: k for k in json.loads(jwks.read_text())["keys"]}
    assert exported[ledger_key.kid]["status"] == "compromised"
    with pytest.raises(SignatureError):
        verify_checkpoint(cp.note, public_keys=load_public_keys(jwks))

    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "compromised" in listing
    for secret in secrets_in(ring_path):
        assert secret not in listing
    store = open_store(store_url)
    try:
        trail = ConsoleQueries(store).audit_trail(target=ledger_key.kid, limit=5)
    finally:
        store.close()
    assert [(e.action, e.reason) for e in trail] == [("key_compromised", "leaked in a backup")]
    code, again = run_json(capsys, "keys", "compromised", ledger_key.kid, "--reason", "x", "--yes")
    assert code == 0 and again["already_compromised"] and again["new_kid"] is None
