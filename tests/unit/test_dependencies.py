"""The declared dependencies match the imports (issue 25): every third-party module that the
package imports is provided by a dependency of ``pyproject.toml`` (core or an extra), and every
dependency of the core and the extras is imported somewhere, or is listed below with the reason
it is needed without an import."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "distillguard"

#: Dependencies needed at run time although no module imports them, with the reason.
NOT_IMPORTED = {
    "uvloop": "uvicorn's event loop (serve --loop uvloop), loaded by uvicorn",
    "httptools": "uvicorn's HTTP parser, loaded by uvicorn",
    "python-multipart": "FastAPI's form parser for the console's uploads, loaded by FastAPI",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> dict[str, str]:
    """Distribution name -> the group declaring it ("core" or the extra's name; not dev)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {_name(r): "core" for r in project["dependencies"]}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        if extra == "dev":
            continue
        for r in reqs:
            name = _name(r)
            if name != "distillguard":
                out.setdefault(name, extra)
    return out


def _imports() -> dict[str, set[str]]:
    """Top-level module name -> files of the package that import it."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_has_a_dependency_and_every_dependency_an_import() -> None:
    declared = _declared()
    provides = packages_distributions()
    imported_dists: set[str] = set()
    missing: list[str] = []
    for module, files in sorted(_imports().items()):
        if module in sys.stdlib_module_names or module in ("distillguard", "__future__"):
            continue
        dists = {d.lower().replace("_", "-") for d in provides.get(module, [])}
        if not dists:
            # optional integrations imported inside try/except (vllm, ...) are not installed here
            continue
        imported_dists |= dists
        if not dists & set(declared):
            missing.append(f"{module} ({', '.join(sorted(dists))}) imported by {sorted(files)[0]}")
    assert not missing, "imports that no dependency provides: " + "; ".join(missing)
    unused = sorted(set(declared) - imported_dists - set(NOT_IMPORTED))
    assert not unused, f"dependencies that nothing imports: {unused}"
    stale = sorted(set(NOT_IMPORTED) & imported_dists)
    assert not stale, f"imported after all, drop from NOT_IMPORTED: {stale}"


def test_leidenalg_is_gone() -> None:
    assert "leidenalg" not in _declared()


def _lock() -> dict[str, Version]:
    """requirements.lock: distribution name -> pinned version."""
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = Version(version.split(";")[0].strip())
    return pins


def test_the_lock_pins_every_requirement_within_its_range() -> None:
    """Every requirement of the core and of every extra (dev included) is pinned in
    requirements.lock at a version its range allows: a dependency added to pyproject.toml
    without `make lock` fails here, not in a fresh clone's `make`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    problems = []
    for group, reqs in groups.items():
        for text in reqs:
            req = Requirement(text)
            if req.name == "distillguard" or (req.marker and not req.marker.evaluate()):
                continue
            pinned = pins.get(canonicalize_name(req.name))
            if pinned is None:
                problems.append(f"{req.name} ({group}) is not in requirements.lock")
            elif not req.specifier.contains(pinned, prereleases=True):
                problems.append(f"{req.name} ({group}): lock has {pinned}, pyproject says {text}")
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_core_ranges_are_ranges_not_pins() -> None:
    """Library-style: the core and the extras (not dev) give lower bounds, never ``==``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    pinned = [
        f"{text} ({group})"
        for group, reqs in groups.items()
        if group != "dev"
        for text in reqs
        if any(spec.operator in ("==", "===") for spec in Requirement(text).specifier)
    ]
    assert not pinned, f"pins outside dev: {pinned}"
    assert project["requires-python"] == ">=3.11"
