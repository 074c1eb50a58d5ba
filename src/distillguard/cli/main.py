"""Entry point of the ``distillguard`` command.

Each subcommand lives in its own module of this package with a ``register(app)`` function; this
module lists them (:data:`COMMANDS`) and imports a module only when its command is used, so
``distillguard --help`` stays fast. It also handles the global options and turns errors into
messages and exit codes (see :mod:`distillguard.errors` for the codes).
"""

from __future__ import annotations

import importlib
import logging
import sys
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import typer.main
from typer import _click
from typer._click.shell_completion import CompletionItem
from typer.core import TyperCommand, TyperGroup, TyperOption

from distillguard.errors import EXIT_INTERNAL, DistillGuardError

if TYPE_CHECKING:  # imported when a command runs: the configuration models cost ~0.1 s
    from distillguard.cli._common import AppState

__all__ = ["COMMANDS", "LazyGroup", "app", "load_commands", "main"]

#: Every command of ``distillguard``: name -> (module of this package that registers it, the
#: one-line help ``distillguard --help`` lists). The module is imported only when its command
#: runs (or its own ``--help`` is asked for), so ``distillguard --help`` imports none of them;
#: tests/unit/cli/test_lazy_help.py checks that these lines match the commands' docstrings.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "demo",
        "Run DistillGuard end to end on embedded defaults and say where the results are.",
    ),
    "validate": ("validate", "Check every record of a log against format v1."),
    "ingest": (
        "ingest",
        "Validate a log and load it into the store; every stored exchange joins the ledger.",
    ),
    "export": ("export", "Export every stored account and exchange as a format v1 log folder."),
    "db": (
        "db",
        "The store's schema: its version, its migration history, and migrating it to this "
        "release. Processes refuse a store whose schema is older than theirs; a new store is "
        "created at the current version.",
    ),
    "simulate": (
        "simulate",
        "Simulate API traffic with distillation campaigns and write a format v1 log plus labels.",
    ),
    "zoo": (
        "zoo",
        "Generate the scenario zoo: evaluation traffic from many legitimate populations and "
        "campaign strategies, every behavioural parameter drawn from a range per seed.",
    ),
    "scan": (
        "scan",
        "Scan a log (or a store) for distillation campaigns; write account scores and campaigns.",
    ),
    "eval-scan": (
        "scan",
        "Evaluate scan results against labels, next to the PRADA and SEAT baselines.",
    ),
    "tune": (
        "scan",
        "Refit the scan's combiner on analyst verdicts (confirmed and dismissed accounts).",
    ),
    "report": (
        "report",
        "Write a self-contained HTML evidence report of a scan (and its PDF and bundle).",
    ),
    "bundle": (
        "report",
        "Write an evidence bundle: cited records, inclusion proofs, signed checkpoints, public "
        "keys, result files and a signed manifest; the cited records go on legal hold.",
    ),
    "verify-bundle": (
        "report",
        "Verify an evidence bundle offline: layout, hashes, manifest signature, every inclusion "
        "proof and checkpoint. Every altered part is named. Exit status 5 if anything fails.",
    ),
    "serve": ("serve", "Run the gateway in front of the configured upstream model."),
    "radioactivity": (
        "radioactivity",
        "Test a suspect for our watermark's radioactivity, with a control run.",
    ),
    "ledger": (
        "ledger",
        "The tamper-evident ledger: every stored exchange is a leaf of an RFC 9162 Merkle tree "
        "whose signed checkpoints anyone can verify.",
    ),
    "retention": (
        "retention",
        "Retention limits, legal holds and erasure requests. Erased records stay as leaves of "
        "the ledger, which records who erased what, when and why.",
    ),
    "config": (
        "config_cmd",
        "Inspect the configuration (distillguard.toml + DISTILLGUARD_* variables).",
    ),
    "keys": (
        "keys",
        "Manage the keyring: the watermark secret and the Ed25519 keys that sign the ledger and "
        "agent passports.",
    ),
    "passport": (
        "passport",
        "Agent passports: signed credentials binding an agent's Ed25519 key to an account.",
    ),
    "image": (
        "image",
        "Provenance of image outputs: an invisible keyed watermark carrying a payload (account "
        "or cluster id) and a signed C2PA manifest; detection of both in suspect images.",
    ),
    "video": (
        "video",
        "Provenance of video outputs: an invisible keyed watermark carrying a payload (account "
        "id) in every frame under a temporal code; one exact test pooled over all frames.",
    ),
    "provenance": (
        "provenance",
        "Which of our provenance signals a file carries (text, image, video, PDF, DOCX): watermark "
        "by scheme and key, C2PA manifest and trust, payload; p-values and a one-line verdict.",
    ),
    "watermark": (
        "watermark",
        "Detect DistillGuard's output watermark in texts or datasets; add the post-hoc one.",
    ),
    "fingerprint": (
        "fingerprint",
        "Behavioural fingerprints and lineage attribution (see docs/fingerprint.md).",
    ),
}

#: The options of ``distillguard`` itself, which go before the command.
GLOBAL_OPTIONS = frozenset({"--config", "-c", "--json", "--quiet", "-q", "--debug", "--version"})

#: Subcommand modules (each has a ``register(app)`` function).
SUBCOMMANDS: tuple[str, ...] = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def load_commands(module: str) -> dict[str, _click.Command]:
    """Import one subcommand module and return the commands it registers, by name."""
    sub = typer.Typer(rich_markup_mode="markdown", pretty_exceptions_enable=False)
    importlib.import_module(f"distillguard.cli.{module}").register(sub)
    group = typer.main.get_group(sub)
    return dict(group.commands)


class LazyGroup(TyperGroup):
    """The root command: lists every command from :data:`COMMANDS` and imports a command's
    module only when that command is resolved (run, or asked for its own ``--help``)."""

    _listing: bool = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        """Every command name, in the order of :data:`COMMANDS`."""
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        """The command ``cmd_name``; a placeholder carrying its one-line help while listing."""
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        module, short = COMMANDS[cmd_name]
        if self._listing:
            return TyperCommand(cmd_name, help=short)
        self.commands.update(load_commands(module))
        return self.commands.get(cmd_name)

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The root help, built from :data:`COMMANDS` without importing any command."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def shell_complete(self, ctx: _click.Context, incomplete: str) -> list[CompletionItem]:
        """Complete command names without importing the commands."""
        self._listing = True
        try:
            return super().shell_complete(ctx, incomplete)
        finally:
            self._listing = False

    def invoke(self, ctx: _click.Context) -> object:
        """Run the command; a global option given after the command (``distillguard simulate
        -q``) is refused with the place it goes (``distillguard -q simulate``)."""
        try:
            return super().invoke(ctx)
        except _click.exceptions.NoSuchOption as exc:
            name = exc.option_name.split("=", 1)[0]
            if name in GLOBAL_OPTIONS and "Global options" not in exc.message:
                path = (exc.ctx.command_path if exc.ctx else "distillguard").split()[1:]
                exc.message = (
                    f"{exc.message}. Global options come before the command: "
                    f"distillguard {' '.join([name, *path])} ..."
                )
                exc.possibilities = None  # the command's own close matches would mislead
            raise

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        """Resolve a command; on a typo, suggest the closest command names."""
        try:
            return super().resolve_command(ctx, args)
        except _click.exceptions.UsageError as exc:
            matches = get_close_matches(args[0], list(COMMANDS)) if args else []
            if matches and "Did you mean" not in exc.message:
                exc.message = (
                    f"{exc.message.rstrip('.')}. Did you mean "
                    + ", ".join(repr(m) for m in matches)
                    + "?"
                )
            raise


def _flag_display_type(self: TyperOption, ctx: _click.Context) -> str | None:
    """No ``<bool>`` type column for on/off flags (``--json``, ``--help``): they take no value."""
    if self.is_flag:
        return None
    return _TYPER_DISPLAY_TYPE(self, ctx)


_TYPER_DISPLAY_TYPE = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_display_type  # type: ignore[method-assign]

app = typer.Typer(
    name="distillguard",
    cls=LazyGroup,
    help=(
        "DistillGuard protects a model from illicit distillation.\n\n"
        "Start with `distillguard demo`, or validate and ingest your own exchange log:\n\n"
        "    distillguard validate ./log && distillguard ingest ./log\n\n"
        "Every command has examples in `distillguard COMMAND --help`."
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from distillguard import __version__

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
    from distillguard.cli._common import AppState

    ctx.obj = AppState(config_file=config, json_output=json_output, debug=debug, quiet=quiet)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _redact_logs(ctx.obj)
    if debug:
        logging.getLogger().setLevel(logging.DEBUG)
    else:
        _log_level(ctx.obj)


def _log_level(state: AppState) -> None:
    """Apply ``[logging] level`` (``--debug`` overrides it)."""
    try:
        level = state.settings().logging.level
    except DistillGuardError:  # the command itself reports configuration problems
        return
    logging.getLogger().setLevel(level)


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


def _report(exc: DistillGuardError, *, json_output: bool) -> None:
    from distillguard.cli._common import emit_json, err_console

    if json_output:
        emit_json({"ok": False, **exc.to_dict()})
        return
    from rich.markup import escape

    # escaped: a message or hint may hold brackets ("pip install 'distillguard[gateway]'")
    err_console.print(f"[bold red]error[/] [dim]{exc.code}[/] {escape(exc.message)}", markup=True)
    if exc.hint:
        err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", markup=True)


def _missing_extra(exc: ModuleNotFoundError, args: list[str]) -> DistillGuardError | None:
    """The error naming the extra whose module ``exc`` says is missing (a command's own lazy
    import of a third-party module: ``import uvicorn`` in ``serve``), or None."""
    from distillguard._internal.extras import missing_extra_error

    command = next((a for a in args if a in COMMANDS), None)
    feature = f"distillguard.cli.{COMMANDS[command][0]}" if command else "distillguard.cli"
    return missing_extra_error(exc, feature, shown=f"distillguard {command or ''}".strip())


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
        if isinstance(exc, ModuleNotFoundError):  # a missing extra: named for the command
            exc = _missing_extra(exc, args) or exc
        _report(exc, json_output=json_output)
        return exc.exit_code
    except KeyboardInterrupt:
        from distillguard.cli._common import err_console

        err_console.print("interrupted")
        return 130
    except ModuleNotFoundError as exc:
        missing = _missing_extra(exc, args)
        if missing is None:
            return _internal_error(debug)
        if debug:
            logging.getLogger("distillguard").exception("error")
        _report(missing, json_output=json_output)
        return missing.exit_code
    except Exception:
        return _internal_error(debug)
    return 0


def _internal_error(debug: bool) -> int:
    from distillguard.cli._common import err_console

    if debug:
        err_console.print_exception()
    else:
        err_console.print(
            "[bold red]internal error[/] (a bug: rerun with --debug and report the traceback)"
        )
    return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
