"""The simulator's output: format v1 validity, labels, determinism and population statistics."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from distillguard.cli.main import main
from distillguard.errors import InputError
from distillguard.records import ACCOUNT_SCHEMA, EXCHANGE_SCHEMA, read_log
from distillguard.sim import OutputFormat, SimulationResult, load_scenario, simulate
from distillguard.sim.scenario import PopulationKind


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    out = tmp_path_factory.mktemp("tiny")
    return simulate(load_scenario("tiny"), out=out, seed=11)


@pytest.fixture(scope="module")
def joined(tiny: SimulationResult) -> pa.Table:
    ex = ds.dataset(str(tiny.out / "exchanges"), format="parquet").to_table()
    labels = pq.read_table(tiny.out / "labels.parquet")
    pos = pc.index_in(ex["account_id"], value_set=labels["account_id"])
    ex = ex.append_column("campaign_id", labels["campaign_id"].take(pos))
    return ex.append_column("population", labels["population"].take(pos))


def _read_all(out: Path) -> tuple[int, int, dict[str, object]]:
    reader = read_log(out)
    accounts = sum(len(b) for b in reader.accounts())
    exchanges = sum(len(b) for b in reader.exchanges())
    return accounts, exchanges, reader.report.to_dict()


def test_parquet_output_validates_with_zero_quarantined(tiny: SimulationResult) -> None:
    accounts, exchanges, report = _read_all(tiny.out)
    assert report["ok"] and report["reconciles"]
    assert accounts == tiny.accounts
    assert exchanges == tiny.exchanges > 1000
    assert pq.read_schema(tiny.out / "accounts.parquet").equals(ACCOUNT_SCHEMA)
    for f in (tiny.out / "exchanges").iterdir():
        assert pq.read_schema(f).equals(EXCHANGE_SCHEMA), f


def test_jsonl_gz_output_validates_and_matches_parquet(
    tmp_path: Path, tiny: SimulationResult
) -> None:
    out = tmp_path / "j"
    res = simulate(load_scenario("tiny"), out=out, seed=11, fmt=OutputFormat.JSONL_GZ)
    accounts, exchanges, report = _read_all(out)
    assert report["ok"]
    assert (accounts, exchanges) == (tiny.accounts, tiny.exchanges) == (res.accounts, res.exchanges)


def test_labels_match_accounts(tiny: SimulationResult) -> None:
    accounts = pq.read_table(tiny.out / "accounts.parquet")
    labels = pq.read_table(tiny.out / "labels.parquet")
    assert labels.column("account_id").to_pylist() == accounts.column("account_id").to_pylist()
    scenario = load_scenario("tiny")
    campaign = labels.filter(pc.is_valid(labels["campaign_id"]))
    assert campaign.num_rows == sum(c.accounts for c in scenario.campaigns)
    assert set(campaign["population"].to_pylist()) == {"campaign"}
    legit = labels.filter(pc.is_null(labels["campaign_id"]))
    counts = dict(
        zip(
            *np.unique(legit["population"].to_numpy(zero_copy_only=False), return_counts=True),
            strict=True,
        )
    )
    assert counts == {p.name: p.accounts for p in scenario.populations}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    scenario = load_scenario("tiny")
    a = simulate(scenario, out=tmp_path / "a", seed=5)
    b = simulate(scenario, out=tmp_path / "b", seed=5)
    c = simulate(scenario, out=tmp_path / "c", seed=6)
    names = [f.relative_to(a.out) for f in a.files]
    assert names == [f.relative_to(b.out) for f in b.files]
    for name in names:
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name
    assert (a.out / names[-1]).read_bytes() != (c.out / names[-1]).read_bytes()


def test_exchanges_are_time_ordered_and_ids_unique(
    tiny: SimulationResult, joined: pa.Table
) -> None:
    for f in sorted((tiny.out / "exchanges").iterdir()):
        ts = pq.read_table(f, columns=["ts"])["ts"].to_numpy()
        assert (np.diff(ts.astype(np.int64)) >= 0).all(), f
    ids = joined["exchange_id"].to_numpy(zero_copy_only=False)
    assert len(set(ids)) == len(ids)
    for ip in joined["ip"].to_pylist()[:500]:
        ipaddress.IPv4Address(ip)


def _per_account_daily(joined: pa.Table, population: str, days: float) -> float:
    sub = joined.filter(pc.equal(joined["population"], population))
    return float(sub.num_rows / days)


def test_volumes_match_configuration(tiny: SimulationResult, joined: pa.Table) -> None:
    scenario = load_scenario("tiny")
    for p in scenario.populations:
        if p.kind == PopulationKind.EVAL_RUNNER:
            continue
        observed = _per_account_daily(joined, p.name, scenario.days) / p.accounts
        expected = p.exchanges_per_account_per_day
        # log-normal volumes with few accounts: within a factor that still catches unit slips
        assert expected / 2.5 < observed < expected * 2.5, (p.name, observed, expected)


def test_chat_apps_follow_a_daily_rhythm(tiny: SimulationResult, joined: pa.Table) -> None:
    sub = joined.filter(pc.equal(joined["population"], "developers"))
    hours = pc.hour(sub["ts"]).to_numpy()
    counts = np.bincount(hours, minlength=24)
    # developers are mostly US/IN/EU: the busiest UTC hour carries far more than the quietest
    assert counts.max() > 2.5 * max(counts.min(), 1)


def test_enterprise_batches_run_in_their_window(joined: pa.Table) -> None:
    sub = joined.filter(pc.equal(joined["population"], "enterprise"))
    hours = np.bincount(pc.hour(sub["ts"]).to_numpy(), minlength=24)
    top = np.sort(hours)[::-1]
    # jobs last 3 hours (plus up to 1.5 h of start jitter) in up to 2 org time zones
    assert top[:10].sum() > 0.85 * hours.sum()


def test_shared_nat_accounts_share_a_slash_24(joined: pa.Table) -> None:
    sub = joined.filter(pc.equal(joined["population"], "university"))
    prefixes: dict[str, set[str]] = {}
    for acct, ip in zip(sub["account_id"].to_pylist(), sub["ip"].to_pylist(), strict=True):
        prefixes.setdefault(acct, set()).add(ip.rsplit(".", 1)[0])
    assert all(len(p) == 1 for p in prefixes.values())
    distinct = {next(iter(p)) for p in prefixes.values()}
    # 60 accounts in 2 organisations → 2 NAT /24s, each shared by many accounts
    assert len(distinct) == 2
    assert len(prefixes) >= 30


def test_easy_campaign_packs_accounts_per_ip_and_shares_payment(
    tiny: SimulationResult, joined: pa.Table
) -> None:
    sub = joined.filter(pc.equal(joined["campaign_id"], "hydra-tiny"))
    c = load_scenario("tiny").campaigns[0]
    per_ip: dict[str, set[str]] = {}
    for acct, ip in zip(sub["account_id"].to_pylist(), sub["ip"].to_pylist(), strict=True):
        per_ip.setdefault(ip, set()).add(acct)
    assert max(len(a) for a in per_ip.values()) <= c.accounts_per_ip
    assert np.mean([len(a) for a in per_ip.values()]) > c.accounts_per_ip / 3
    accounts = pq.read_table(tiny.out / "accounts.parquet").join(
        pq.read_table(tiny.out / "labels.parquet"), "account_id"
    )
    camp = accounts.filter(pc.equal(accounts["campaign_id"], "hydra-tiny"))
    assert len(set(camp["payment_fingerprint"].to_pylist())) <= c.payment_pool
    assert set(camp["signup_channel"].to_pylist()) <= set(c.signup_channels)
    legit = accounts.filter(pc.equal(accounts["population"], "developers"))
    assert len(set(legit["payment_fingerprint"].to_pylist())) == legit.num_rows


def test_eval_runners_send_the_same_benchmark_prompts(joined: pa.Table) -> None:
    sub = joined.filter(pc.equal(joined["population"], "eval_runners"))
    by_prompt: dict[str, set[str]] = {}
    for acct, msgs in zip(sub["account_id"].to_pylist(), sub["messages"].to_pylist(), strict=True):
        by_prompt.setdefault(msgs[-1]["content"], set()).add(acct)
    assert max(len(a) for a in by_prompt.values()) >= 2


def test_campaign_pivots_to_the_new_model(joined: pa.Table) -> None:
    scenario = load_scenario("tiny")
    c = scenario.campaigns[0]
    done = datetime(2026, 1, 6, tzinfo=UTC) + timedelta(hours=c.pivot_hours)
    after = joined.filter(pc.greater(joined["ts"], pa.scalar(done, type=joined["ts"].type)))
    camp = after.filter(pc.is_valid(after["campaign_id"]))
    share = pc.mean(pc.cast(pc.equal(camp["model"], "dg-large-2"), pa.float64())).as_py()
    assert abs(share - c.pivot_share) < 0.2
    # reasoning model → reasoning text on successful responses
    new_ok = camp.filter(
        pc.and_(pc.equal(camp["model"], "dg-large-2"), pc.equal(camp["status"], 200))
    )
    assert pc.all(pc.is_valid(new_ok["reasoning"])).as_py()


def test_grammar_only_prompts_without_instructions(tmp_path: Path) -> None:
    res = simulate(load_scenario("tiny"), out=tmp_path / "g", seed=2, instructions="grammar")
    assert res.instruction_source == "grammar"
    _, exchanges, report = _read_all(res.out)
    assert report["ok"] and exchanges == res.exchanges > 1000


def test_packaged_instructions_are_used(tmp_path: Path) -> None:
    res = simulate(load_scenario("tiny"), out=tmp_path / "p", seed=2, instructions="packaged")
    assert res.instruction_source == "packaged"


def test_refuses_to_overwrite(tmp_path: Path, tiny: SimulationResult) -> None:
    with pytest.raises(InputError, match="already holds"):
        simulate(load_scenario("tiny"), out=tiny.out, seed=1)


def test_cli_simulate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main(
        [
            "--json",
            "simulate",
            "--scenario",
            "tiny",
            "--out",
            str(out),
            "--seed",
            "3",
            "--format",
            "jsonl",
            "--single-file",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert '"ok": true' in text
    assert (out / "exchanges.jsonl").is_file() and (out / "accounts.jsonl").is_file()
    code = main(["simulate", "--scenario", "tiny", "--out", str(out), "--format", "xml"])
    assert code == 3
