"""The README and docs/ run as written (issue 25): their examples are executed.

A fenced block of ``sh``/``bash``, ``console``, ``python`` or ``toml`` preceded (on the nearest
non-blank line) by an HTML comment ``<!-- doc-test: ... -->`` is handled as the comment says:

* ``run``: executed (``make test``); ``run slow``: executed only with DG_SLOW=1 (minutes);
* ``file NAME``: the block is written to NAME in the working folder (a ``distillguard.toml``,
  an input file) for the blocks after it;
* ``skip REASON``: not executed, for the reason given (a server, a suspect model, a placeholder).

The blocks of one page run in order in one fresh working folder that is also ``HOME`` (so the
default home is ``~/.local/share/distillguard`` there, as the pages say, and no
``DISTILLGUARD_*`` or ``XDG_*`` variable is set), with ``distillguard`` from this environment
first on ``PATH``, so a later block sees what an earlier one made (a keyring, a simulated log).
``sh``/``bash`` blocks run with ``bash -e -o pipefail``. In ``console`` blocks each ``$ `` line
(with ``\\`` continuations) is a command and what follows it its output: a command must exit 0,
or, where the output shown starts with ``error DGnnn``, fail with that code on standard error,
or exit with N where the command ends in a comment saying ``exit N``. ``python`` blocks run
with this environment's interpreter.

:data:`UNMARKED` lists the pages whose blocks are not all marked yet; it can only shrink: every
runnable-looking block of every other page must carry a marker (see
``test_every_example_is_run_or_skipped_with_a_reason``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LANGS = {"sh", "bash", "console", "python", "toml"}
RUNNABLE = {"sh", "bash", "console", "python"}

#: Pages not yet marked block by block (their examples are not run yet): shrink it.
UNMARKED: set[str] = set()

_MARKER = re.compile(r"<!--\s*doc-test:\s*(?P<what>[^>]*?)\s*-->")
_FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
_EXIT = re.compile(r"#.*\bexit (\d+)\b")
_ERROR = re.compile(r"^error (DG\d{3})\b")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # the doc-test comment's content, or None

    @property
    def action(self) -> str:
        return (self.marker or "").split(maxsplit=1)[0] if self.marker else ""

    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of a markdown page, each with the doc-test marker before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(root))
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        marker = None
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and (mm := _MARKER.search(lines[j])):
            marker = mm.group("what")
        out.append(Block(page, start + 1, m.group("lang"), "\n".join(body) + "\n", marker))
    return out


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(command, output lines shown after it)`` of each ``$ `` command of a console block."""
    found: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command + "\n" + lines[i]  # bash reads the backslash-newline as one line
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        found.append((command, output))
    return found


class Session:
    """One page's working folder, home and environment."""

    def __init__(self, work: Path) -> None:
        self.work = work
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DISTILLGUARD_", "XDG_")) and k != "VIRTUAL_ENV"
        }
        # a new user: an empty HOME, so that ~/.local/share/distillguard (the default home)
        # and ~/.config/distillguard are what the pages say, and this machine's are untouched
        env.update(
            HOME=str(work),
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            COLUMNS="120",
        )
        self.env = env

    def run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def run_block(session: Session, block: Block, timeout: float) -> None:
    def fail(what: str, done: subprocess.CompletedProcess[str]) -> None:
        pytest.fail(
            f"{block.where()}: {what}\n--- stdout\n{done.stdout[-2500:]}\n"
            f"--- stderr\n{done.stderr[-2500:]}",
            pytrace=False,
        )

    if block.lang == "python":
        script = session.work / f"block_{block.line}.py"
        script.write_text(block.text)
        done = session.run([sys.executable, str(script)], timeout)
        if done.returncode != 0:
            fail(f"the python block exited {done.returncode}", done)
    elif block.lang in ("sh", "bash"):
        done = session.run(["bash", "-e", "-o", "pipefail", "-c", block.text], timeout)
        if done.returncode != 0:
            fail(f"the shell block exited {done.returncode}", done)
    elif block.lang == "console":
        for command, output in console_commands(block.text):
            done = session.run(["bash", "-o", "pipefail", "-c", command], timeout)
            shown_error = next((m for line in output[:1] if (m := _ERROR.match(line))), None)
            said_exit = _EXIT.search(command.splitlines()[-1])
            if shown_error is not None:
                if done.returncode == 0 or shown_error.group(1) not in done.stderr:
                    fail(f"`{command}` should fail with {shown_error.group(1)}", done)
            elif said_exit is not None:
                if done.returncode != int(said_exit.group(1)):
                    fail(f"`{command}` exited {done.returncode}, the page says so", done)
            elif done.returncode != 0:
                fail(f"`{command}` exited {done.returncode}", done)
    else:
        pytest.fail(f"{block.where()}: cannot run a {block.lang!r} block", pytrace=False)


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _runs(path: Path) -> bool:
    return any(b.action in ("run", "file") for b in blocks_of(path))


@pytest.mark.parametrize("page", [p for p in PAGES if _runs(p)], ids=_page_id)
def test_page_examples_run_as_written(page: Path, tmp_path: Path) -> None:
    session = Session(tmp_path)
    slow = os.environ.get("DG_SLOW") == "1"
    ran = 0
    for block in blocks_of(page):
        words = (block.marker or "").split()
        if not words or words[0] == "skip":
            continue
        if words[0] == "file":
            (tmp_path / words[1]).write_text(block.text)
            continue
        if words[0] != "run":
            pytest.fail(f"{block.where()}: unknown doc-test marker {block.marker!r}")
        if "slow" in words[1:] and not slow:
            continue
        run_block(session, block, timeout=900 if "slow" in words[1:] else 180)
        ran += 1
    if ran == 0 and not slow:
        pytest.skip("every example of this page is slow: run with DG_SLOW=1")


def test_every_example_is_run_or_skipped_with_a_reason() -> None:
    problems = []
    for page in PAGES:
        pid = _page_id(page)
        if pid in UNMARKED:
            continue
        for block in blocks_of(page):
            if block.lang not in RUNNABLE:
                continue
            if block.marker is None:
                problems.append(f"{block.where()}: a {block.lang} block without a doc-test marker")
            elif block.action == "skip" and len(block.marker.split()) < 2:
                problems.append(f"{block.where()}: skipped without a reason")
            elif block.action not in ("run", "skip", "file"):
                problems.append(f"{block.where()}: unknown marker {block.marker!r}")
    assert not problems, "\n".join(problems)


def test_unmarked_pages_exist_and_are_not_marked_yet() -> None:
    """UNMARKED only shrinks: a page that no longer exists or has been marked leaves it."""
    for pid in sorted(UNMARKED):
        page = ROOT / pid
        assert page.is_file(), f"{pid} is gone: drop it from UNMARKED"
        runnable = [b for b in blocks_of(page) if b.lang in RUNNABLE]
        assert any(b.marker is None for b in runnable), f"{pid} is marked: drop it from UNMARKED"


def test_the_parser_reads_markers_commands_and_expectations(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- doc-test: run -->\n\n```console\n$ echo a \\\n  b   # exit 0\na b\n"
        "$ false\nerror DG123 nope\n```\n\n```sh\nls\n```\n"
        "<!-- doc-test: skip needs a server -->\n```python\nprint(1)\n```\n"
    )
    found = blocks_of(page, root=tmp_path)
    assert [(b.lang, b.marker, b.line) for b in found] == [
        ("console", "run", 5),
        ("sh", None, 13),
        ("python", "skip needs a server", 17),
    ]
    assert console_commands(found[0].text) == [
        ("echo a \\\n  b   # exit 0", ["a b"]),
        ("false", ["error DG123 nope"]),
    ]
    # a continued command runs as one command (the words after the backslash are its arguments)
    joined = console_commands(found[0].text)[0][0]
    done = subprocess.run(["bash", "-c", joined], capture_output=True, text=True, check=True)
    assert done.stdout == "a b\n"
