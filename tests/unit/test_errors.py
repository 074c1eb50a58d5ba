"""Tests of :mod:`distillguard.errors` and of how the CLI reports errors."""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path
from typing import NoReturn

import pytest

import distillguard.errors as errors_module
from distillguard.cli.main import main
from distillguard.errors import DistillGuardError, RecordError
from distillguard.keyring import Keyring

_TREE_LINE = re.compile(r"^[\s│├└─]*(\w+Error)\s+(DG\d{3})\s+exit (\d+)\s*$", re.MULTILINE)


def public_error_classes() -> list[type[DistillGuardError]]:
    return [
        obj
        for name, obj in vars(errors_module).items()
        if inspect.isclass(obj)
        and issubclass(obj, DistillGuardError)
        and obj.__module__ == errors_module.__name__
        and not name.startswith("_")
    ]


def documented_tree() -> dict[str, tuple[str, int]]:
    doc = errors_module.__doc__ or ""
    return {m[1]: (m[2], int(m[3])) for m in _TREE_LINE.finditer(doc)}


def make(cls: type[DistillGuardError]) -> DistillGuardError:
    if issubclass(cls, RecordError):
        return cls("boom happened", file="log.jsonl", line=3, field="x", hint="do this")
    return cls("boom happened", hint="do this")


def test_all_matches_public_error_classes() -> None:
    names = {cls.__name__ for cls in public_error_classes()}
    assert set(errors_module.__all__) == names
    assert len(errors_module.__all__) == len(set(errors_module.__all__))


def test_codes_are_unique_and_well_formed() -> None:
    classes = public_error_classes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), sorted(codes)
    for cls in classes:
        assert re.fullmatch(r"DG\d{3}", cls.code), cls
        # a subclass keeps the hundreds of its family (DG1xx are configuration errors, ...)
        for base in cls.__mro__[1:]:
            if base is not DistillGuardError and issubclass(base, DistillGuardError):
                assert cls.code[:3] == base.code[:3], (cls, base)


def test_docstring_tree_documents_every_class_exactly() -> None:
    tree = documented_tree()
    classes = {cls.__name__: cls for cls in public_error_classes()}
    assert set(tree) == set(classes)
    for name, (code, exit_code) in tree.items():
        assert classes[name].code == code, name
        assert classes[name].exit_code == exit_code, name


def test_exit_codes_follow_the_documented_families() -> None:
    families = {
        errors_module.ConfigurationError: 3,
        errors_module.InputError: 4,
        errors_module.VerificationError: 5,
        errors_module.StorageError: 6,
        errors_module.UpstreamError: 7,
    }
    for cls in public_error_classes():
        expected = next((code for fam, code in families.items() if issubclass(cls, fam)), 1)
        assert cls.exit_code == expected, cls
    assert errors_module.EXIT_USAGE == 2
    assert errors_module.EXIT_INTERNAL == 70
    doc = errors_module.__doc__ or ""
    for phrase in ("2 usage error", "3 configuration", "4 bad input", "70 an internal error"):
        assert phrase in " ".join(doc.split())


def test_every_class_explains_itself() -> None:
    for cls in public_error_classes():
        assert cls.__doc__ and cls.__doc__.strip(), cls


@pytest.mark.parametrize("cls", public_error_classes(), ids=lambda c: c.__name__)
def test_to_dict_and_str(cls: type[DistillGuardError]) -> None:
    err = make(cls)
    data = err.to_dict()
    assert data["code"] == cls.code and data["error"] == cls.__name__
    assert "boom happened" in data["message"] and data["hint"] == "do this"
    assert str(err) == f"{err.message} (do this)"
    json.dumps(data)  # JSON-ready


def test_record_error_names_file_line_and_field() -> None:
    err = RecordError("not an integer", file="a.jsonl", line=12, field="tokens")
    assert err.message == "a.jsonl:12: field 'tokens': not an integer"
    assert err.details == {
        "file": "a.jsonl",
        "line": 12,
        "field": "tokens",
        "reason": "not an integer",
    }
    assert RecordError("bad").message == "bad"
    assert str(RecordError("bad", hint="fix it")) == "bad (fix it)"


# -- the CLI's handling ---------------------------------------------------------------------------


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    return tmp_path


def _raise_on_load(exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    def load(cls: type[Keyring], path: Path) -> NoReturn:
        raise exc

    monkeypatch.setattr(Keyring, "load", classmethod(load))


@pytest.mark.parametrize("cls", public_error_classes(), ids=lambda c: c.__name__)
def test_cli_prints_error_without_traceback(
    cls: type[DistillGuardError],
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _raise_on_load(make(cls), monkeypatch)
    assert main(["keys", "list"]) == cls.exit_code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert cls.code in captured.err
    assert "boom happened" in captured.err
    assert "hint: do this" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("cls", public_error_classes(), ids=lambda c: c.__name__)
def test_cli_json_error(
    cls: type[DistillGuardError],
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _raise_on_load(make(cls), monkeypatch)
    assert main(["--json", "keys", "list"]) == cls.exit_code
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert data["code"] == cls.code and data["error"] == cls.__name__
    assert data["hint"] == "do this"


def test_cli_internal_error_exit_70_without_traceback(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _raise_on_load(RuntimeError("a bug"), monkeypatch)
    assert main(["keys", "list"]) == 70
    err = capsys.readouterr().err
    assert "internal error" in err and "--debug" in err
    assert "Traceback" not in err


def test_cli_debug_shows_the_traceback_of_an_internal_error(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _raise_on_load(RuntimeError("a bug"), monkeypatch)
    assert main(["--debug", "keys", "list"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "a bug" in err


def test_cli_usage_error_exit_2(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err
