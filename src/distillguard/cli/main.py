"""Entry point of the ``distillguard`` command.

Each subcommand lives in its own module of this package with a ``register(app)`` function; this
module assembles them, handles the global options and turns errors into messages and exit codes
(see :mod:`distillguard.errors` for the codes).
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from distillguard import __version__
from distillguard.cli._common import AppState, emit_json, err_console
from distillguard.errors import EXIT_INTERNAL, DistillGuardError

__all__ = ["app", "main"]

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "demo",
    "validate",
    "ingest",
    "export",
    "ledger",
    "retention",
    "config_cmd",
    "keys",
    "passport",
    "simulate",
    "zoo",
    "image",
    "watermark",
    "scan",
    "report",
    "fingerprint",
    "serve",
    "radioactivity",
    "lab",
)

app = typer.Typer(
    name="distillguard",
    help=(
        "DistillGuard protects a model from illicit distillation.\n\n"
        "Start with `distillguard demo`, or validate and ingest your own exchange log:\n\n"
        "    distillguard validate ./log && distillguard ingest ./log"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"distillguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Configuration file (default ./distillguard.toml)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON on standard output.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Debug logging; tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = AppState(config_file=config, json_output=json_output, debug=debug, quiet=quiet)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _redact_logs(ctx.obj)


def _redact_logs(state: AppState) -> None:
    """Mask personal data and secrets in log records ([redaction] logs = true, the default)."""
    from distillguard.privacy import Redactor, install_log_redaction

    try:
        settings = state.settings().redaction
        redactor = Redactor.from_settings(settings) if settings.logs else None
    except DistillGuardError:  # the command itself reports configuration problems
        redactor = Redactor.default()
    if redactor is not None:
        install_log_redaction(redactor)


for _name in SUBCOMMANDS:
    importlib.import_module(f"distillguard.cli.{_name}").register(app)


def _report(exc: DistillGuardError, *, json_output: bool) -> None:
    if json_output:
        emit_json({"ok": False, **exc.to_dict()})
        return
    err_console.print(f"[bold red]error[/] [dim]{exc.code}[/] {exc.message}", markup=True)
    if exc.hint:
        err_console.print(f"[yellow]hint:[/] {exc.hint}", markup=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :mod:`distillguard.errors`)."""
    args = sys.argv[1:] if argv is None else argv
    json_output = "--json" in args
    debug = "--debug" in args
    try:
        # Standalone mode formats usage errors itself (exit 2) and always ends in SystemExit.
        app(args=args, prog_name="distillguard", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except DistillGuardError as exc:
        if debug:
            logging.getLogger("distillguard").exception("error")
        _report(exc, json_output=json_output)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception:
        if debug:
            err_console.print_exception()
        else:
            err_console.print(
                "[bold red]internal error[/] (a bug: rerun with --debug and report the traceback)"
            )
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
