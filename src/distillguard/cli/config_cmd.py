"""``distillguard config``: show the effective configuration."""

from __future__ import annotations

import typer
from rich.syntax import Syntax

from distillguard.cli._common import console, emit_json, state_of

__all__ = ["register"]

config_app = typer.Typer(
    help="Inspect the configuration (distillguard.toml + DISTILLGUARD_* variables).",
    no_args_is_help=True,
)


@config_app.command("show")
def show(ctx: typer.Context) -> None:
    """Print the effective configuration with secrets masked.

    Example: `DISTILLGUARD_STORE__URL=postgresql://127.0.0.1/test distillguard config show`
    """
    import tomli_w

    state = state_of(ctx)
    settings = state.settings()
    data = settings.masked()
    if state.json_output:
        emit_json(data)
        return
    clean = _drop_none(data)
    console.print(Syntax(tomli_w.dumps(clean), "toml", background_color="default"))


def _drop_none(data: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = _drop_none(value)
        elif value is not None:
            out[key] = value
    return out


def register(app: typer.Typer) -> None:
    """Add ``config`` to the main command."""
    app.add_typer(config_app, name="config")
