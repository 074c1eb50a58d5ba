"""The command line as a newcomer meets it: fast ``--help``, readable help text, completion and
examples in ``COMMAND --help`` that parse against the real commands (issue 25)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from typer import _click
from typer.core import TyperGroup
from typer.testing import CliRunner

from distillguard.cli.main import COMMANDS, app, load_commands, main

runner = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def _all_commands() -> Iterator[tuple[list[str], _click.Command]]:
    """Every command and subcommand, with its path of names."""

    def walk(cmd: _click.Command, path: list[str]) -> Iterator[tuple[list[str], _click.Command]]:
        yield path, cmd
        if isinstance(cmd, TyperGroup):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])

    for name, (module, _) in COMMANDS.items():
        yield from walk(load_commands(module)[name], [name])


def _help(args: list[str]) -> str:
    result = runner.invoke(app, [*args, "--help"], env=ENV, prog_name="distillguard")
    assert result.exit_code == 0, result.output
    return result.output


def test_root_help_imports_no_command_module() -> None:
    code = (
        "import sys\n"
        "from distillguard.cli.main import main\n"
        "rc = main(['--help'])\n"
        "mods = sorted(m for m in sys.modules if m.startswith('distillguard.cli.'))\n"
        "heavy = [m for m in ('numpy', 'pyarrow', 'pydantic', 'scipy', 'importlib.metadata',\n"
        "         'importlib.abc') if m in sys.modules]\n"
        "print(rc, mods, heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **ENV},
    )
    assert proc.stderr.strip() == "0 ['distillguard.cli.main'] []"
    for name in COMMANDS:
        assert name in proc.stdout


def test_listed_help_matches_each_command_docstring() -> None:
    for name, (module, short) in COMMANDS.items():
        command = load_commands(module)[name]
        first = (command.short_help or command.help or "").split("\n\n")[0]
        assert " ".join(first.split()) == short, name


def test_every_module_command_is_listed() -> None:
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
        for name in load_commands(module):
            assert COMMANDS[name][0] == module


def test_flags_show_no_bool_type_and_valued_options_keep_theirs() -> None:
    root = _help([])
    assert "<bool>" not in root
    assert "<path>" in root  # --config still shows what it takes
    for path, _ in _all_commands():
        assert "<bool>" not in _help(path), path


def test_placeholders_survive_the_markdown_help() -> None:
    assert "HOME/quarantine/validate-<time>.jsonl" in _help(["validate"])
    assert "HOME/quarantine/<run>.jsonl" in _help(["ingest"])


def test_option_help_never_loses_angle_bracket_placeholders() -> None:
    """A ``<word>`` outside a code span is an HTML tag to the markdown renderer: it vanishes."""
    for path, command in _all_commands():
        for param in command.params:
            text = getattr(param, "help", None) or ""
            outside = re.sub(r"`[^`]*`", "", text)
            assert not re.search(r"<[a-z][\w-]*>", outside), (path, param.name, text)


def test_unknown_command_suggests_the_close_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watermrk"]) == 2
    assert "Did you mean 'watermark'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["simulate", "-q"], "distillguard -q simulate ..."),
        (["ledger", "head", "--json"], "distillguard --json ledger head ..."),
        (["keys", "list", "--config=x.toml"], "distillguard --config keys list ..."),
    ],
)
def test_a_global_option_after_the_command_says_where_it_goes(
    args: list[str], where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The newcomer's ``distillguard simulate -q``: exit 2 and the place of the option."""
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert "Global options come before the command" in err and where in err, err
    assert "Possible options" not in err
    assert main(["ledger", "head", "--jsn"]) == 2  # an ordinary typo: no such hint
    assert "Global options" not in capsys.readouterr().err


def test_completion_script_and_command_names() -> None:
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="distillguard")
    assert script.exit_code == 0
    assert "_DISTILLGUARD_COMPLETE=complete_bash" in script.output
    env = {
        **os.environ,
        "_DISTILLGUARD_COMPLETE": "complete_bash",
        "COMP_WORDS": "distillguard wat",
        "COMP_CWORD": "1",
    }
    code = "import sys; from distillguard.cli.main import main; sys.exit(main())"
    top = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert top.stdout.split() == ["watermark"]
    env["COMP_WORDS"], env["COMP_CWORD"] = "distillguard watermark scan", "2"
    sub = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert sub.stdout.split() == ["scan-dataset"]


_CODE_SPAN = re.compile(r"`([^`]*distillguard\s[^`]*)`|^\s*(distillguard\s.*)$", re.M)


def _examples(text: str) -> Iterator[list[str]]:
    """Each ``distillguard ...`` invocation of a help text, as argument lists (no program)."""
    for match in _CODE_SPAN.finditer(text):
        span = " ".join((match.group(1) or match.group(2)).split())
        lex = shlex.shlex(span, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        words: list[str] = []
        for token in [*lex, "&&"]:
            if token in ("&&", "||", "|", ";", ">", "<"):
                if words and words[0] == "distillguard":
                    yield words[1:]
                words = [] if token != ">" else ["(redirect)"]
            elif "=" in token and not words:
                continue  # VAR=value before the command
            else:
                words.append(token)


def _parse(args: list[str]) -> None:
    """Parse ``args`` down to the leaf command as the command line would, without running it."""
    cmd: _click.Command = typer.main.get_command(app)
    ctx = cmd.make_context("distillguard", list(args))
    rest = [*ctx._protected_args, *ctx.args]
    while isinstance(cmd, TyperGroup) and rest:
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert name is not None and sub is not None
        cmd = sub
        ctx = cmd.make_context(name, rest, parent=ctx)
        rest = [*ctx._protected_args, *ctx.args] if isinstance(cmd, TyperGroup) else []


def test_help_examples_parse_against_the_real_commands() -> None:
    with_examples: set[str] = set()
    for path, command in _all_commands():
        for args in _examples(command.help or ""):
            try:
                _parse(args)
            except _click.exceptions.ClickException as exc:
                pytest.fail(f"{' '.join(path)} --help example {args}: {exc.format_message()}")
            with_examples.add(path[0])
    assert with_examples == set(COMMANDS)  # every command shows how to use it


def test_logging_level_setting_is_applied(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """docs/configuration.md: ``[logging] level`` sets the command's log level (issue 25)."""
    import logging

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "dg"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv("DISTILLGUARD_LOGGING__LEVEL", "ERROR")
    assert main(["config", "show"]) == 0
    assert root.level == logging.ERROR
    monkeypatch.setenv("DISTILLGUARD_LOGGING__LEVEL", "INFO")
    assert main(["config", "show"]) == 0
    assert root.level == logging.INFO
    assert main(["--debug", "config", "show"]) == 0
    assert root.level == logging.DEBUG


def test_version_is_the_installed_one(capsys: pytest.CaptureFixture[str]) -> None:
    """``__version__`` is read lazily (not at import: it cost a third of the help's start-up)."""
    from importlib.metadata import version

    import distillguard

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"distillguard {version('distillguard')}"
    assert distillguard.__version__ == version("distillguard")
    with pytest.raises(AttributeError):
        _ = distillguard.no_such_name
