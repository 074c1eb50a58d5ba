"""Shared plumbing of the subcommands: state, settings, output and progress bars."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from distillguard.config import Settings, load_settings

__all__ = [
    "AppState",
    "console",
    "emit_json",
    "err_console",
    "progress_bar",
    "settings_of",
    "state_of",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@dataclass
class AppState:
    """Options common to every subcommand (given before the subcommand's name)."""

    config_file: Path | None = None
    json_output: bool = False
    debug: bool = False
    quiet: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """The effective settings, loaded once."""
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings


def state_of(ctx: typer.Context) -> AppState:
    """The :class:`AppState` of the running command (a default one if called standalone)."""
    obj = ctx.find_root().obj
    if isinstance(obj, AppState):
        return obj
    state = AppState()
    ctx.find_root().obj = state
    return state


def settings_of(ctx: typer.Context) -> Settings:
    """The effective settings of the running command."""
    return state_of(ctx).settings()


def emit_json(data: Any) -> None:
    """Write one JSON document to standard output (for ``--json``)."""
    sys.stdout.write(
        orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"
    )
    sys.stdout.flush()


class _RateColumn(ProgressColumn):
    """Records per second, as an integer with thousands separators."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"-- {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} {self.unit}/s", style="progress.data.speed")


@contextmanager
def progress_bar(state: AppState, *, unit: str = "records") -> Iterator[Progress]:
    """A progress bar with a records/s column on standard error, disabled for --json/--quiet."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        console=err_console,
        disable=state.json_output or state.quiet or not err_console.is_terminal,
        transient=False,
    )
    with progress:
        yield progress
