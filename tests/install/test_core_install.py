"""The core alone, installed into a fresh virtual environment on each Python (issue 25).

For every interpreter found among Python 3.11, 3.12 and 3.13: build DistillGuard's wheel once,
install it with no extra (versions held to requirements.lock) into a new venv, check that no
extra's package came with it, run the core's commands as the README shows them (keys, simulate,
validate, ingest, ledger, export, watermark, passport), check that a command of an extra fails
with exit 3 naming the extra, and run a smoke subset of the unit tests with that interpreter.

Minutes per interpreter (downloads on a cold pip cache), so it runs only with DG_INSTALL=1
(``make test-install``; .ci/run runs it); the time of each step is printed (``-s``) and written
to ``$DG_INSTALL_TIMES`` when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard._internal.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
VERSIONS = ("3.11", "3.12", "3.13")
#: Unit tests that need the core only (and pytest, hypothesis): the smoke subset.
SMOKE_TESTS = (
    "tests/unit/keyring",
    "tests/unit/records",
    "tests/unit/ledger",
    "tests/unit/test_config.py",
    "tests/unit/test_errors.py",
)

pytestmark = [
    pytest.mark.install,
    pytest.mark.skipif(
        os.environ.get("DG_INSTALL") != "1",
        reason="installs into fresh venvs (minutes): run with DG_INSTALL=1 (make test-install)",
    ),
]

TIMES: dict[str, dict[str, float]] = {}

#: An answer with 32 words the post-hoc scheme can change, in distinct contexts: once marked, its
#: p-value is 7e-11 whatever the key (every eligible word takes the key's choice; the same for
#: 40 fresh keys, measured), far below detect's alpha 1e-3 after Holm over two schemes. A text
#: repeated several times has few distinct contexts and is not detected (p 0.05, measured).
ANSWER = (
    "However, this method often helps people. We typically use a simple approach, "
    "and the main benefits are obvious. Additionally, it is important to begin early. "
    "The committee reviewed the proposal carefully and found that the budget was reasonable. "
    "Several members asked for more detail on how the project would measure its results. "
    "It is also important to choose a big goal, because a large target often helps a team. "
    "Moreover, the new plan is quick to start and easy to explain to a small group of users. "
    "Typically, people begin with a simple test and then build a larger system over time. "
    "In addition, the main problem is that many answers are hard to check without help. "
    "Finally, we often see that a clear answer is better than a long one, so keep it short. "
)


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` (``3.12``): on PATH, else under pyenv's versions."""
    candidates = [shutil.which(f"python{version}") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in pyenv.glob(f"versions/{version}.*/bin/python3"))
    for exe in candidates:
        if not exe:
            continue
        done = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip() == version:
            return exe
    return None


def wanted_versions() -> list[str]:
    chosen = os.environ.get("DG_INSTALL_PYTHONS")
    return chosen.split(",") if chosen else list(VERSIONS)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    python = find_python("3.11") or shutil.which("python3") or "python3"
    subprocess.run(
        [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (found,) = out.glob("distillguard-*.whl")
    return found


class Steps:
    """Runs commands in one venv and records how long each took."""

    def __init__(self, version: str, venv: Path, work: Path) -> None:
        self.version, self.venv, self.work = version, venv, work
        self.times = TIMES.setdefault(version, {})
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
        self.env.pop("VIRTUAL_ENV", None)
        self.env.update(
            DISTILLGUARD_HOME=str(work / "home"),
            XDG_DATA_HOME=str(work / "data"),
            XDG_CONFIG_HOME=str(work / "config"),
            PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        )

    def run(
        self, label: str, *args: str, expect: int = 0, timeout: int = 900
    ) -> subprocess.CompletedProcess[str]:
        start = time.perf_counter()
        done = subprocess.run(
            list(args),
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.times[label] = round(time.perf_counter() - start, 2)
        assert done.returncode == expect, (
            f"{label}: exit {done.returncode} (expected {expect})\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
        return done

    def dg(self, label: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        return self.run(label, str(self.venv / "bin" / "distillguard"), *args, expect=expect)


@pytest.fixture(scope="module", params=wanted_versions())
def core_venv(
    request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Steps, Path]]:
    """One fresh venv per Python with the core alone, shared by the tests of that Python."""
    version: str = request.param
    python = find_python(version)
    if python is None:
        if os.environ.get("DG_INSTALL_PYTHONS"):  # asked for by name (CI): missing is a failure
            pytest.fail(f"no Python {version} on this machine (DG_INSTALL_PYTHONS)")
        pytest.skip(f"no Python {version} on this machine")
    base = tmp_path_factory.mktemp(f"core-{version}")
    venv = base / "venv"
    work = base / "work"
    work.mkdir()
    steps = Steps(version, venv, work)
    steps.run("venv", python, "-m", "venv", str(venv))
    pip = str(venv / "bin" / "pip")
    # --no-compile: pip's byte-compiling of every installed module was half the install time
    # (87 s without, 162-173 s with, measured at load 16-19); what runs is compiled as it loads
    steps.run("install core", pip, "install", "-q", "--no-compile", "-c", str(LOCK), str(wheel))
    yield steps, venv
    print(f"\nPython {version}: seconds per step: {json.dumps(TIMES[version])}")
    if os.environ.get("DG_INSTALL_TIMES"):
        Path(os.environ["DG_INSTALL_TIMES"]).write_text(json.dumps(TIMES, indent=1))


def test_core_install_runs_the_core(core_venv: tuple[Steps, Path]) -> None:
    steps, venv = core_venv
    python = str(venv / "bin" / "python")
    # nothing of any extra came with the core
    every = sorted({m for modules in EXTRAS.values() for m in modules})
    probe = "import importlib.util, json, sys; print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))"  # noqa: E501
    found = json.loads(steps.run("no extras", python, "-c", probe, *every).stdout)
    assert found == [], f"the core install brought modules of extras: {found}"

    version = steps.dg("--version", "--version").stdout
    assert version.startswith("distillguard ")
    assert "Usage" in steps.dg("--help", "--help").stdout
    steps.dg("keys init", "keys", "init")
    assert (steps.work / "home" / "keyring.json").is_file()
    steps.dg("keys list", "--json", "keys", "list")
    steps.dg("simulate", "simulate", "--scenario", "tiny", "--out", "sim")
    steps.dg("validate", "validate", "sim")
    steps.dg("ingest", "ingest", "sim")
    head = json.loads(steps.dg("ledger head", "--json", "ledger", "head").stdout)
    assert head["size"] > 0
    steps.dg("ledger audit", "ledger", "audit")
    steps.dg("export", "export", "--out", "exported")
    assert (steps.work / "exported").is_dir()
    # the post-hoc watermark, then its detection (exit 1: the watermark is found)
    answers = steps.work / "answers.jsonl"
    answers.write_text(json.dumps({"output": ANSWER}) + "\n")
    steps.dg("watermark embed", "watermark", "embed", "answers.jsonl", "-o", "marked.jsonl")
    steps.dg("watermark detect", "watermark", "detect", "marked.jsonl", expect=1)
    steps.dg("watermark detect (unmarked)", "watermark", "detect", "answers.jsonl", expect=0)
    steps.dg(
        "passport issue",
        "passport", "issue", "--account", "acct_1", "--org", "org_1", "--new-agent-key",
        "agent.pem", "--out", "agent.passport",
    )  # fmt: skip
    steps.dg("passport inspect", "passport", "inspect", "agent.passport")
    # a command of an extra says which extra to install
    for command, extra in ((["serve", "--port", "0"], "gateway"), (["scan", "sim"], "scan")):
        done = steps.dg(f"{command[0]} without [{extra}]", *command, expect=3)
        assert f"pip install 'distillguard[{extra}]'" in done.stderr, done.stderr


def test_core_install_passes_the_smoke_tests(core_venv: tuple[Steps, Path]) -> None:
    """The smoke subset of the unit tests on the other Pythons (the whole suite runs on this
    one, with every extra)."""
    steps, venv = core_venv
    if steps.version == f"{sys.version_info.major}.{sys.version_info.minor}":
        pytest.skip(f"the whole suite runs on Python {steps.version}")
    pip = str(venv / "bin" / "pip")
    steps.run(
        "install test tools", pip, "install", "-q", "--no-compile", "-c", str(LOCK), "pytest",
        "hypothesis",
        "packaging",
    )  # fmt: skip
    steps.run(
        "smoke tests",
        str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-m", "not postgres and not redis and not slow", "--rootdir", str(ROOT),
        "-c", str(ROOT / "pyproject.toml"), *(str(ROOT / t) for t in SMOKE_TESTS),
        timeout=1200,
    )  # fmt: skip
