"""The operations service on both store backends: every action audited with one instant and
its door, overrides applied to the policy at once, the refusals, the door outside the server.
(The copy of the console's older audit rows is the store's migration 2, tested with the
migrations.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.app.operations import Actor, Operations, PassportRequest
from distillguard.errors import ConfigurationError, InputError
from distillguard.gateway.policy import Action, NullScorer, Policy, PolicyThresholds
from distillguard.keyring import KeyPurpose, Keyring
from distillguard.ledger import Ledger
from distillguard.passport import PassportIssuer, SQLitePassportRegistry, agent_jwk
from distillguard.store import Store, open_store
from distillguard.testing import make_account, postgres_store_url

ANA = Actor("ana", "console")
BO = Actor("bo", "admin")


class Clock:
    """A settable clock (aware UTC)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    ops: Operations
    store: Store
    clock: Clock
    keyring: Keyring


def _world(url: str, tmp_path: Path, *, keys: bool = True) -> World:
    ring = Keyring.create(tmp_path / "keyring.json")
    store = open_store(url)
    with store.transaction() as cur:
        store.add_accounts(cur, [make_account("acct-1"), make_account("acct-2")], run_id="t")
    Ledger.attach(store, origin="dg.test/ledger")
    # now (overrides expire in real time), at a microsecond that float seconds get wrong
    clock = Clock(datetime.now(UTC).replace(microsecond=123457))
    ops = Operations(
        store=store,
        policy=Policy(thresholds=PolicyThresholds(), secret=b"k" * 32),
        scorer=NullScorer(),
        registry=SQLitePassportRegistry(tmp_path / "passports.sqlite"),
        issuer=PassportIssuer(key=ring.signing_key(KeyPurpose.PASSPORT), issuer="dg-test")
        if keys
        else None,
        ledger_key=ring.signing_key(KeyPurpose.LEDGER) if keys else None,
        ledger_origin="dg.test/ledger",
        ledger_public_keys=ring.verify_keys(KeyPurpose.LEDGER),
        clock=clock,
    )
    return World(ops, store, clock, ring)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "sqlite":
        w = _world(f"sqlite:///{tmp_path / 'store.sqlite'}", tmp_path)
        yield w
        w.ops.close()
        return
    with postgres_store_url() as url:
        w = _world(url, tmp_path)
        yield w
        w.ops.close()


def _rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    with store.transaction() as cur:
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def test_an_action_is_one_instant_in_the_override_the_log_and_the_audit(world: World) -> None:
    """The override's set_at, its gateway_actions row and its audit entry: the same µs."""
    out = world.ops.set_action(
        "acct-1", Action.BLOCK, reason="card cell C-3", actor=ANA, expires_in_s=3600
    )
    now = world.clock.now
    assert out.override.set_at == now
    assert world.ops.policy is not None
    assert world.ops.policy.override("acct-1") is not None  # applied at once
    ((set_at, expires_at),) = _rows(world.store, "SELECT set_at, expires_at FROM gateway_overrides")
    ((ts, reason, source),) = _rows(world.store, "SELECT ts, reason, source FROM gateway_actions")
    audit = world.ops.audit_trail()
    assert len(audit) == 1
    micros = (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert int(set_at) == int(ts) == micros  # type: ignore[call-overload]
    assert audit[0].ts == now
    assert int(expires_at) - int(set_at) == 3_600_000_000  # type: ignore[call-overload]
    assert reason == "set by ana (console): card cell C-3" and source == "admin"
    e = audit[0]
    assert (e.actor, e.door, e.action, e.target, e.reason, e.outcome) == (
        "ana",
        "console",
        "block",
        "acct-1",
        "card cell C-3",
        "applied",
    )
    [loaded] = world.ops.load_overrides()
    assert loaded.set_at == now and loaded.expires_at == now + timedelta(hours=1)


def test_clear_is_audited_whether_or_not_there_was_an_override(world: World) -> None:
    world.ops.set_action("acct-1", Action.THROTTLE, reason="r", actor=BO)
    world.clock.now += timedelta(seconds=1)
    assert world.ops.clear_action("acct-1", actor=BO, reason="false alarm") is True
    assert world.ops.policy is not None
    assert world.ops.policy.override("acct-1") is None
    world.clock.now += timedelta(seconds=1)
    assert world.ops.clear_action("acct-1", actor=ANA) is False
    trail = world.ops.audit_trail(target="acct-1")
    assert [(e.action, e.outcome, e.door) for e in trail] == [
        ("clear", "no override", "console"),
        ("clear", "cleared", "admin"),
        ("throttle", "applied", "admin"),
    ]
    assert [e.action for e in world.ops.audit_trail(door="admin")] == ["clear", "throttle"]
    assert world.ops.overridden(Action.THROTTLE) == frozenset()


def test_action_refusals_write_nothing(world: World) -> None:
    with pytest.raises(InputError, match="reason"):
        world.ops.set_action("acct-1", Action.BLOCK, reason="   ", actor=ANA)
    with pytest.raises(InputError, match="expiry"):
        world.ops.set_action("acct-1", Action.BLOCK, reason="r", actor=ANA, expires_in_s=0)
    with pytest.raises(InputError, match="account id"):
        world.ops.set_action("", Action.BLOCK, reason="r", actor=ANA)
    assert world.ops.audit_trail() == [] and world.ops.load_overrides() == []
    assert _rows(world.store, "SELECT COUNT(*) FROM gateway_actions") == [(0,)]


def test_labels_are_audited_and_unknown_accounts_refused(world: World) -> None:
    label = world.ops.record_label("acct-2", "campaign", actor=BO, note="C-3")
    assert label.labelled_at == world.clock.now and label.actor == "bo"
    with pytest.raises(InputError, match="unknown account"):
        world.ops.record_label("nobody", "campaign", actor=BO)
    with pytest.raises(InputError, match="verdict"):
        world.ops.record_label("acct-2", "maybe", actor=BO)
    [e] = world.ops.audit_trail()
    assert (e.action, e.target, e.reason, e.ts) == (
        "label_campaign",
        "acct-2",
        "C-3",
        label.labelled_at,
    )
    assert [x.verdict for x in world.ops.labels()] == ["campaign"]


def test_passports_issued_and_revoked_are_audited(world: World) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    passport = world.ops.issue_passport(
        PassportRequest(account_id="acct-1", org_id="org", agent_jwk=agent_jwk(key.public_key())),
        actor=BO,
    )
    world.clock.now += timedelta(seconds=1)
    assert [r.passport_id for r in world.ops.passports(account_id="acct-1")] == [
        passport.passport_id
    ]
    assert world.ops.passports(account_id="acct-2") == []
    revocation = world.ops.revoke_passport(passport.passport_id, reason="leaked", actor=ANA)
    assert revocation.reason == "ana: leaked"
    assert revocation.revoked_at == int(world.clock.now.timestamp())
    with pytest.raises(InputError, match="unknown passport"):
        world.ops.revoke_passport("pp_nope", reason="x", actor=ANA)
    trail = world.ops.audit_trail()
    assert [(e.action, e.door, e.target) for e in trail] == [
        ("revoke_passport", "console", "acct-1"),
        ("issue_passport", "admin", "acct-1"),
    ]
    assert trail[0].reason == f"{passport.passport_id}: leaked"


def test_checkpoint_and_ledger_audit_are_audited(world: World) -> None:
    size, note = world.ops.publish_checkpoint(actor=BO)
    assert size == 0 and note.startswith("dg.test/ledger")
    assert world.ops.ledger_head()["checkpoint"] == note
    world.clock.now += timedelta(seconds=1)
    report = world.ops.audit_ledger(actor=ANA)
    assert report["ok"] is True and report["by"] == "ana" and report["at"] == world.clock.now
    assert [(e.action, e.outcome) for e in world.ops.audit_trail()] == [
        ("ledger_audit", "ok"),
        ("ledger_checkpoint", "size 0"),
    ]


def test_missing_keys_are_configuration_errors(tmp_path: Path) -> None:
    w = _world(f"sqlite:///{tmp_path / 's.sqlite'}", tmp_path, keys=False)
    try:
        with pytest.raises(ConfigurationError, match="ledger key"):
            w.ops.publish_checkpoint(actor=BO)
        with pytest.raises(ConfigurationError, match="passport issuer"):
            w.ops.issue_passport(
                PassportRequest(account_id="a", org_id="o", agent_jwk={}), actor=BO
            )
        assert w.ops.audit_trail() == []
    finally:
        w.ops.close()


def test_legal_holds_are_audited(world: World) -> None:
    hold = world.ops.place_hold("account", "acct-1", reason="litigation 7", actor=BO)
    assert hold.created_at == world.clock.now and hold.created_by == "bo"
    assert [h.hold_id for h in world.ops.holds()] == [hold.hold_id]
    world.clock.now += timedelta(minutes=1)
    released = world.ops.release_hold(hold.hold_id, actor=ANA, reason="settled")
    assert released.released_at == world.clock.now
    with pytest.raises(InputError, match="already released"):
        world.ops.release_hold(hold.hold_id, actor=ANA)
    assert world.ops.holds() == [] and len(world.ops.holds(include_released=True)) == 1
    assert [(e.action, e.outcome, e.reason) for e in world.ops.audit_trail()] == [
        ("release_hold", hold.hold_id, "settled"),
        ("hold_account", hold.hold_id, "litigation 7"),
    ]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One SQLite world for the property test (its examples share it)."""
    w = _world(
        f"sqlite:///{tmp_path_factory.mktemp('ops') / 's.sqlite'}", tmp_path_factory.mktemp("k")
    )
    yield w
    w.ops.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    when=st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(UTC),
    ),
    expires=st.one_of(st.none(), st.integers(min_value=1, max_value=10 * 365 * 86400)),
)
def test_stored_instants_are_exact_to_the_microsecond(
    shared: World, when: datetime, expires: int | None
) -> None:
    """Integer conversion, not float seconds: what is read back is the instant set (the
    console used ``int(t.timestamp() * 1e6)``, off by one µs for many instants)."""
    w = shared
    w.clock.now = when
    out = w.ops.set_action("acct-1", Action.WATERMARK, reason="r", actor=ANA, expires_in_s=expires)
    [o] = w.ops.load_overrides()
    assert o.set_at == when
    assert o.expires_at == (when + timedelta(seconds=expires) if expires else None)
    [row] = _rows(
        w.store,
        f"SELECT a.ts, g.ts FROM operations_audit a, gateway_actions g "
        f"WHERE a.audit_id = '{out.audit.audit_id}' AND g.action_id = '{out.action_id}'",
    )
    micros = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert row == (micros, micros)


@given(name=st.text(max_size=5), door=st.text(max_size=10))
def test_actor_accepts_only_a_name_and_a_known_door(name: str, door: str) -> None:
    ok = bool(name.strip()) and door in ("admin", "console", "cli", "internal")
    if ok:
        assert Actor(name, door).name == name  # type: ignore[arg-type]
    else:
        with pytest.raises(InputError):
            Actor(name, door)  # type: ignore[arg-type]


def test_a_door_outside_the_server(tmp_path: Path) -> None:
    """The CLI's service: no live policy; overrides reach the gateway through the store."""
    from distillguard.app import create_gateway, operations_from_settings
    from distillguard.gateway.testing import make_settings

    settings = make_settings(tmp_path)
    cli = Actor("ops-oncall", "cli")
    ops = operations_from_settings(settings)
    try:
        with pytest.raises(ConfigurationError, match="policy"):
            ops.status("acct-1")
        ops.set_action("acct-9", Action.BLOCK, reason="from the runbook", actor=cli)
        hold = ops.place_hold("account", "acct-9", reason="case 12", actor=cli)
        size, _ = ops.publish_checkpoint(actor=cli)
        trail = ops.audit_trail(door="cli")
    finally:
        ops.close()
    assert size == 0 and hold.created_by == "ops-oncall"
    assert [e.action for e in trail] == ["ledger_checkpoint", "hold_account", "block"]
    gateway = create_gateway(settings)
    try:
        o = gateway.core.policy.override("acct-9")
        assert o is not None and o.action == Action.BLOCK and o.actor == "ops-oncall"
    finally:
        gateway.close_sync()


def test_the_service_outside_the_server_needs_no_gateway(tmp_path: Path) -> None:
    """Holds, checkpoints and revocations work on an install without the gateway extra: the
    gateway's modules are imported by the override calls only."""
    import subprocess
    import sys

    code = f"""
import sys
from distillguard.config import Settings
from distillguard.keyring import Keyring
from distillguard.app import Actor, operations_from_settings
s = Settings(home={str(tmp_path / "home")!r})
s.keyring_path.parent.mkdir(parents=True, exist_ok=True)
Keyring.create(s.keyring_path)
ops = operations_from_settings(s)
cli = Actor("a", "cli")
ops.place_hold("account", "x", reason="r", actor=cli)
ops.publish_checkpoint(actor=cli)
assert [e.action for e in ops.audit_trail()] == ["ledger_checkpoint", "hold_account"]
ops.close()
loaded = sorted(m for m in sys.modules if m.startswith("distillguard.gateway") or m == "fastapi")
print(loaded)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
