"""Optional features without their extra raise one error naming the extra (issue 25).

Each case runs in a fresh interpreter in which the extra's modules cannot be imported (a
finder first on ``sys.meta_path`` answers ``ModuleNotFoundError`` for them, as a missing
package does), imports or uses the feature, and checks the error: a
:class:`~distillguard._internal.extras.MissingExtraError` (also an ``ImportError``) whose
message and hint name the extra; through the command line, exit status 3 and the same hint.
tests/install/ does the same on a real core-only install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from distillguard._internal.extras import (
    EXTRAS,
    FEATURE_EXTRAS,
    MissingExtraError,
    extra_of_module,
    missing_extra_error,
    require_extra,
)
from distillguard.errors import DependencyMissingError

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
"""

IMPORT_CASE = """
import json
from distillguard.errors import DistillGuardError
try:
    {code}
except (ImportError, DistillGuardError) as exc:
    print(json.dumps({{"type": type(exc).__name__, "message": str(exc),
                      "extra": getattr(exc, "extra", None)}}))
else:
    print(json.dumps({{"type": None}}))
"""

#: extra -> code that uses a feature of that extra (import time or call time).
USES: dict[str, str] = {
    "gateway": "import distillguard.gateway",
    "report": "import distillguard.evidence",
    "scan": "import distillguard.monitor",
    "image": "import distillguard.image",
    "video": "import distillguard.video",
    "hf": "import distillguard.watermark.hf",
    "spark": "from distillguard.monitor.spark import spark_session; spark_session()",
}


#: extra -> a command that needs it (arguments of ``distillguard``).
COMMANDS: dict[str, list[str]] = {
    "gateway": ["serve", "--port", "0"],
    "report": ["report", "--scan", "nowhere", "--out", "r.html"],
    "scan": ["scan", "nowhere", "--out", "scan-out"],
    "image": ["image", "detect", "nowhere"],
    "video": ["video", "embed", "nowhere", "marked.mp4", "--payload", "1"],
    "postgres": ["ledger", "head", "--store", "postgresql://nobody@127.0.0.1:1/none"],
}


def run_python(code: str, blocked: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env["DISTILLGUARD_HOME"] = str(cwd / "home")
    return subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=sorted(blocked)) + code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("extra", sorted(USES))
def test_using_a_feature_without_its_extra_names_the_extra(extra: str, tmp_path: Path) -> None:
    code = IMPORT_CASE.format(code=USES[extra])
    done = run_python(code, EXTRAS[extra], tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["type"] is not None, f"{USES[extra]} worked without the {extra} extra"
    assert f"distillguard[{extra}]" in seen["message"], seen
    # MissingExtraError, or the feature's own DependencyMissingError/ConfigurationError
    assert seen["type"] in ("MissingExtraError", "DependencyMissingError", "ConfigurationError")


@pytest.mark.parametrize("extra", sorted(COMMANDS))
def test_a_command_without_its_extra_exits_3_naming_the_extra(extra: str, tmp_path: Path) -> None:
    args = COMMANDS[extra]
    keys = run_python(
        "from distillguard.cli.main import main; main(['keys', 'init'])", (), tmp_path
    )
    assert keys.returncode == 0, keys.stderr  # commands that open the keyring first find one
    code = f"from distillguard.cli.main import main; sys.exit(main({args!r}))"
    done = run_python(code, EXTRAS[extra], tmp_path)
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    assert f"pip install 'distillguard[{extra}]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # the JSON form carries the extra for machines
    done = run_python(
        f"from distillguard.cli.main import main; sys.exit(main(['--json', *{args!r}]))",
        EXTRAS[extra],
        tmp_path,
    )
    payload = json.loads(done.stdout)
    assert payload["code"] == "DG120" and payload["details"]["extra"] == extra


def test_the_core_imports_with_no_extra_at_all(tmp_path: Path) -> None:
    every = tuple(sorted({m for mods in EXTRAS.values() for m in mods}))
    code = (
        "import distillguard.records, distillguard.ledger, distillguard.store, "
        "distillguard.keyring, distillguard.watermark, distillguard.passport, "
        "distillguard.cli.main; print('ok')"
    )
    done = run_python(code, every, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_extras_table_matches_pyproject() -> None:
    """Every module of EXTRAS[x] is provided by a distribution declared in extra x (or in an
    extra x names), and every extra of pyproject.toml but the aggregates is in EXTRAS."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]

    def dists(extra: str) -> set[str]:
        out: set[str] = set()
        for text in extras[extra]:
            req = Requirement(text)
            if req.name == "distillguard":
                for inner in req.extras:
                    out |= dists(inner)
            else:
                out.add(canonicalize_name(req.name))
        return out

    assert set(EXTRAS) == set(extras) - {"all", "dev", "ml"}
    provides = packages_distributions()
    for extra, modules in EXTRAS.items():
        for module in modules:
            by = {canonicalize_name(d) for d in provides.get(module, [])}
            assert by, f"{module} is not installed in the dev environment"
            assert by & dists(extra), f"{module} ({by}) is not declared in extra {extra}"
    assert set(FEATURE_EXTRAS.values()) <= set(EXTRAS)


def test_the_error_is_an_import_error_and_a_configuration_error() -> None:
    err = MissingExtraError("gateway", "fastapi", "distillguard.gateway")
    assert isinstance(err, ModuleNotFoundError) and isinstance(err, DependencyMissingError)
    assert err.exit_code == 3 and err.code == "DG120" and err.name == "fastapi"
    assert err.hint == "pip install 'distillguard[gateway]'"
    assert "'gateway' extra" in err.message and "fastapi" in err.message


def test_the_extra_of_the_feature_wins_where_several_provide_a_module() -> None:
    assert extra_of_module("jinja2", "distillguard.console._app") == "gateway"
    assert extra_of_module("jinja2", "distillguard.evidence._report") == "report"
    assert extra_of_module("igraph", "distillguard.monitor.graph") == "scan"
    assert extra_of_module("PIL", "distillguard.video.frames") == "video"
    assert extra_of_module("pyspark.sql", "distillguard.monitor.spark") == "spark"
    assert extra_of_module("numpy", "distillguard.monitor") is None  # core: not an extra's
    plain = ModuleNotFoundError("No module named 'numpy'", name="numpy")
    assert missing_extra_error(plain, "distillguard.watermark") is None
    assert missing_extra_error(ValueError("x"), "distillguard.gateway") is None


def test_require_extra_looks_modules_up_without_importing_them() -> None:
    require_extra("scan", "test", ["json", "duckdb"])  # installed here: nothing raised
    with pytest.raises(MissingExtraError, match=r"distillguard\[scan\]"):
        require_extra("scan", "the scan", ["no_such_module_for_dg_tests"])
    with pytest.raises(KeyError):
        require_extra("nonsense", "test")
