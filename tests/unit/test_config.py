"""Tests of :mod:`distillguard.config` and ``distillguard config show``."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from distillguard.cli.main import main
from distillguard.config import (
    Settings,
    default_cache_dir,
    default_config_file,
    default_home,
    find_config_file,
    load_settings,
    mask_url,
    secret_kind,
)
from distillguard.errors import ConfigurationError, StoreConnectionError

PASSWORD = "s3cr3t-Pa55"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No DISTILLGUARD_* variable and no distillguard.toml leak in from the outside."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


FULL_TOML = f"""
home = "/srv/dg"

[store]
url = "postgresql://dg:{PASSWORD}@db.internal:5432/distillguard?schema=prod"

[keyring]
path = "/etc/dg/keyring.json"
passphrase = "{PASSPHRASE}"

[ingest]
batch_size = 777

[logging]
level = "INFO"
"""


def test_defaults_without_file_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = load_settings()
    home = tmp_path / "data" / "distillguard"  # the per-user data folder, not the working one
    assert settings.home == home == default_home()
    assert settings.store_url == f"sqlite:///{home}/store.sqlite"
    assert settings.keyring_path == home / "keyring.json"
    assert settings.ingest.batch_size == 5000
    assert settings.logging.level == "WARNING"
    assert settings.keyring.passphrase is None


def test_toml_file_is_read(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "dg.toml", FULL_TOML))
    assert settings.home == Path("/srv/dg")
    assert settings.store_url.startswith("postgresql://dg:")
    assert settings.keyring_path == Path("/etc/dg/keyring.json")
    assert settings.keyring.passphrase is not None
    assert settings.keyring.passphrase.get_secret_value() == PASSPHRASE
    assert settings.ingest.batch_size == 777
    assert settings.logging.level == "INFO"


def test_home_moves_the_embedded_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "dg.toml", 'home = "/data/x"\n'))
    assert settings.store_url == "sqlite:////data/x/store.sqlite"
    assert settings.keyring_path == Path("/data/x/keyring.json")


def test_environment_beats_file_and_overrides_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "dg.toml", FULL_TOML)
    monkeypatch.setenv("DISTILLGUARD_INGEST__BATCH_SIZE", "42")
    monkeypatch.setenv("DISTILLGUARD_HOME", "/from/env")
    settings = load_settings(config)
    assert settings.ingest.batch_size == 42  # env wins over the file...
    assert settings.home == Path("/from/env")
    assert settings.logging.level == "INFO"  # ...and the file still provides the rest
    assert settings.keyring_path == Path("/etc/dg/keyring.json")
    overridden = load_settings(config, home=Path("/from/option"))
    assert overridden.home == Path("/from/option")
    assert overridden.ingest.batch_size == 42


def test_env_nested_section_keeps_file_siblings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "dg.toml", "[ingest]\nbatch_size = 9\nmax_record_bytes = 4096\n")
    monkeypatch.setenv("DISTILLGUARD_INGEST__BATCH_SIZE", "10")
    settings = load_settings(config)
    assert settings.ingest.batch_size == 10
    assert settings.ingest.max_record_bytes == 4096


def test_config_file_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_config_file() is None
    local = write(tmp_path / "distillguard.toml", "[ingest]\nbatch_size = 1\n")
    assert find_config_file() == Path("distillguard.toml")
    assert load_settings().ingest.batch_size == 1
    named = write(tmp_path / "named.toml", "[ingest]\nbatch_size = 2\n")
    monkeypatch.setenv("DISTILLGUARD_CONFIG", str(named))
    assert load_settings().ingest.batch_size == 2
    explicit = write(tmp_path / "explicit.toml", "[ingest]\nbatch_size = 3\n")
    assert load_settings(explicit).ingest.batch_size == 3
    assert local.exists()


@pytest.mark.parametrize("via_env", [False, True])
def test_missing_named_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via_env: bool
) -> None:
    missing = tmp_path / "nope.toml"
    if via_env:
        monkeypatch.setenv("DISTILLGUARD_CONFIG", str(missing))
    with pytest.raises(ConfigurationError, match="does not exist") as info:
        load_settings(None if via_env else missing)
    assert str(missing) in info.value.message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('hoem = "/x"\n', "hoem"),
        ('[store]\nurll = "sqlite:///x"\n', "store.urll"),
        ("[ingest]\nbatchsize = 3\n", "ingest.batchsize"),
        ("[nosuchsection]\na = 1\n", "nosuchsection"),
    ],
)
def test_unknown_key_is_refused_with_its_name(tmp_path: Path, text: str, where: str) -> None:
    config = write(tmp_path / "dg.toml", text)
    with pytest.raises(ConfigurationError) as info:
        load_settings(config)
    assert where in info.value.message
    assert "Extra inputs are not permitted" in info.value.message
    assert str(config) in info.value.message


def test_unknown_nested_env_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLGUARD_STORE__URLL", "sqlite:///x")
    with pytest.raises(ConfigurationError, match=r"store\.urll"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[ingest]\nbatch_size = 0\n", "ingest.batch_size"),
        ('[ingest]\nbatch_size = "many"\n', "ingest.batch_size"),
        ('[store]\nurl = "mysql://h/db"\n', "store.url"),
        ('[logging]\nlevel = "LOUD"\n', "logging.level"),
        ("[ingest]\nmax_record_bytes = 10\n", "ingest.max_record_bytes"),
    ],
)
def test_invalid_value_names_the_setting(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(write(tmp_path / "dg.toml", text))
    assert info.value.message.startswith("invalid configuration")
    assert field in info.value.message
    assert info.value.hint


def test_invalid_env_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLGUARD_INGEST__BATCH_SIZE", "-5")
    with pytest.raises(ConfigurationError, match=r"ingest\.batch_size"):
        load_settings()


@pytest.mark.parametrize(
    "text",
    ["[store\nurl = 1\n", 'home = "unterminated\n', "= 3\n", "a = 1\na = 2\n", "\x00"],
)
def test_bad_toml_is_a_configuration_error(tmp_path: Path, text: str) -> None:
    config = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigurationError) as info:
        load_settings(config)
    assert str(config) in info.value.message
    assert "TOML" in (info.value.hint or "")


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'home = "/caf\xe9"\n')
    with pytest.raises(ConfigurationError):
        load_settings(config)


# -- masking --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:secret@h:5432/db?schema=a", "postgresql://u:***@h:5432/db?schema=a"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("sqlite:///tmp/x.sqlite", "sqlite:///tmp/x.sqlite"),
        # issue 24 finding 5: the shapes the old regex let through
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ss:w/rd@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
        (
            "https://h/v1?password=a&token=b&sig=c&key=d&x=1",
            "https://h/v1?password=***&token=***&sig=***&key=***&x=***",
        ),
        (
            "https://h/x?api_key=a&X-Amz-Signature=b#access_token=c",
            "https://h/x?api_key=***&X-Amz-Signature=***#access_token=***",
        ),
        ("host=h password=pw user=u", "host=h password=*** user=u"),
        # issue 24 follow-up: every query value, path tokens, no scheme, quoted DSN values
        ("https://h/v1?pw=a&jwt=b&bearer=c", "https://h/v1?pw=***&jwt=***&bearer=***"),
        ("https://h/v1?TOKENVALUE", "https://h/v1?***"),
        ("https://h/bot123:SECRET/send", "https://h/***/send"),
        ("https://h/hooks/AbC123xyz/v2", "https://h/hooks/***/v2"),
        ("u:pw@host:5432/db", "u:***@host:5432/db"),
        ("host=h password='se cret' user=u", "host=h password=*** user=u"),
        ("host=h password='it\\'s x' dbname=d", "host=h password=*** dbname=d"),
        ("host=h port=5432 sslmode=require pw=x", "host=h port=5432 sslmode=require pw=***"),
        ("redis://:pw@h:6379/3?ssl_cert_reqs=none", "redis://:***@h:6379/3?ssl_cert_reqs=***"),
        ("sqlite:////var/lib/dg/store.sqlite", "sqlite:////var/lib/dg/store.sqlite"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ],
)
def test_mask_url_examples(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXXXXXX", "https://hooks.slack.com/***"),
        ("https://u:p@alerts.example:8443/hook?token=t", "https://u:***@alerts.example:8443/***"),
        ("https://alerts.example", "https://alerts.example"),
    ],
)
def test_mask_url_webhooks_hide_the_path(url: str, masked: str) -> None:
    assert mask_url(url, path=False) == masked


@given(
    user=st.text(alphabet="abcdefgh_", max_size=10),
    password=st.text(alphabet="0123456789!$%&*()+,;=-.~/@:?#[]", min_size=1, max_size=20),
    host=st.text(alphabet="ijklmnopqrstuvwxyz.", min_size=1, max_size=15),
)
def test_mask_url_never_shows_the_password(user: str, password: str, host: str) -> None:
    masked = mask_url(f"postgresql://{user}:{password}@{host}:5432/dg")
    assert masked == f"postgresql://{user}:***@{host}:5432/dg"


def test_masked_dict_hides_secrets(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "dg.toml", FULL_TOML))
    data = settings.masked()
    text = json.dumps(data)
    assert PASSWORD not in text and PASSPHRASE not in text
    assert data["store"]["url"] == "postgresql://dg:***@db.internal:5432/distillguard?schema=prod"
    assert data["keyring"]["passphrase"] == "********"
    assert data["keyring"]["path"] == "/etc/dg/keyring.json"
    assert PASSPHRASE not in repr(settings) and PASSPHRASE not in str(settings)


def test_every_secret_field_is_masked() -> None:
    """Any SecretStr setting (including ones added later) comes out masked."""
    settings = Settings()

    def secret_paths(model: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        from pydantic import BaseModel, SecretStr

        found: list[tuple[str, ...]] = []
        assert isinstance(model, BaseModel)
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                found += secret_paths(value, (*prefix, name))
            elif "SecretStr" in str(info.annotation) or isinstance(value, SecretStr):
                found.append((*prefix, name))
        return found

    paths = secret_paths(settings)
    assert ("keyring", "passphrase") in paths
    overrides: dict[str, Any] = {}
    for path in paths:
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = "TOP-SECRET-VALUE"
    masked = Settings(**overrides).masked()
    assert "TOP-SECRET-VALUE" not in json.dumps(masked)
    for path in paths:
        value: Any = masked
        for part in path:
            value = value[part]
        assert value == "********", path


def test_config_show_text_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "dg.toml", FULL_TOML)
    assert main(["--config", str(config), "config", "show"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and PASSPHRASE not in out
    shown = tomllib.loads(out)  # the text output is valid TOML
    assert shown["store"]["url"] == "postgresql://dg:***@db.internal:5432/distillguard?schema=prod"
    assert shown["keyring"]["passphrase"] == "********"
    assert shown["ingest"]["batch_size"] == 777


def test_config_show_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "dg.toml", FULL_TOML)
    monkeypatch.setenv("DISTILLGUARD_LOGGING__LEVEL", "DEBUG")
    monkeypatch.setenv("DISTILLGUARD_KEYRING__PASSPHRASE", "env-passphrase")
    assert main(["--json", "-c", str(config), "config", "show"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert "env-passphrase" not in out and PASSWORD not in out
    assert data["logging"]["level"] == "DEBUG"
    assert data["keyring"]["passphrase"] == "********"
    assert data["store"]["url"].startswith("postgresql://dg:***@")
    assert data["home"] == "/srv/dg"


def test_config_show_env_store_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILLGUARD_STORE__URL", f"postgresql://root:{PASSWORD}@127.0.0.1/test")
    assert main(["--json", "config", "show"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    assert json.loads(out)["store"]["url"] == "postgresql://root:***@127.0.0.1/test"


def test_config_show_bad_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "dg.toml", "[ingest]\nbatchsize = 3\n")
    assert main(["-c", str(config), "config", "show"]) == 3
    err = capsys.readouterr().err
    assert "DG100" in err and "ingest.batchsize" in err and "Traceback" not in err
    assert main(["--json", "-c", str(config), "config", "show"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["code"] == "DG100" and "ingest.batchsize" in data["message"]


def test_config_show_missing_file_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "missing.toml", "config", "show"]) == 3
    assert "missing.toml does not exist" in capsys.readouterr().err


# -- secrets never printed (issue 24, finding 5): every secret-bearing setting, all output --------

_SECRET_WORDS = {
    "url",
    "urls",
    "uri",
    "dsn",
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passphrase",
    "key",
    "keys",
    "webhook",
    "webhooks",
    "credential",
    "credentials",
}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        tp = stack.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found.append(tp)
        stack.extend(get_args(tp))
    return found


def _holds_plain_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    if get_origin(annotation) is Literal:
        return False
    return any(_holds_plain_str(a) for a in get_args(annotation))


def _walk(
    model: type[BaseModel], prefix: tuple[str, ...] = (), in_list: bool = False
) -> list[tuple[tuple[str, ...], str | None, Any, bool]]:
    """(path, secret kind, annotation, inside a list of models) of every setting."""
    out: list[tuple[tuple[str, ...], str | None, Any, bool]] = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        kind = secret_kind(info)
        out.append((path, kind, info.annotation, in_list))
        if kind is None:
            for sub in _models_in(info.annotation):
                listed = get_origin(info.annotation) is list
                keyed = get_origin(info.annotation) is dict  # sections by name: one example
                out += _walk(sub, (*path, "NAME") if keyed else path, in_list or listed)
    return out


SETTINGS_TREE = _walk(Settings)
SECRET_SETTINGS = [(path, kind) for path, kind, _, _ in SETTINGS_TREE if kind is not None]


def test_secret_settings_are_enumerated() -> None:
    paths = {p for p, _ in SECRET_SETTINGS}
    for expected in [
        ("store", "url"),
        ("keyring", "passphrase"),
        ("passport", "redis_url"),
        ("gateway", "redis_url"),
        ("gateway", "upstream_url"),
        ("gateway", "upstream_api_key"),
        ("gateway", "admin_token"),
        ("gateway", "alerts", "webhooks"),
        ("gateway", "images", "upstream_url"),
        ("gateway", "images", "upstream_api_key"),
        ("gateway", "upstreams", "NAME", "url"),
        ("gateway", "upstreams", "NAME", "api_key"),
        ("image", "tsa_url"),
    ]:
        assert expected in paths
    assert dict(SECRET_SETTINGS)[("gateway", "alerts", "webhooks")] == "webhook"
    # secrets inside lists of sections would need the override builder below to grow
    assert not [p for p, kind, _, listed in SETTINGS_TREE if kind and listed]


def test_no_setting_named_like_a_secret_is_a_plain_string() -> None:
    """A new setting called *_url, *_token, *password*, *key*... must be a secret type."""
    offenders = [
        ".".join(path)
        for path, kind, annotation, _ in SETTINGS_TREE
        if kind is None
        and _holds_plain_str(annotation)
        and set(path[-1].lower().split("_")) & _SECRET_WORDS
    ]
    assert offenders == [], f"make these SecretUrl/WebhookUrl/SecretStr: {offenders}"


def _secret_value(
    n: int, kind: str, shape: str, host: str = "127.0.0.1:1", *, store: bool = False
) -> tuple[str, list[str]]:
    """A distinctive value for the n-th secret setting and the fragments that must not show."""
    tag = f"{n:02d}{shape[0]}"
    if kind == "str":
        return f"SecretStr{tag}value", [f"SecretStr{tag}value"]
    if kind == "webhook":
        parts = [f"T{tag}team", f"B{tag}bot", f"Hook{tag}Tok"]
        return f"https://hooks.slack.com/services/{'/'.join(parts)}", parts
    pw = [f"Pw{tag}a", f"Pw{tag}b", f"Pw{tag}c", f"Pw{tag}d", f"Pw{tag}e"]
    query = [f"Qp{tag}x", f"Qt{tag}x", f"Qs{tag}x", f"Qk{tag}x"]
    params = f"?password={query[0]}&token={query[1]}&sig={query[2]}&key={query[3]}"
    odd = [f"Ow{tag}a", f"Oj{tag}b", f"Ob{tag}c", f"Ox{tag}d"]
    if store or shape in ("user_password", "password_only"):
        pass  # the store URL must stay a postgresql:// URL that ingest tries to connect to
    elif shape == "odd_params":  # names no list of secret parameters would hold
        return f"https://{host}/v1?pw={odd[0]}&jwt={odd[1]}&bearer={odd[2]}&x={odd[3]}", odd
    elif shape == "path_token":
        return f"https://{host}/bot{n}:{odd[0]}/send/{odd[1]}", odd[:2]
    elif shape == "no_scheme":
        return f"dg-user:{pw[0]}/{pw[1]}@{host}/db", pw[:2]
    elif shape == "quoted_dsn":
        return f"host=h password='{odd[0]} {odd[1]}' user=u dbname=d", odd[:2]
    if shape == "password_only":
        return f"postgresql://:{pw[0]}@{host}/db{params}", [pw[0], *query]
    password = f"{pw[0]}/{pw[1]}@{pw[2]}:{pw[3]}%{pw[4]}"
    return f"postgresql://dg-user:{password}@{host}/db{params}", pw + query


def _all_secrets(shape: str) -> tuple[dict[str, Any], list[str]]:
    overrides: dict[str, Any] = {}
    fragments: list[str] = []
    for n, (path, kind) in enumerate(SECRET_SETTINGS):
        assert kind is not None
        value, frags = _secret_value(n, kind, shape, store=path == ("store", "url"))
        fragments += frags
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        annotation = next(a for p, _, a, _ in SETTINGS_TREE if p == path)
        node[path[-1]] = [value] if get_origin(annotation) is list else value
    Settings(**overrides)  # every value is valid where it goes
    return overrides, fragments


@pytest.mark.parametrize(
    "shape",
    ["user_password", "password_only", "odd_params", "path_token", "no_scheme", "quoted_dsn"],
)
def test_every_secret_bearing_setting_is_masked_everywhere(
    shape: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    import tomli_w

    from distillguard.keyring import Keyring

    # ingest reaches the PostgreSQL store's connection (the postgres extra); without the extra
    # it exits 3 naming the extra (the core-only smoke run of tests/install)
    pytest.importorskip("psycopg_pool")

    overrides, fragments = _all_secrets(shape)
    overrides["home"] = str(tmp_path / "home")  # with a keyring, so that serve gets far
    settings = Settings(**overrides)
    Keyring.create(settings.keyring_path)
    config = write(tmp_path / "dg.toml", tomli_w.dumps(overrides))
    (tmp_path / "log").mkdir()
    caplog.set_level(logging.DEBUG)
    outputs = [json.dumps(settings.masked()), repr(settings), str(settings)]
    assert main(["-c", str(config), "config", "show"]) == 0
    assert main(["--json", "-c", str(config), "config", "show"]) == 0
    # ingest with the configured store URL and with --store: both fail to connect
    store_url = overrides["store"]["url"]
    failed = StoreConnectionError.exit_code
    assert main(["--debug", "-c", str(config), "ingest", str(tmp_path / "log")]) == failed
    assert main(["-q", "-c", str(config), "ingest", "log", "--store", store_url]) == failed
    assert main(["--json", "-c", str(config), "ingest", "log", "--store", store_url]) == failed
    # serve's start-up (JSON logs left on pytest's handlers; uvicorn not started): it builds
    # the gateway from every setting and fails on the unreachable store
    import uvicorn

    import distillguard.gateway.logs

    monkeypatch.setattr(distillguard.gateway.logs, "configure_json_logging", lambda *a, **k: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    for args in (["--debug", "-c", str(config), "serve"], ["--json", "-c", str(config), "serve"]):
        assert main(args) != 0
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err, caplog.text]
    assert "postgresql://dg-user:***@" in captured.out or "postgresql://:***@" in captured.out
    assert "https://hooks.slack.com/***" in captured.out
    text = "\n".join(outputs)
    leaked = sorted({f for f in fragments if f in text})
    assert leaked == []


# -- the per-user folders (issue 25) -------------------------------------------------------------


def test_per_user_folders_follow_the_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "d"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "k"))
    assert default_home() == tmp_path / "d" / "distillguard"
    assert default_config_file() == tmp_path / "c" / "distillguard" / "distillguard.toml"
    assert default_cache_dir() == tmp_path / "k" / "distillguard"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_home() == tmp_path / "user" / ".local" / "share" / "distillguard"
    assert not default_home().exists()  # naming the folder does not create it


def test_explicit_homes_win_over_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "distillguard.toml", f'home = "{tmp_path / "from-file"}"\n')
    assert load_settings().home == tmp_path / "from-file"
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "from-env"))
    assert load_settings().home == tmp_path / "from-env"
    assert load_settings(home=tmp_path / "from-option").home == tmp_path / "from-option"


def test_per_user_config_file_is_read_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    user_file = default_config_file()
    user_file.parent.mkdir(parents=True)
    write(user_file, "[ingest]\nbatch_size = 123\n")
    assert find_config_file() == user_file
    assert load_settings().ingest.batch_size == 123
    # ./distillguard.toml wins over the per-user file, $DISTILLGUARD_CONFIG over both
    write(tmp_path / "distillguard.toml", "[ingest]\nbatch_size = 456\n")
    assert load_settings().ingest.batch_size == 456
    monkeypatch.setenv("DISTILLGUARD_CONFIG", str(write(tmp_path / "x.toml", "")))
    assert load_settings().ingest.batch_size == 5000


def test_an_old_working_directory_home_is_pointed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ".distillguard").mkdir()
    (tmp_path / ".distillguard" / "keyring.json").write_text("{}")
    with caplog.at_level("WARNING", logger="distillguard.config"):
        settings = load_settings()
    assert settings.home != Path(".distillguard")
    (record,) = caplog.records
    assert "DISTILLGUARD_HOME=" + str(tmp_path / ".distillguard") in record.getMessage()
    caplog.clear()
    monkeypatch.setenv("DISTILLGUARD_HOME", ".distillguard")
    with caplog.at_level("WARNING", logger="distillguard.config"):
        assert load_settings().home == Path(".distillguard")
    assert not caplog.records  # an explicit home: nothing to say


def test_config_show_names_the_per_user_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert main(["--json", "config", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["home"] == str(tmp_path / "data" / "distillguard")
