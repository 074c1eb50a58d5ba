"""``distillguard passport``: issue, inspect, revoke and list agent passports."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, settings_of, state_of
from distillguard.cli._operations import cli_actor, open_operations
from distillguard.errors import ConfigurationError, InputError

__all__ = ["register"]

passport_app = typer.Typer(
    help=(
        "Agent passports: signed credentials binding an agent's Ed25519 key to an account.\n\n"
        "    distillguard passport issue --account acct_1 --org org_1 --new-agent-key agent.pem "
        "--out agent.passport"
    ),
    no_args_is_help=True,
)


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (refusing to overwrite) and write ``data``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(
            f"{path} already exists", hint="choose another file or remove the old one"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _fmt(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@passport_app.command("issue")
def issue(
    ctx: typer.Context,
    account: Annotated[str, typer.Option("--account", help="Account id the passport binds.")],
    org: Annotated[str, typer.Option("--org", help="Organisation id.")],
    out: Annotated[Path, typer.Option("--out", help="File to write the passport token to.")],
    new_agent_key: Annotated[
        Path | None,
        typer.Option("--new-agent-key", help="Generate the agent key pair into this file (0600)."),
    ] = None,
    agent_key: Annotated[
        Path | None, typer.Option("--agent-key", help="Existing agent key (PEM private key).")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Allowed model (repeat; default all).")
    ] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint", help="Allowed path, '/v1/*' for a prefix (repeat; default all)."
        ),
    ] = None,
    rpm: Annotated[int, typer.Option("--rpm", min=1, help="Requests per minute.")] = 60,
    tokens_per_day: Annotated[
        int, typer.Option("--tokens-per-day", min=1, help="Tokens per day.")
    ] = 1_000_000,
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="Lifetime (default from settings).")
    ] = None,
) -> None:
    """Issue a passport signed with the keyring's passport key.

    Example: `distillguard passport issue --account acct_1 --org org_1 --model small-1
    --endpoint '/v1/*' --new-agent-key agent.pem --out agent.passport`
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from distillguard.app.operations import PassportRequest
    from distillguard.passport import agent_jwk, load_agent_key

    state = state_of(ctx)
    settings = settings_of(ctx)
    if (new_agent_key is None) == (agent_key is None):
        raise ConfigurationError("give exactly one of --new-agent-key FILE or --agent-key FILE")
    if out.exists():
        raise InputError(f"{out} already exists", hint="choose another --out file")
    if new_agent_key is not None and new_agent_key.exists():
        raise InputError(
            f"{new_agent_key} already exists", hint="choose another file or remove the old one"
        )
    if agent_key is not None:
        private = load_agent_key(agent_key)
    else:
        assert new_agent_key is not None
        private = Ed25519PrivateKey.generate()
    request = PassportRequest(
        account_id=account,
        org_id=org,
        agent_jwk=agent_jwk(private.public_key()),
        models=tuple(model or ("*",)),
        endpoints=tuple(endpoint or ("*",)),
        requests_per_minute=rpm,
        tokens_per_day=tokens_per_day,
        ttl_days=days or settings.passport.default_ttl_days,
    )
    # the service signs, registers and audits it; the files (checked absent above) are written
    # after: should a write still fail, the passport is listed with its token lost (revoke it)
    ops = open_operations(settings)
    try:
        if ops.issuer is None:
            from distillguard.keyring import KeyPurpose, open_keyring

            open_keyring(settings).signing_key(KeyPurpose.PASSPORT)  # raises its own error
            raise ConfigurationError("no passport issuer key in the keyring")
        passport = ops.issue_passport(request, actor=cli_actor())
        if new_agent_key is not None:
            pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            _write_private(new_agent_key, pem)
        _write_private(out, (passport.token + "\n").encode("ascii"))
    finally:
        ops.close()
    if state.json_output:
        emit_json({"ok": True, "passport": passport.to_dict(), "out": str(out)})
        return
    console.print(f"issued passport [bold]{passport.passport_id}[/] for account {account}")
    console.print(f"  agent key id {passport.agent_kid}; expires {_fmt(passport.expires_at)}")
    console.print(f"  token written to {out}")
    if new_agent_key is not None:
        console.print(f"  agent private key written to {new_agent_key} (mode 0600)")


@passport_app.command("inspect")
def inspect(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A passport file, or the token itself.")],
) -> None:
    """Verify a passport with the keyring and show its claims and status.

    Exits with code 5 when the signature does not verify, the issuer key is unknown or
    compromised, or a retired issuer key signed it after its retirement. The status is
    `unregistered` for a passport the registry does not hold (the gateway refuses it).

    Example: `distillguard passport inspect agent.passport`
    """
    from distillguard.keyring import open_keyring
    from distillguard.passport import PassportValidator, open_registry

    state = state_of(ctx)
    settings = settings_of(ctx)
    path = Path(source)
    try:
        is_file = path.is_file()
    except OSError:  # a token is longer than a file name may be
        is_file = False
    try:
        token = path.read_text(encoding="utf-8").strip() if is_file else source.strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read passport {source}: {exc}") from None
    validator = PassportValidator.from_keyring(
        open_keyring(settings), issuer=settings.passport.issuer
    )
    passport = validator.decode(token, check_time=False)
    from distillguard.passport import RegistrationCache

    registry = open_registry(settings)
    try:
        revoked = registry.is_revoked(passport.passport_id)
        registered = RegistrationCache(registry).is_registered(passport)
    finally:
        registry.close()
    now = time.time()
    if not registered:  # not issued through the registry (or its claims differ): never accepted
        status = "unregistered"
    elif revoked:
        status = "revoked"
    else:
        status = "expired" if passport.is_expired(now) else "active"
    data: dict[str, Any] = {**passport.to_dict(), "status": status, "signature": "valid"}
    if state.json_output:
        emit_json(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in (
        ("passport", passport.passport_id),
        ("status", status),
        ("account", passport.account_id),
        ("org", passport.org_id),
        ("agent key id", passport.agent_kid),
        ("issuer key id", passport.issuer_kid),
        ("models", ", ".join(passport.scopes.models)),
        ("endpoints", ", ".join(passport.scopes.endpoints)),
        ("rate", f"{passport.rate.requests_per_minute}/min, {passport.rate.tokens_per_day}/day"),
        ("issued", _fmt(passport.issued_at)),
        ("expires", _fmt(passport.expires_at)),
    ):
        table.add_row(f"[dim]{key}[/]", str(value))
    console.print(table)


@passport_app.command("revoke")
def revoke(
    ctx: typer.Context,
    passport_id: Annotated[str, typer.Argument(help="The passport id (pp_...).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the list).")] = "revoked",
) -> None:
    """Put a passport on the revocation list; running verifiers refuse it within
    `[passport] revocation_refresh_s` (1 s by default).

    Example: `distillguard passport revoke pp_x1y2 --reason "distillation campaign C-17"`
    """
    state = state_of(ctx)
    settings = settings_of(ctx)
    ops = open_operations(settings, keys=False)
    try:
        known = ops.passport(passport_id) is not None
        revocation = ops.revoke_passport(
            passport_id,
            reason=reason,
            actor=cli_actor(),
            allow_unknown=True,  # a passport issued elsewhere: warned about, still revoked
            listed_reason=reason,
        )
    finally:
        ops.close()
    if state.json_output:
        emit_json({"ok": True, "known": known, **revocation.to_dict()})
        return
    console.print(f"revoked passport [bold]{passport_id}[/] at {_fmt(revocation.revoked_at)}")
    if not known:
        console.print("[yellow]note:[/] this id was not issued from this registry")


@passport_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List issued passports with their status (active, expired, revoked).

    Example: `distillguard --json passport list`
    """
    from distillguard.passport import open_registry

    state = state_of(ctx)
    settings = settings_of(ctx)
    registry = open_registry(settings)
    try:
        records = registry.list_passports()
    finally:
        registry.close()
    now = time.time()
    if state.json_output:
        emit_json({"passports": [r.to_dict(now) for r in records]})
        return
    table = Table("passport", "account", "org", "agent key", "expires", "status")
    for r in records:
        table.add_row(
            r.passport_id,
            r.account_id,
            r.org_id,
            r.agent_kid[:12] + "…",
            _fmt(r.expires_at),
            r.status(now),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``passport`` to the main command."""
    app.add_typer(passport_app, name="passport")
