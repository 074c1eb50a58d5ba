"""Evidence bundles: built from the store, verified offline, every altered byte named."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TypeAlias

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.errors import InputError, LegalHoldError
from distillguard.evidence import build_bundle, build_report, verify_evidence_bundle
from distillguard.evidence._bundle import MANIFEST, SIGNATURE
from distillguard.evidence._zip import layout, read_local_entry
from distillguard.evidence.testing import World
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.ledger import load_public_keys
from distillguard.privacy import LegalHolds, erase_account
from distillguard.results import read_scan
from distillguard.store import open_store

Regions: TypeAlias = list[tuple[int, int, str | None, str]]


def _bundle(world: World, out: Path, *, html: bytes | None = b"<html>report</html>") -> Path:
    ring = Keyring.load(world.keyring_path)
    scan = read_scan(world.scan_dir)
    with open_store(world.store_url) as store:
        report = build_report(scan=scan, store=store)
        cited = report.cited
        build_bundle(
            out=out,
            store=store,
            keyring=ring,
            exchange_ids=[e for ids in cited.values() for e in ids],
            citations=cited,
            scan_dir=world.scan_dir,
            report_html=html,
        )
    return out


def _regions(blob: bytes) -> Regions:
    """The regions of a valid bundle, from its own manifest."""
    _, manifest, after = read_local_entry(blob, 0)
    _, signature, _ = read_local_entry(blob, after)
    files = orjson.loads(manifest)["files"]
    members = [(MANIFEST, len(manifest)), (SIGNATURE, len(signature))]
    members += [(f["path"], f["size"]) for f in files]
    return [(r.start, r.end, r.member, r.part) for r in layout(members)]


def test_bundle_verifies_and_holds_cited_records(world: World, tmp_path: Path) -> None:
    path = _bundle(world, tmp_path / "evidence.zip")
    check = verify_evidence_bundle(path)
    assert check.ok, check.problems
    assert check.exchanges_verified == 5 and check.checkpoints_verified == 1
    assert check.trust == "keys in the bundle"
    names = set(zipfile.ZipFile(path).namelist())  # any zip reader opens it
    assert {"manifest.json", "manifest.sig", "keys/jwks.json", "citations.json"} <= names
    assert {"results/scan/campaigns.json", "results/scan/account_scores.parquet"} <= names
    cited = set(check.exchange_ids)
    assert len(cited) == 5 and all(e.startswith("ex-acct-c") for e in cited)
    with open_store(world.store_url) as store:
        holds = LegalHolds(store)
        assert all(holds.is_held(e) for e in cited)
        assert not holds.is_held("ex-acct-o0-0")


def test_trusted_key_is_required_to_match(sqlite_world: World, tmp_path: Path) -> None:
    path = _bundle(sqlite_world, tmp_path / "evidence.zip")
    ring = Keyring.load(sqlite_world.keyring_path)
    ours = [vk.public_key for vk in ring.verify_keys(KeyPurpose.LEDGER)]
    assert verify_evidence_bundle(path, public_keys=ours).ok
    other = Keyring.create(tmp_path / "other.json")
    theirs = [other.signing_key(KeyPurpose.LEDGER).public_key()]
    check = verify_evidence_bundle(path, public_keys=theirs)
    assert not check.ok
    named = {m for p in check.problems for m in p.members}
    assert "manifest.sig" in named or "manifest.json" in named
    assert any(p.members and p.members[0].startswith("checkpoints/") for p in check.problems)
    assert any(p.members and p.members[0].startswith("exchanges/") for p in check.problems)


def test_a_bundle_made_before_an_erasure_still_verifies(world: World, tmp_path: Path) -> None:
    path = _bundle(world, tmp_path / "evidence.zip")
    keys = [vk.public_key for vk in Keyring.load(world.keyring_path).verify_keys(KeyPurpose.LEDGER)]
    with open_store(world.store_url) as store:
        # the hold refuses a plain erasure of a cited account ...
        with pytest.raises(LegalHoldError):
            erase_account(store, account_id="acct-c0", reason="GDPR art. 17", actor="dpo")
        # ... a forced one goes through, and the bundle handed out before still verifies
        erase_account(store, account_id="acct-c0", reason="GDPR art. 17", actor="dpo", force=True)
        assert store.get_exchange("ex-acct-c0-5") is None
    check = verify_evidence_bundle(path, public_keys=keys)
    assert check.ok, check.problems
    assert check.exchanges_verified == 5


def test_unknown_cited_exchange_is_refused(sqlite_world: World, tmp_path: Path) -> None:
    ring = Keyring.load(sqlite_world.keyring_path)
    with open_store(sqlite_world.store_url) as store, pytest.raises(InputError, match="ex-nope"):
        build_bundle(
            out=tmp_path / "b.zip", store=store, keyring=ring, exchange_ids=["ex-nope"],
            citations={},
        )  # fmt: skip


@pytest.fixture(scope="module")
def valid_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Regions]:
    from distillguard.evidence.testing import build_world

    tmp = tmp_path_factory.mktemp("bundle")
    world = build_world(tmp, f"sqlite:///{tmp / 'store.sqlite'}")
    blob = _bundle(world, tmp / "evidence.zip", html=b"<html>" + b"x" * 300 + b"</html>")
    return blob.read_bytes(), _regions(blob.read_bytes())


def _check_flip(blob: bytes, regions: Regions, offset: int, mask: int, tmp: Path) -> None:
    tampered = bytearray(blob)
    tampered[offset] ^= mask
    path = tmp / f"t-{offset}-{mask}.zip"
    path.write_bytes(bytes(tampered))
    check = verify_evidence_bundle(path)
    assert not check.ok, f"flip at {offset} not detected"
    _start, _end, member, part = next(r for r in regions if r[0] <= offset < r[1])
    if member is None:
        assert any(p.part == part for p in check.problems), (offset, part, check.problems)
    else:
        named = {m for p in check.problems for m in p.members}
        assert member in named, (offset, member, part, check.problems)
    path.unlink()


def test_a_flip_in_every_region_is_detected_and_named(
    valid_bundle: tuple[bytes, Regions],
    tmp_path: Path,
) -> None:
    blob, regions = valid_bundle
    assert regions[-1][1] == len(blob)  # the regions cover the file exactly
    for start, end, _, _ in regions:
        for offset in {start, (start + end) // 2, end - 1}:
            _check_flip(blob, regions, offset, 0x01, tmp_path)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_flipped_byte_is_detected_and_named(
    valid_bundle: tuple[bytes, Regions],
    tmp_path: Path,
    data: st.DataObject,
) -> None:
    blob, regions = valid_bundle
    offset = data.draw(st.integers(0, len(blob) - 1), label="offset")
    mask = data.draw(st.integers(1, 255), label="mask")
    _check_flip(blob, regions, offset, mask, tmp_path)


def test_truncated_and_extended_files_are_named(
    valid_bundle: tuple[bytes, Regions],
    tmp_path: Path,
) -> None:
    blob, _ = valid_bundle
    (tmp_path / "long.zip").write_bytes(blob + b"\x00")
    check = verify_evidence_bundle(tmp_path / "long.zip")
    assert not check.ok and any(p.part == "length" for p in check.problems)
    (tmp_path / "short.zip").write_bytes(blob[: len(blob) // 2])
    check = verify_evidence_bundle(tmp_path / "short.zip")
    assert not check.ok and check.problems
    (tmp_path / "empty.zip").write_bytes(b"")
    check = verify_evidence_bundle(tmp_path / "empty.zip")
    assert [p.members for p in check.problems] == [("manifest.json",)]
    with pytest.raises(InputError):
        verify_evidence_bundle(tmp_path / "missing.zip")


def test_public_key_file_round_trip(sqlite_world: World, tmp_path: Path) -> None:
    path = _bundle(sqlite_world, tmp_path / "evidence.zip")
    with zipfile.ZipFile(path) as zf:
        (tmp_path / "jwks.json").write_bytes(zf.read("keys/jwks.json"))
    assert verify_evidence_bundle(path, public_keys=load_public_keys(tmp_path / "jwks.json")).ok


def test_an_added_member_is_named(valid_bundle: tuple[bytes, Regions], tmp_path: Path) -> None:
    from distillguard.cli.main import main

    blob, _ = valid_bundle
    path = tmp_path / "added.zip"
    path.write_bytes(blob)
    with zipfile.ZipFile(path, "a") as zf:  # what any zip tool does to add a file
        zf.writestr("exchanges/99999.json", b'{"planted": true}')
    check = verify_evidence_bundle(path)
    assert not check.ok
    added = [p for p in check.problems if "exchanges/99999.json" in p.members]
    assert added and "not listed in the signed manifest" in added[0].message
    assert main(["verify-bundle", str(path)]) == 5
