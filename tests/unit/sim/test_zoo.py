"""The scenario zoo: a valid format v1 log, complete labels, every family, determinism and
parameters inside their declared ranges."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from distillguard.cli.main import main
from distillguard.errors import ConfigurationError, InputError
from distillguard.records import read_log
from distillguard.sim.zoo import FAMILIES, ZooResult, generate_zoo, get_family
from distillguard.sim.zoo._base import DAY_US, START_US

SCALE = 0.02
FILES = ("accounts.parquet", "exchanges.parquet", "labels.parquet", "zoo.json")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> ZooResult:
    return generate_zoo(tmp_path_factory.mktemp("zoo"), seed=3, scale=SCALE)


def test_written_log_passes_the_validator(zoo: ZooResult) -> None:
    reader = read_log(zoo.out)
    n = sum(len(batch) for batch in reader.exchanges())
    report = reader.report
    assert report.accounts.quarantined == 0
    assert report.exchanges.quarantined == 0
    assert report.accounts.accepted == zoo.accounts
    assert n == report.exchanges.accepted == zoo.exchanges > 0
    assert report.ok


def test_labels_cover_every_account(zoo: ZooResult) -> None:
    accounts = pq.read_table(zoo.out / "accounts.parquet")
    labels = pq.read_table(zoo.out / "labels.parquet")
    assert labels.column_names == ["account_id", "campaign_id", "population", "family", "kind"]
    assert sorted(labels["account_id"].to_pylist()) == sorted(accounts["account_id"].to_pylist())
    for row in labels.to_pylist():
        assert (row["campaign_id"] is None) == (row["kind"] == "legitimate")
        assert get_family(row["family"]).kind == row["kind"]
    assert zoo.campaign_accounts == sum(1 for k in labels["kind"].to_pylist() if k == "campaign")


def test_every_family_appears(zoo: ZooResult) -> None:
    labels = pq.read_table(zoo.out / "labels.parquet")
    assert set(labels["family"].to_pylist()) == {f.name for f in FAMILIES}
    kinds = Counter(f.kind for f in FAMILIES)
    assert kinds["legitimate"] >= 10
    assert kinds["campaign"] >= 8
    assert all(run.exchanges > 0 for run in zoo.families), [
        r.name for r in zoo.families if r.exchanges == 0
    ]


def test_exchanges_in_time_order_inside_the_window(zoo: ZooResult) -> None:
    ex = pq.read_table(zoo.out / "exchanges.parquet", columns=["ts", "account_id", "exchange_id"])
    ts = pc.cast(ex["ts"], "int64").to_numpy()
    assert (ts[1:] >= ts[:-1]).all()
    assert ts.min() >= START_US
    assert ts.max() < START_US + zoo.days * DAY_US
    assert len(set(ex["exchange_id"].to_pylist())) == ex.num_rows
    accounts = pq.read_table(zoo.out / "accounts.parquet")
    created = dict(
        zip(
            accounts["account_id"].to_pylist(),
            pc.cast(accounts["created_at"], "int64").to_pylist(),
            strict=True,
        )
    )
    first: dict[str, int] = {}
    for acc, t in zip(ex["account_id"].to_pylist(), ts.tolist(), strict=True):
        first.setdefault(acc, t)
    assert all(created[a] <= t for a, t in first.items())


def test_same_seed_gives_identical_files(zoo: ZooResult, tmp_path: Path) -> None:
    again = generate_zoo(tmp_path / "again", seed=3, scale=SCALE)
    for name in FILES:
        assert (zoo.out / name).read_bytes() == (again.out / name).read_bytes(), name


def test_other_seed_gives_another_instance(zoo: ZooResult, tmp_path: Path) -> None:
    other = generate_zoo(tmp_path / "other", seed=4, scale=SCALE)
    assert [r.params for r in other.families] != [r.params for r in zoo.families]
    a = set(pq.read_table(zoo.out / "accounts.parquet")["account_id"].to_pylist())
    b = set(pq.read_table(other.out / "accounts.parquet")["account_id"].to_pylist())
    assert not a & b
    differing = sum(
        ra.params != rb.params for ra, rb in zip(zoo.families, other.families, strict=True)
    )
    assert differing == len(FAMILIES)  # every family is domain-randomised


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drawn_parameters_fall_inside_their_ranges(seed: int) -> None:
    import numpy as np

    for fam in FAMILIES:
        params = fam.draw_params(np.random.default_rng(seed))
        assert set(params) == {p.name for p in fam.params}
        for spec in fam.params:
            assert spec.contains(params[spec.name]), (fam.name, spec.name)
            if spec.integer:
                assert float(params[spec.name]).is_integer()


def test_recorded_parameters_fall_inside_their_ranges(zoo: ZooResult) -> None:
    summary = json.loads((zoo.out / "zoo.json").read_bytes())
    assert [f["name"] for f in summary["families"]] == [f.name for f in FAMILIES]
    for run in summary["families"]:
        for spec in get_family(run["name"]).params:
            assert spec.contains(run["params"][spec.name]), (run["name"], spec.name)


def test_card_cells_share_one_card_within_the_drawn_cell_size(zoo: ZooResult) -> None:
    run = next(r for r in zoo.families if r.name == "card_cells")
    accounts = pq.read_table(zoo.out / "accounts.parquet").to_pylist()
    labels = {r["account_id"]: r for r in pq.read_table(zoo.out / "labels.parquet").to_pylist()}
    cards = Counter(
        a["payment_fingerprint"]
        for a in accounts
        if labels[a["account_id"]]["family"] == "card_cells"
    )
    assert cards
    assert all(run.params["cell_min"] <= n <= run.params["cell_max"] for n in cards.values())


def test_coding_agent_users_send_the_tool_prompt_in_multi_turn_sessions(zoo: ZooResult) -> None:
    labels = {r["account_id"]: r for r in pq.read_table(zoo.out / "labels.parquet").to_pylist()}
    ex = pq.read_table(zoo.out / "exchanges.parquet", columns=["account_id", "messages", "tools"])
    agent_rows = [
        r for r in ex.to_pylist() if labels[r["account_id"]]["family"] == "coding_agent_users"
    ]
    assert agent_rows
    assert all(r["messages"][0]["role"] == "system" and r["tools"] for r in agent_rows)
    assert any(any(m["role"] == "tool" for m in r["messages"]) for r in agent_rows)


def test_bad_arguments(zoo: ZooResult, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        generate_zoo(tmp_path / "x", seed=1, scale=SCALE, families=["no_such_family"])
    with pytest.raises(ConfigurationError):
        generate_zoo(tmp_path / "x", seed=1, scale=0.0)
    with pytest.raises(InputError):
        generate_zoo(zoo.out, seed=3, scale=SCALE)


def test_family_selection(tmp_path: Path) -> None:
    res = generate_zoo(tmp_path / "sel", seed=1, scale=SCALE, families=["low_and_slow", "tutoring"])
    labels = pq.read_table(res.out / "labels.parquet")
    assert set(labels["family"].to_pylist()) == {"tutoring", "low_and_slow"}


def test_cli_list_and_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "zoo", "--list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {f["name"] for f in listed} == {f.name for f in FAMILIES}
    assert all(f["kind"] in ("legitimate", "campaign") and f["description"] for f in listed)
    out = tmp_path / "cli"
    rc = main(["--json", "zoo", "--seed", "5", "--scale", "0.01", "--families",
               "proxy_hydra,individuals", "--out", str(out)])  # fmt: skip
    assert rc == 0
    written = json.loads(capsys.readouterr().out)
    assert written["ok"] and written["accounts"] > 0
    assert main(["zoo", "--families", "nope", "--out", str(tmp_path / "n")]) == 3
