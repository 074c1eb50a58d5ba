"""``distillguard keys``: create, list, rotate the keyring's keys, mark one compromised and
export the public ones."""

from __future__ import annotations

import getpass
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, state_of
from distillguard.errors import InputError, KeyringError
from distillguard.keyring import KeyInfo, KeyPurpose, Keyring

if TYPE_CHECKING:
    from distillguard.config import Settings

__all__ = ["register"]

logger = logging.getLogger(__name__)

keys_app = typer.Typer(
    help=(
        "Manage the keyring: the watermark secret and the Ed25519 keys that sign the ledger and "
        "agent passports.\n\n"
        "Example: `distillguard keys init && distillguard keys list`"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _keys_table(infos: list[KeyInfo]) -> Table:
    # Fits in 80 columns with full key ids (43 characters).
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold")
    table.add_column("kid", no_wrap=True)
    table.add_column("purpose", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for info in infos:
        created = info.created_at.strftime("%Y-%m-%d %H:%M")
        status = {"active": "[green]active[/]", "compromised": "[bold red]compromised[/]"}.get(
            info.status, info.status
        )
        table.add_row(info.kid, str(info.purpose), created, status)
    return table


@keys_app.command("init")
def init(
    ctx: typer.Context,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace an existing keyring. Its keys are destroyed: back it up first."
        ),
    ] = False,
    allow_git_work_tree: Annotated[
        bool,
        typer.Option(
            "--allow-git-work-tree",
            help="Create it even inside a git work tree that does not ignore it (refused "
            "otherwise: `git add .` would commit the keys).",
        ),
    ] = False,
) -> None:
    """Create the keyring (mode 0600) with one new key per purpose.

    The file goes to `keyring.path` of the configuration, by default `HOME/keyring.json`, where
    HOME is `$DISTILLGUARD_HOME` or the per-user data folder (`~/.local/share/distillguard` on
    Linux). A path inside a git checkout is refused unless git ignores it.

    Example: `distillguard keys init` (or `distillguard keys init --force` to start over)
    """
    state = state_of(ctx)
    path = state.settings().keyring_path
    ring = Keyring.create(path, overwrite=force, allow_git_work_tree=allow_git_work_tree)
    infos = ring.describe()
    if state.json_output:
        emit_json({"ok": True, "path": str(path), "keys": [i.to_dict() for i in infos]})
        return
    console.print(f"Created keyring [bold]{path}[/] (mode 0600).", soft_wrap=True)
    console.print(_keys_table(infos))
    console.print(
        "Back it up somewhere safe: losing it loses the watermark secret and signing keys."
    )


@keys_app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """List every key: id, purpose, algorithm, creation time and status (active or retired).

    No secret is shown. Example: `distillguard --json keys list`
    """
    state = state_of(ctx)
    path = state.settings().keyring_path
    infos = Keyring.load(path).describe()
    if state.json_output:
        emit_json({"ok": True, "path": str(path), "keys": [i.to_dict() for i in infos]})
        return
    console.print(f"Keyring [bold]{path}[/]", soft_wrap=True)
    console.print(_keys_table(infos))


@keys_app.command("rotate")
def rotate(
    ctx: typer.Context,
    purpose: Annotated[
        KeyPurpose,
        typer.Argument(
            help="Which key to rotate: ledger, passport or watermark.", case_sensitive=False
        ),
    ],
) -> None:
    """Retire the active key of PURPOSE and make a new one.

    The retired key stays in the keyring, so old signatures still verify and old watermarks are
    still detected. Publish the new public keys afterwards with `keys export-public`.

    Example: `distillguard keys rotate passport`
    """
    state = state_of(ctx)
    path = state.settings().keyring_path
    ring = Keyring.load(path)
    old = ring.describe()
    retired = next(i.kid for i in old if i.purpose is purpose and i.retired_at is None)
    kid = ring.rotate(purpose)
    if state.json_output:
        emit_json(
            {"ok": True, "path": str(path), "purpose": str(purpose), "kid": kid, "retired": retired}
        )
        return
    console.print(
        f"Rotated the {purpose} key: new [bold]{kid}[/], retired {retired}.", soft_wrap=True
    )
    if purpose is not KeyPurpose.WATERMARK:
        console.print(
            "Publish the new public key: `distillguard keys export-public --out jwks.json`"
        )


def _audit(settings: Settings, *, kid: str, reason: str, outcome: str) -> None:
    """Append the compromise to the audit trail in the store (what the console shows)."""
    from distillguard.console import ConsoleQueries
    from distillguard.errors import DistillGuardError
    from distillguard.gateway.policy import ensure_action_tables
    from distillguard.store import open_store

    try:
        actor = "cli:" + getpass.getuser()
    except (KeyError, OSError):
        actor = "cli"
    try:
        store = open_store(settings.store_url)
        try:
            ensure_action_tables(store)  # the console's tables refer to them
            queries = ConsoleQueries(store)
            queries.ensure_tables()
            queries.record_audit(
                analyst=actor, action="key_compromised", target=kid, reason=reason, outcome=outcome
            )
        finally:
            store.close()
    except DistillGuardError as exc:
        logger.warning(
            "key %s marked compromised, but the audit trail was not written: %s", kid, exc.message
        )


@keys_app.command("compromised")
def compromised(
    ctx: typer.Context,
    kid: Annotated[str, typer.Argument(help="The key id (see `keys list`).")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why the key is distrusted (kept and audited).")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Mark key KID compromised: nothing it ever signed is trusted any more.

    Passports it issued are refused by the gateway (`compromised_issuer_key`), ledger checkpoints
    it signed no longer verify, and `keys export-public` lists it with status `compromised` so
    that offline verifiers distrust it too. If KID is the active key of its purpose, a new key is
    made in the same step. This cannot be undone. Follow the key-compromise runbook in
    docs/keys.md (re-issue passports, publish the public keys).

    Example: `distillguard keys compromised KID --reason "leaked in a backup" --yes`
    """
    state = state_of(ctx)
    settings = state.settings()
    path = settings.keyring_path
    ring = Keyring.load(path)
    info = next((i for i in ring.describe() if i.kid == kid), None)
    if info is None:
        ring.verify_key(kid)  # raises KeyNotFoundError with the usual hint
        raise AssertionError("unreachable")  # pragma: no cover
    if not reason.strip():
        raise InputError("--reason must not be empty", hint="say why the key is distrusted")
    if not yes and info.status != "compromised":
        if not sys.stdin.isatty():
            raise InputError(
                "marking a key compromised needs a confirmation",
                hint="pass --yes (it cannot be undone)",
            )
        if not typer.confirm(
            f"Mark the {info.purpose} key {kid} compromised? Everything it signed will be refused"
        ):
            console.print("Nothing changed.")
            raise typer.Exit(1)
    before = info.status
    marked, new_kid = ring.mark_compromised(kid, reason=reason.strip())
    if before != "compromised":
        _audit(settings, kid=kid, reason=reason.strip(), outcome=f"compromised ({marked.purpose})")
    if state.json_output:
        emit_json(
            {
                "ok": True,
                "path": str(path),
                "key": marked.to_dict(),
                "new_kid": new_kid,
                "already_compromised": before == "compromised",
            }
        )
        return
    if before == "compromised":
        console.print(f"Key {kid} was already marked compromised.", soft_wrap=True)
        return
    console.print(f"Marked the {marked.purpose} key [bold]{kid}[/] compromised.", soft_wrap=True)
    if new_kid is not None:
        console.print(f"It was the active key: the new {marked.purpose} key is {new_kid}.")
    console.print(
        "Next: publish `distillguard keys export-public --out jwks.json`, restart or reload "
        "the gateways, and re-issue the affected passports (docs/keys.md, key-compromise "
        "runbook)."
    )


@keys_app.command("export-public")
def export_public(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the JWK Set to this file instead of stdout."),
    ] = None,
) -> None:
    """Export the Ed25519 public keys (active, retired, compromised) as a JWK Set (RFC 7517).

    Verifiers use it to check ledger checkpoints and passports; it holds no secret. Each key
    has `status` and `retired_at`: a compromised key must be distrusted outright, a retired one
    trusted only for what was signed before `retired_at`.

    Example: `distillguard keys export-public --out jwks.json`
    """
    state = state_of(ctx)
    path = state.settings().keyring_path
    jwks = Keyring.load(path).public_jwks()
    if out is None:
        emit_json(jwks)
        return
    try:
        out.write_bytes(orjson.dumps(jwks, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        raise KeyringError(
            f"cannot write {out}: {exc.strerror or exc}", hint="check the --out path"
        ) from None
    if state.json_output:
        emit_json({"ok": True, "out": str(out), "keys": len(jwks["keys"])})
        return
    console.print(f"Wrote {len(jwks['keys'])} public keys to [bold]{out}[/].", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``keys`` to the main command."""
    app.add_typer(keys_app, name="keys")
