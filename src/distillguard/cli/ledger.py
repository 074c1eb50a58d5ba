"""``distillguard ledger``: the tree head, checkpoints, proofs, offline verification, audit."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from distillguard._internal.timeutil import format_ts
from distillguard.cli._common import AppState, console, emit_json, progress_bar, state_of
from distillguard.cli._operations import cli_actor, open_operations
from distillguard.config import Settings, mask_url
from distillguard.errors import EXIT_FINDINGS, InputError, KeyringError
from distillguard.keyring import KeyPurpose, VerifyKey, open_keyring
from distillguard.ledger import (
    Ledger,
    audit_ledger,
    load_public_keys,
    verify_bundle,
    verify_checkpoint,
    verify_consistency,
)
from distillguard.store import Store, open_store

__all__ = ["register"]

logger = logging.getLogger(__name__)

ledger_app = typer.Typer(
    help=(
        "The tamper-evident ledger: every stored exchange is a leaf of an RFC 9162 Merkle tree "
        "whose signed checkpoints anyone can verify.\n\n"
        "Example: `distillguard ledger head`, then "
        "`distillguard ledger prove ex-123 > ex-123.json`"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (default from config: HOME/store.sqlite)."),
]
PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        "-k",
        help="Public keys: the JWK Set of `keys export-public`, or C2SP verifier key lines "
        "(default: the keyring's ledger keys).",
    ),
]


def _open(settings: Settings, url: str | None) -> tuple[Store, Ledger]:
    store = open_store(url or settings.store_url)
    return store, Ledger.open(store, origin=settings.ledger.origin)


def _public_keys(
    settings: Settings, path: Path | None, *, include_compromised: bool = False
) -> list[VerifyKey]:
    """The ledger keys to verify with, time-bound: a retired key verifies only checkpoints and
    tombstones it signed before its ``retired_at``; compromised keys are left out, or (for the
    audit, which names what they signed) kept marked compromised: they verify nothing."""
    if path is not None:
        return load_public_keys(path, include_compromised=include_compromised)
    if not settings.keyring_path.exists():
        raise KeyringError(
            f"no public key given and no keyring at {settings.keyring_path}",
            hint="pass --public-key FILE (from `distillguard keys export-public`)",
        )
    ring = open_keyring(settings)
    return ring.verify_keys(KeyPurpose.LEDGER, include_compromised=include_compromised)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _checkpoint_text(path: Path) -> str:
    """A checkpoint note from a file holding the note itself or JSON with a ``note`` member."""
    text = _read_text(path, "checkpoint file")
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc.msg})") from None
        note = data.get("note") if isinstance(data, dict) else None
        if not isinstance(note, str):
            checkpoint = data.get("checkpoint") if isinstance(data, dict) else None
            note = checkpoint.get("note") if isinstance(checkpoint, dict) else checkpoint
        if not isinstance(note, str):
            raise InputError(f"{path}: no 'note' member holding a signed checkpoint")
        return note
    return text


def _publish(state: AppState, ledger: Ledger) -> dict[str, Any]:
    key = open_keyring(state.settings()).signing_key(KeyPurpose.LEDGER)
    return ledger.publish_checkpoint(key).to_dict()


@ledger_app.command("head")
def head(ctx: typer.Context, store_url: StoreOption = None) -> None:
    """Show the tree size, root hash and latest signed checkpoint.

    Example: `distillguard ledger head`
    """
    state = state_of(ctx)
    store, ledger = _open(state.settings(), store_url)
    with store:
        data: dict[str, Any] = ledger.head().to_dict()
        latest = ledger.latest_checkpoint()
        data["store"] = mask_url(store.url)
        data["latest_checkpoint"] = (
            None
            if latest is None
            else {
                "checkpoint_no": latest.checkpoint_no,
                "size": latest.size,
                "created_at": format_ts(latest.created_at),
                "kid": latest.kid,
                "note": latest.note,
            }
        )
    if state.json_output:
        emit_json(data)
        return
    console.print(f"origin  {data['origin']}")
    console.print(f"size    {data['size']:,}")
    console.print(f"root    {data['root_hash']} (base64)", soft_wrap=True)
    console.print(f"        {data['root_hash_hex']} (hex)", soft_wrap=True)
    if latest is None:
        console.print("no checkpoint yet: `distillguard ledger checkpoint` signs one")
    else:
        behind = data["size"] - latest.size
        console.print(
            f"latest checkpoint #{latest.checkpoint_no}: size {latest.size:,} at "
            f"{format_ts(latest.created_at)} by key {latest.kid}"
            + (f" ({behind:,} leaves since)" if behind else "")
        )


@ledger_app.command("checkpoint")
def checkpoint(
    ctx: typer.Context,
    store_url: StoreOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the signed note to this file.")
    ] = None,
    every: Annotated[
        float | None,
        typer.Option("--every", min=0.1, help="Keep publishing one every SECONDS until stopped."),
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="With --every: stop after N checkpoints.")
    ] = None,
) -> None:
    """Sign the current tree head with the keyring's ledger key and keep it in the store.

    The note is in the C2SP signed-note checkpoint format that transparency-log witnesses read.

    Examples:

        distillguard ledger checkpoint --out checkpoint.txt

        distillguard ledger checkpoint --every 300
    """
    state = state_of(ctx)
    settings = state.settings()
    ops = open_operations(settings, keys=False, store_url=store_url or settings.store_url)
    actor = cli_actor()
    published = 0
    with contextlib.closing(ops):
        while True:
            # the key is read from the keyring for each checkpoint (a rotation is picked up)
            ops.ledger_key = open_keyring(settings).signing_key(KeyPurpose.LEDGER)
            cp = ops.publish_checkpoint_record(actor=actor).to_dict()
            published += 1
            if out is not None:
                try:
                    out.write_text(cp["note"], encoding="utf-8")
                except OSError as exc:
                    raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
            if state.json_output:
                emit_json(cp)
            else:
                console.print(cp["note"], end="", soft_wrap=True, markup=False)
            if every is None or (count is not None and published >= count):
                return
            time.sleep(every)


@ledger_app.command("prove")
def prove(
    ctx: typer.Context,
    exchange_id: Annotated[str, typer.Argument(help="The exchange to prove.")],
    store_url: StoreOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the bundle here instead of stdout.")
    ] = None,
) -> None:
    """Print a self-contained inclusion bundle (JSON) for an exchange.

    The bundle holds the record, its salt, its leaf index and hash, the inclusion proof and the
    signed checkpoint; `ledger verify-inclusion` checks it offline with the public key. Where
    the content was erased it holds the metadata and the erasure's tombstone (when, why, by
    whom) with its own inclusion proof; for an exchange erased as a whole it is an erasure
    bundle: the erased leaf and its tombstones, each with an inclusion proof. If no checkpoint
    covers the leaf and its tombstones yet, one is signed first (with the keyring's ledger key).

    Example: `distillguard ledger prove ex-123 --out ex-123.json`
    """
    state = state_of(ctx)
    store, ledger = _open(state.settings(), store_url)
    with store:
        needed = ledger.needed_size(exchange_id)
        latest = ledger.latest_checkpoint()
        if (
            needed is not None
            and (latest is None or latest.size < needed)
            and state.settings().keyring_path.exists()
        ):
            _publish(state, ledger)
        leaf = ledger.leaf_for(exchange_id)
        erased = leaf is not None and any(
            e.scope == "record" and e.tombstone_index is not None
            for e in ledger.erasures_of(leaf.leaf_index)
        )
        made = ledger.prove_erasure(exchange_id) if erased else ledger.prove(exchange_id)
        bundle = made.to_dict()
    if out is None:
        emit_json(bundle)
        return
    try:
        out.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    what = "erasure bundle" if erased else "inclusion bundle"
    if state.json_output:
        emit_json(
            {"ok": True, "out": str(out), "leaf_index": bundle["leaf_index"], "erased": erased}
        )
    else:
        console.print(f"wrote the {what} of leaf {bundle['leaf_index']} to {out}")


@ledger_app.command("verify-inclusion")
def verify_inclusion_cmd(
    ctx: typer.Context,
    bundle_file: Annotated[Path, typer.Argument(help="A bundle written by `ledger prove`.")],
    public_key: PublicKeyOption = None,
    origin: Annotated[
        str | None, typer.Option("--origin", help="Require checkpoints of this log.")
    ] = None,
) -> None:
    """Verify an inclusion bundle offline: record → leaf → proof → signed checkpoint.

    Needs no store: only the bundle and the ledger's public key. Tombstones in the bundle
    (erasures of the record or its content) are verified too and shown: when, why, by whom.

    Example: `distillguard ledger verify-inclusion ex-123.json --public-key jwks.json`
    """
    state = state_of(ctx)
    try:
        data = json.loads(_read_text(bundle_file, "bundle"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{bundle_file}: not valid JSON ({exc.msg})") from None
    result = verify_bundle(
        data, public_keys=_public_keys(state.settings(), public_key), origin=origin
    )
    if state.json_output:
        emit_json(result.to_dict())
        return
    if result.record_erased:
        console.print(
            f"[green]verified[/]: {result.exchange_id} was leaf {result.leaf_index} of the tree "
            f"of {result.tree_size:,} leaves of {result.origin} (key {result.kid}) and is "
            "[bold]erased[/]: the record is gone, its erasure is in the log"
        )
    else:
        console.print(
            f"[green]verified[/]: {result.exchange_id} is leaf {result.leaf_index} of the tree "
            f"of {result.tree_size:,} leaves of {result.origin}, signed by key {result.kid}"
            + ("" if result.content_verified else " (metadata only: content erased)")
        )
    for t in result.erasures:
        console.print(
            f"erased: {t.scope} on {format_ts(t.erased_at)} by {t.actor}: {t.reason}",
            markup=False,
        )


def _proof_from_file(path: Path) -> list[bytes]:
    text = _read_text(path, "proof file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg})") from None
    items = data.get("proof") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise InputError(f"{path}: expected a list of base64 hashes (or {{'proof': [...]}})")
    try:
        return [base64.b64decode(p, validate=True) for p in items]
    except (binascii.Error, ValueError):
        raise InputError(f"{path}: a proof hash is not base64") from None


@ledger_app.command("verify-consistency")
def verify_consistency_cmd(
    ctx: typer.Context,
    old: Annotated[Path, typer.Argument(help="The older signed checkpoint (note or JSON).")],
    new: Annotated[Path, typer.Argument(help="The newer signed checkpoint.")],
    proof_file: Annotated[
        Path | None,
        typer.Option(
            "--proof",
            help="The consistency proof (JSON list of base64 hashes); "
            "default: computed from the store.",
        ),
    ] = None,
    public_key: PublicKeyOption = None,
    store_url: StoreOption = None,
) -> None:
    """Verify that the log of NEW extends the log of OLD (nothing rewritten or removed).

    Both checkpoints' signatures are checked, then the RFC 9162 consistency proof.

    Examples:

        distillguard ledger verify-consistency old.txt new.txt --public-key jwks.json

        distillguard ledger verify-consistency old.txt new.txt --proof proof.json -k jwks.json
    """
    state = state_of(ctx)
    keys = _public_keys(state.settings(), public_key)
    cp_old = verify_checkpoint(_checkpoint_text(old), public_keys=keys)
    cp_new = verify_checkpoint(_checkpoint_text(new), public_keys=keys, origin=cp_old.origin)
    if proof_file is not None:
        proof = _proof_from_file(proof_file)
    elif cp_old.size in (0, cp_new.size):
        proof = []
    else:
        store, ledger = _open(state.settings(), store_url)
        with store:
            proof = ledger.consistency_proof(size1=cp_old.size, size2=cp_new.size)
    verify_consistency(
        size1=cp_old.size,
        size2=cp_new.size,
        proof=proof,
        root1=cp_old.root_hash,
        root2=cp_new.root_hash,
    )
    data = {
        "ok": True,
        "origin": cp_old.origin,
        "old_size": cp_old.size,
        "new_size": cp_new.size,
        "proof": [base64.b64encode(p).decode() for p in proof],
    }
    if state.json_output:
        emit_json(data)
        return
    console.print(
        f"[green]consistent[/]: the tree of {cp_new.size:,} leaves extends the tree of "
        f"{cp_old.size:,} leaves ({len(proof)} proof hashes)"
    )


@ledger_app.command("audit")
def audit(
    ctx: typer.Context,
    store_url: StoreOption = None,
    public_key: PublicKeyOption = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint kept outside the store (e.g. by a witness); repeatable. "
            "Detects a rollback of the whole store.",
        ),
    ] = None,
) -> None:
    """Recompute every leaf from the stored records and salts, rebuild the tree, check every
    signed checkpoint; name the first record or checkpoint that no longer matches.

    Erased records are reported as erased (when, why, by whom), not as tampering. Exits with 1
    when anything else is found.

    Example: `distillguard ledger audit --checkpoint witnessed.txt`
    """
    state = state_of(ctx)
    settings = state.settings()
    keys = _public_keys(settings, public_key, include_compromised=True)
    external = [(str(p), _checkpoint_text(p)) for p in checkpoints or []]
    store, ledger = _open(settings, store_url)
    with store:
        total = ledger.size
        with progress_bar(state, unit="leaves") as progress:
            task = progress.add_task("auditing", total=total)
            report = audit_ledger(
                ledger,
                public_keys=keys,
                external_checkpoints=external,
                progress=lambda n: progress.update(task, completed=n),
            )
    data = report.to_dict()
    if state.json_output:
        emit_json(data)
    else:
        console.print(
            f"audited {report.leaves_checked:,} of {report.tree_size:,} leaves and "
            f"{report.checkpoints_checked} checkpoint(s) of {report.origin}"
        )
        for erasure in report.erased:
            console.print(
                f"erased: leaf {erasure.leaf_index} ({erasure.exchange_id}) {erasure.scope} on "
                f"{format_ts(erasure.erased_at)} by {erasure.actor}: {erasure.reason}",
                markup=False,
            )
        for warning in report.warnings:
            console.print(f"[yellow]{warning.kind}[/] {warning.message}", markup=False)
        for finding in report.findings:
            console.print(f"[red]{finding.kind}[/] {finding.message}")
        if report.ok:
            console.print("[green]ok[/]: the records, the tree and every checkpoint agree")
        else:
            where = report.first_bad_index
            console.print(
                "[red]FAILED[/]: "
                + (f"first bad leaf index {where}" if where is not None else "")
                + (
                    f"{'; ' if where is not None else ''}first bad checkpoint "
                    f"{report.first_bad_checkpoint}"
                    if report.first_bad_checkpoint
                    else ""
                )
            )
    if not report.ok:
        raise typer.Exit(EXIT_FINDINGS)


@ledger_app.command("seal-erasures")
def seal_erasures(
    ctx: typer.Context,
    actor: Annotated[str, typer.Option("--actor", help="Who reviewed and seals the erasures.")],
    store_url: StoreOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Seal them (without it: only list them).")
    ] = False,
    resign: Annotated[
        str | None,
        typer.Option(
            "--resign",
            metavar="KID",
            help="Instead: re-sign with the current ledger key the tombstones signed by KID, a "
            "ledger key marked compromised (the key-compromise runbook).",
        ),
    ] = None,
) -> None:
    """Sign, with the keyring's ledger key, the erasures the audit does not accept yet, then
    sign a checkpoint: erasure rows with no tombstone leaf (stores upgraded from before
    tombstones; `erasure_unlogged`) get a signed tombstone, and tombstones made without a
    keyring (`tombstone_unsigned`) get their signature.

    Review them first: an erasure an insider forged to hide a deletion is sealed just the same.
    Without `--yes` they are only listed (no keyring needed).

    With `--resign KID` it lists (and with `--yes` re-signs with the current ledger key) the
    tombstones signed by KID, which must be marked compromised: review them first, the leaked
    key may have signed forged erasures. Only tombstones whose stored leaf still matches their
    erasure row are re-signed.

    Example: `distillguard ledger seal-erasures --actor dpo@example.com --yes`
    """
    state = state_of(ctx)
    settings = state.settings()
    if resign is not None:
        _resign(state, settings, store_url, resign, actor=actor, yes=yes)
        return
    key = open_keyring(settings).signing_key(KeyPurpose.LEDGER) if yes else None
    store, ledger = _open(settings, store_url)
    with store:
        pending = ledger.unsealed_erasures() + ledger.unsigned_erasures()
        sealed = ledger.seal_erasures(actor=actor, key=key) if key and pending else []
        cp = ledger.publish_checkpoint(key).to_dict() if key and sealed else None
    data = {
        "unsealed": [e.to_dict() for e in pending],
        "sealed": [e.to_dict() for e in sealed],
        "checkpoint": cp,
    }
    if state.json_output:
        emit_json(data)
        return
    done = {(e.leaf_index, e.scope) for e in sealed}
    for e in pending:
        what = "sealed" if (e.leaf_index, e.scope) in done else "unsealed"
        how = "no tombstone" if e.tombstone_index is None else "tombstone not signed"
        console.print(
            f"{what}: leaf {e.leaf_index} ({e.exchange_id}) {e.scope} on "
            f"{format_ts(e.erased_at)} by {e.actor}: {e.reason} [{how}]",
            markup=False,
        )
    if not pending:
        console.print("every erasure is in the log and signed")
    elif not yes:
        console.print("review these, then run again with --yes to seal them")


def _resign(
    state: AppState, settings: Settings, store_url: str | None, kid: str, *, actor: str, yes: bool
) -> None:
    """``seal-erasures --resign KID``: list, then re-sign, the tombstones of a compromised key."""
    key = None
    if yes:
        ring = open_keyring(settings)
        if not ring.verify_key(kid).compromised:
            raise InputError(
                f"key {kid} is not marked compromised",
                hint="`distillguard keys compromised KID --reason ...` first; tombstones signed "
                "by a retired key stay valid for what it signed before its retirement",
            )
        key = ring.signing_key(KeyPurpose.LEDGER)
    store, ledger = _open(settings, store_url)
    with store:
        pending = ledger.erasures_signed_by(kid)
        done = ledger.resign_erasures(kid, key=key, actor=actor) if key and pending else []
        cp = ledger.publish_checkpoint(key).to_dict() if key and done else None
    data = {
        "resign": kid,
        "signed_by_kid": [e.to_dict() for e in pending],
        "resigned": [e.to_dict() for e in done],
        "checkpoint": cp,
    }
    if state.json_output:
        emit_json(data)
        return
    again = {(e.leaf_index, e.scope) for e in done}
    for e in pending:
        what = "re-signed" if (e.leaf_index, e.scope) in again else "signed by " + kid
        console.print(
            f"{what}: leaf {e.leaf_index} ({e.exchange_id}) {e.scope} on "
            f"{format_ts(e.erased_at)} by {e.actor}: {e.reason}",
            markup=False,
        )
    if not pending:
        console.print(f"no tombstone is signed by key {kid}")
    elif not yes:
        console.print("review these, then run again with --yes to re-sign them")


def register(app: typer.Typer) -> None:
    """Add ``ledger`` to the main command."""
    app.add_typer(ledger_app, name="ledger")
