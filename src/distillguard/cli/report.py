"""``distillguard report`` and ``distillguard bundle``: the evidence report and bundle of a scan."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from distillguard._internal.files import open_private
from distillguard.cli._common import AppState, console, emit_json, progress_bar, state_of
from distillguard.config import Settings

__all__ = ["register"]

ScanOption = Annotated[
    Path, typer.Option("--scan", help="Output folder of `distillguard scan`.", show_default=False)
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (default from config: HOME/store.sqlite)."),
]
RadioactivityOption = Annotated[
    Path | None, typer.Option("--radioactivity", help="Radioactivity test result (JSON).")
]
FingerprintOption = Annotated[
    Path | None,
    typer.Option("--fingerprint", help="`distillguard fingerprint attribute --json` output."),
]
AccountsOption = Annotated[
    int, typer.Option("--accounts-shown", min=1, help="Accounts listed per campaign.")
]
ExchangesOption = Annotated[
    int,
    typer.Option(
        "--exchanges", min=0, help="Representative exchanges shown and cited per campaign."
    ),
]


def _make(
    state: AppState,
    settings: Settings,
    *,
    scan: Path,
    store_url: str | None,
    use_store: bool,
    radioactivity: Path | None,
    fingerprint: Path | None,
    accounts_shown: int,
    exchanges: int,
    render: bool,
) -> tuple[Any, str | None]:
    from distillguard.evidence import ReportOptions, build_report, render_html
    from distillguard.privacy import Redactor
    from distillguard.results import read_attribution, read_radioactivity, read_scan
    from distillguard.store import open_store

    results = read_scan(scan)
    radio = read_radioactivity(radioactivity) if radioactivity else None
    attribution = read_attribution(fingerprint) if fingerprint else None
    options = ReportOptions(accounts_shown=accounts_shown, exchanges_per_campaign=exchanges)
    redactor = Redactor.from_settings(settings.redaction)
    with progress_bar(state, unit="steps") as progress:
        task = progress.add_task("building the report", total=2 if render else 1)
        if use_store:
            with open_store(store_url or settings.store_url) as store:
                report = build_report(
                    scan=results,
                    store=store,
                    redactor=redactor,
                    radioactivity=radio,
                    attribution=attribution,
                    options=options,
                )
        else:
            report = build_report(
                scan=results,
                store=None,
                redactor=redactor,
                radioactivity=radio,
                attribution=attribution,
                options=options,
            )
        progress.advance(task)
        html = render_html(report) if render else None
        progress.advance(task)
    return report, html


def _bundle(
    settings: Settings,
    *,
    out: Path,
    store_url: str | None,
    report: Any,
    scan: Path,
    radioactivity: Path | None,
    fingerprint: Path | None,
    html: str | None,
    hold: bool = True,
) -> dict[str, Any]:
    from distillguard.evidence import build_bundle
    from distillguard.keyring import open_keyring
    from distillguard.store import open_store

    keyring = open_keyring(settings)
    results = {
        name: path
        for name, path in (("radioactivity", radioactivity), ("fingerprint", fingerprint))
        if path is not None
    }
    cited = report.cited
    ids = [e for c in cited.values() for e in c]
    with open_store(store_url or settings.store_url) as store:
        summary = build_bundle(
            out=out,
            store=store,
            keyring=keyring,
            exchange_ids=ids,
            citations=cited,
            scan_dir=scan,
            results=results,
            report_html=html.encode() if html is not None else None,
            origin=settings.ledger.origin,
            hold=hold,
        )
    return {**summary.to_dict(), "hold": hold}


HoldOption = Annotated[
    bool,
    typer.Option(
        "--hold/--no-hold",
        help="Put the cited exchanges on legal hold (default), or leave their retention as is.",
    ),
]


def _hold_text(summary: dict[str, Any]) -> str:
    if not summary["hold"]:
        return "no legal hold placed (--no-hold)"
    return f"{summary['holds']} put on legal hold (release: distillguard retention hold release)"


def report_cmd(
    ctx: typer.Context,
    scan: ScanOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    store: StoreOption = None,
    no_store: Annotated[
        bool,
        typer.Option("--no-store", help="Only the scan's results: no timeline, graph, exchanges."),
    ] = False,
    radioactivity: RadioactivityOption = None,
    fingerprint: FingerprintOption = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also write a PDF (WeasyPrint).")] = False,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Also write the evidence bundle (zip); its cited records go on legal hold "
            "(unless --no-hold).",
        ),
    ] = None,
    hold: HoldOption = True,
    accounts_shown: AccountsOption = 200,
    exchanges: ExchangesOption = 5,
) -> None:
    """Write a self-contained HTML evidence report of a scan (and its PDF and bundle).

    With `--bundle`, every exchange the bundle cites is put on legal hold (retention and
    erasure leave it alone until `distillguard retention hold release HOLD_ID --actor ME`);
    `--no-hold` writes the bundle without placing holds. The output says how many records went
    on hold.

    Example: `distillguard report --scan ./scan-out --out report.html --pdf --bundle evidence.zip`
    """
    from distillguard.errors import InputError
    from distillguard.evidence import write_pdf

    state = state_of(ctx)
    settings = state.settings()
    if no_store and bundle is not None:
        raise InputError("--bundle needs the store (its records and ledger): drop --no-store")
    report, html = _make(
        state, settings, scan=scan, store_url=store, use_store=not no_store,
        radioactivity=radioactivity, fingerprint=fingerprint, accounts_shown=accounts_shown,
        exchanges=exchanges, render=True,
    )  # fmt: skip
    assert html is not None
    with open_private(out) as fh:  # exchange content: owner-only (0600)
        fh.write(html.encode("utf-8"))
    payload: dict[str, Any] = {
        "ok": True,
        "out": str(out),
        "size_bytes": out.stat().st_size,
        "campaigns": len(report.campaigns),
        "cited_exchanges": sum(len(c) for c in report.cited.values()),
    }
    if pdf:
        pdf_path = out.with_suffix(".pdf")
        if not state.debug:  # WeasyPrint's notes on this machine's fonts are not the user's
            logging.getLogger("weasyprint").setLevel(logging.ERROR)
            logging.getLogger("fontTools").setLevel(logging.ERROR)
        write_pdf(html, pdf_path)
        payload["pdf"] = str(pdf_path)
    if bundle is not None:
        payload["bundle"] = _bundle(
            settings, out=bundle, store_url=store, report=report, scan=scan,
            radioactivity=radioactivity, fingerprint=fingerprint, html=html, hold=hold,
        )  # fmt: skip
    if state.json_output:
        emit_json(payload)
        return
    console.print(
        f"report of {payload['campaigns']} campaign(s) written to {out} "
        f"({payload['size_bytes'] / 1e6:.1f} MB)"
    )
    if pdf:
        console.print(f"PDF written to {payload['pdf']}")
    if bundle is not None:
        b = payload["bundle"]
        console.print(
            f"evidence bundle {b['bundle_id']} written to {bundle}: {b['exchanges']} cited "
            f"exchanges with inclusion proofs, {_hold_text(b)}"
        )
    console.print(f"open it: file://{out.resolve()}")


def bundle_cmd(
    ctx: typer.Context,
    scan: ScanOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Zip file to write.")] = Path(
        "evidence.zip"
    ),
    store: StoreOption = None,
    radioactivity: RadioactivityOption = None,
    fingerprint: FingerprintOption = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Include the HTML report.")
    ] = True,
    hold: HoldOption = True,
    exchanges: ExchangesOption = 5,
) -> None:
    """Write an evidence bundle: cited records, inclusion proofs, signed checkpoints, public
    keys, result files and a signed manifest; the cited records go on legal hold.

    `--no-hold` writes the bundle without placing legal holds.

    Example: `distillguard bundle --scan ./scan-out --out evidence.zip`
    """
    state = state_of(ctx)
    settings = state.settings()
    made, html = _make(
        state, settings, scan=scan, store_url=store, use_store=True,
        radioactivity=radioactivity, fingerprint=fingerprint, accounts_shown=200,
        exchanges=exchanges, render=report,
    )  # fmt: skip
    summary = _bundle(
        settings, out=out, store_url=store, report=made, scan=scan,
        radioactivity=radioactivity, fingerprint=fingerprint, html=html, hold=hold,
    )  # fmt: skip
    if state.json_output:
        emit_json({"ok": True, **summary})
        return
    console.print(
        f"evidence bundle {summary['bundle_id']} written to {out} "
        f"({summary['size_bytes'] / 1e6:.1f} MB): {summary['exchanges']} cited exchanges with "
        f"inclusion proofs, {summary['checkpoints']} checkpoint(s), {_hold_text(summary)}"
    )
    console.print(f"verify it: distillguard verify-bundle {out} --public-key PROVIDER-KEYS.json")


def verify_bundle_cmd(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="The evidence bundle (zip).")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            "-k",
            help="Trusted ledger public keys (JWK Set of `keys export-public`, or C2SP verifier "
            "keys); default: the keys inside the bundle (consistency only).",
        ),
    ] = None,
) -> None:
    """Verify an evidence bundle offline: layout, hashes, manifest signature, every inclusion
    proof and checkpoint. Every altered part is named. Exit status 5 if anything fails.

    Example: `distillguard verify-bundle evidence.zip --public-key provider-keys.json`
    """
    from distillguard.errors import BundleError
    from distillguard.evidence import verify_evidence_bundle
    from distillguard.ledger import load_public_keys

    state = state_of(ctx)
    keys = load_public_keys(public_key) if public_key is not None else None
    check = verify_evidence_bundle(bundle, public_keys=keys)
    if state.json_output:
        emit_json(check.to_dict())
        if not check.ok:
            raise typer.Exit(BundleError.exit_code)
        return
    if not check.ok:
        for p in check.problems:
            console.print(f"[red]FAIL[/] {p.message}")
        first = check.problems[0]
        raise BundleError(
            f"{bundle}: {len(check.problems)} problem(s); first: {first.message}",
            details={"problems": [p.to_dict() for p in check.problems]},
        )
    console.print(
        f"[green]OK[/] {bundle}: bundle {check.bundle_id} of {check.origin}, signed by {check.kid}"
    )
    console.print(
        f"  {check.files_verified} files match the signed manifest; "
        f"{check.exchanges_verified} records proved included under "
        f"{check.checkpoints_verified} signed checkpoint(s)"
    )
    if check.trust == "keys in the bundle":
        console.print(
            "  [yellow]trust:[/] checked with the keys inside the bundle; pass --public-key with "
            "the provider's published keys to check who signed it"
        )


def register(app: typer.Typer) -> None:
    """Add ``report``, ``bundle`` and ``verify-bundle`` to the main command."""
    app.command("report")(report_cmd)
    app.command("bundle")(bundle_cmd)
    app.command("verify-bundle")(verify_bundle_cmd)
