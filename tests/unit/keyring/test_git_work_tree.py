"""A keyring is not created inside a git work tree that would commit it (issue 25)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from distillguard.cli.main import main
from distillguard.errors import KeyringError
from distillguard.keyring import Keyring, git_ignores, git_work_tree


def git_init(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    return folder


def untracked(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line[3:] for line in out.splitlines()]


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))
    return tmp_path


def test_work_tree_is_found_from_any_depth(tmp_path: Path) -> None:
    repo = git_init(tmp_path / "repo")
    assert git_work_tree(repo / "a" / "b" / "keyring.json") == repo
    assert git_work_tree(repo / "keyring.json") == repo
    assert git_work_tree(tmp_path / "elsewhere" / "keyring.json") is None
    # a linked work tree or submodule has a .git *file*
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / ".git").write_text("gitdir: /somewhere\n")
    assert git_work_tree(tmp_path / "linked" / "k.json") == tmp_path / "linked"


def test_create_inside_a_work_tree_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    repo = git_init(tmp_path / "repo")
    path = repo / ".distillguard" / "keyring.json"
    with pytest.raises(KeyringError) as err:
        Keyring.create(path)
    assert "git work tree" in str(err.value) and str(repo) in str(err.value)
    assert err.value.hint is not None and "--allow-git-work-tree" in err.value.hint
    assert err.value.exit_code == 3
    assert not (repo / ".distillguard").exists()
    assert untracked(repo) == []


def test_an_ignored_path_or_an_explicit_allow_is_accepted(tmp_path: Path) -> None:
    repo = git_init(tmp_path / "repo")
    (repo / ".gitignore").write_text("secrets/\n")
    ignored = repo / "secrets" / "deep" / "keyring.json"
    assert git_ignores(repo, ignored)
    Keyring.create(ignored)
    assert Keyring.load(ignored).describe()
    assert untracked(repo) == [".gitignore"]  # git add . would not take the keys
    allowed = repo / "keys" / "keyring.json"
    assert not git_ignores(repo, allowed)
    Keyring.create(allowed, allow_git_work_tree=True)
    assert "keys/keyring.json" in untracked(repo)


def test_a_symlink_into_a_work_tree_is_seen_through(tmp_path: Path) -> None:
    repo = git_init(tmp_path / "repo")
    (repo / "inside").mkdir()
    (tmp_path / "link").symlink_to(repo / "inside")
    with pytest.raises(KeyringError, match="git work tree"):
        Keyring.create(tmp_path / "link" / "keyring.json")


def test_outside_any_work_tree_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "plain" / "keyring.json"
    Keyring.create(path)
    assert path.is_file()


def test_git_ignores_is_false_when_git_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = git_init(tmp_path / "repo")
    (repo / ".gitignore").write_text("secrets/\n")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert not git_ignores(repo, repo / "secrets" / "k.json")
    with pytest.raises(KeyringError):  # cannot tell: refuse rather than risk a commit
        Keyring.create(repo / "secrets" / "k.json")


def test_keys_init_in_a_checkout_uses_the_per_user_home(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = git_init(clean_env / "checkout")
    monkeypatch.chdir(repo)
    assert main(["keys", "init"]) == 0
    assert (clean_env / "user-data" / "distillguard" / "keyring.json").is_file()
    assert untracked(repo) == []  # the checkout is left as it was
    assert str(clean_env / "user-data" / "distillguard") in capsys.readouterr().out


def test_keys_init_refuses_an_explicit_home_in_a_checkout(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = git_init(clean_env / "checkout")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DISTILLGUARD_HOME", ".distillguard")
    capsys.readouterr()
    assert main(["keys", "init"]) == 3
    err = capsys.readouterr().err
    assert "refusing to create keyring" in err and "--allow-git-work-tree" in err
    assert untracked(repo) == []
    assert main(["keys", "init", "--allow-git-work-tree"]) == 0
    assert (repo / ".distillguard" / "keyring.json").is_file()
