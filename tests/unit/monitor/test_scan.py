"""The batch scan on simulated traffic: output schema, detection, false positives, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from distillguard.errors import ConfigurationError, LogFormatError, LogNotFoundError
from distillguard.monitor import ACCOUNT_SCORES_SCHEMA, ScanResult, scan
from distillguard.monitor.evaluate import evaluate_scan

CAMPAIGN_KEYS = {
    "campaign_id",
    "accounts",
    "score",
    "first_seen",
    "last_seen",
    "exchanges",
    "signals",
}


def _labels(log: Path) -> dict[str, str | None]:
    lab = pq.read_table(log / "labels.parquet")
    return dict(zip(lab["account_id"].to_pylist(), lab["campaign_id"].to_pylist(), strict=True))


def test_output_files_follow_format_v1(tiny_scan: ScanResult) -> None:
    out = tiny_scan.out
    assert out is not None
    table = pq.read_table(out / "account_scores.parquet")
    for f in ACCOUNT_SCORES_SCHEMA:
        assert table.schema.field(f.name).type == f.type, f.name
    scores = np.asarray(table["score"].to_numpy())
    assert ((scores >= 0) & (scores <= 1)).all()
    assert len(table["account_id"].unique()) == table.num_rows
    csv = pacsv.read_csv(out / "account_scores.csv")
    assert csv.column_names[:5] == ["account_id", "score", "flagged", "campaign_id", "reasons"]
    assert csv.num_rows == table.num_rows
    campaigns = json.loads((out / "campaigns.json").read_text())
    assert isinstance(campaigns, list) and campaigns
    for c in campaigns:
        assert set(c) >= CAMPAIGN_KEYS
        assert c["first_seen"].endswith("Z") and c["first_seen"] <= c["last_seen"]
        members = set(c["accounts"])
        in_table = {
            a
            for a, cid in zip(
                table["account_id"].to_pylist(), table["campaign_id"].to_pylist(), strict=True
            )
            if cid == c["campaign_id"]
        }
        assert members == in_table


def test_every_flagged_account_has_reasons(tiny_scan: ScanResult) -> None:
    t = tiny_scan.accounts
    for flagged, reasons in zip(t["flagged"].to_pylist(), t["reasons"].to_pylist(), strict=True):
        if flagged:
            assert reasons, "a flagged account without reasons"


def test_finds_the_tiny_campaign(tiny_log: Path, tiny_scan: ScanResult) -> None:
    labels = _labels(tiny_log)
    t = tiny_scan.accounts
    flagged = {
        a for a, f in zip(t["account_id"].to_pylist(), t["flagged"].to_pylist(), strict=True) if f
    }
    truth = {
        a for a, c in labels.items() if c is not None and a in set(t["account_id"].to_pylist())
    }
    tp = len(flagged & truth)
    assert tp / max(len(flagged), 1) >= 0.95
    assert tp / len(truth) >= 0.9


def test_eval_scan_reports_baselines(tiny_log: Path, tiny_scan: ScanResult) -> None:
    assert tiny_scan.out is not None
    report = evaluate_scan(tiny_scan.out, tiny_log / "labels.parquet", log=tiny_log)
    names = [b.detector for b in report.baselines]
    assert names == ["PRADA", "SEAT"]
    assert report.ours.recall >= 0.9
    assert set(report.ours.fpr_by_population) >= {"developers", "university", "enterprise"}
    assert all(0 <= p <= 1 for p in report.campaign_purity.values())


def test_clean_traffic_flags_at_most_half_a_percent(clean_log: Path, tmp_path: Path) -> None:
    result = scan(clean_log, out=tmp_path / "out")
    rate = result.flagged / result.accounts.num_rows
    assert rate <= 0.005, f"{result.flagged} legitimate accounts flagged"
    assert result.campaigns == [] or all(len(c.accounts) < 3 for c in result.campaigns)


def test_missing_optional_columns_degrade(tiny_log: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    acc = pq.read_table(tiny_log / "accounts.parquet").drop_columns(["payment_fingerprint"])
    pq.write_table(acc, log / "accounts.parquet")
    ex = pq.read_table(tiny_log / "exchanges").drop_columns(["asn", "client_fingerprint"])
    pq.write_table(ex, log / "exchanges.parquet")
    result = scan(log, out=tmp_path / "out")
    assert "infrastructure: shared ASN" in result.unavailable
    assert "infrastructure: payment fingerprints" in result.unavailable
    assert result.accounts.num_rows > 0
    assert json.loads((tmp_path / "out" / "scan_summary.json").read_text())["unavailable_signals"]


def test_bad_records_are_skipped_and_counted(tiny_log: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    pq.write_table(pq.read_table(tiny_log / "accounts.parquet"), log / "accounts.parquet")
    ex = pq.read_table(tiny_log / "exchanges")
    dup = ex.slice(0, 5)  # duplicate exchange ids
    rows = [
        {**r, "account_id": "nobody", "exchange_id": f"orphan-{i}"}
        for i, r in enumerate(ex.slice(5, 3).to_pylist())
    ]
    orphan = pa.Table.from_pylist(rows, schema=ex.schema)
    pq.write_table(pa.concat_tables([ex, dup, orphan]), log / "exchanges.parquet")
    result = scan(log)
    assert result.load.exchanges_read == ex.num_rows + 8
    assert result.load.exchanges_skipped == 8
    assert "nobody" not in result.accounts["account_id"].to_pylist()


def test_jsonl_logs_are_validated_by_the_records_reader(tmp_path: Path) -> None:
    from distillguard.testing import make_account, make_exchange, write_log

    accounts = [make_account(account_id=f"a{i}") for i in range(4)]
    exchanges = [
        make_exchange(f"e{i}", account_id=f"a{i % 4}", offset_s=60.0 * i) for i in range(40)
    ]
    log = tmp_path / "log"
    write_log(log, accounts, exchanges)
    with (log / "exchanges.jsonl").open("a") as fh:
        fh.write('{"exchange_id": "bad"}\nnot json\n')
    result = scan(log)
    assert result.load.exchanges_skipped == 2
    assert result.load.exchanges == 40
    assert result.accounts.num_rows == 4


def test_empty_log(tmp_path: Path) -> None:
    from distillguard.records import ACCOUNT_SCHEMA, EXCHANGE_SCHEMA

    log = tmp_path / "log"
    log.mkdir()
    pq.write_table(ACCOUNT_SCHEMA.empty_table(), log / "accounts.parquet")
    pq.write_table(EXCHANGE_SCHEMA.empty_table(), log / "exchanges.parquet")
    result = scan(log, out=tmp_path / "out")
    assert result.accounts.num_rows == 0 and result.campaigns == []
    assert pq.read_table(tmp_path / "out" / "account_scores.parquet").num_rows == 0


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        scan()
    with pytest.raises(LogNotFoundError):
        scan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogFormatError):
        scan(tmp_path / "empty")


def test_scan_of_a_sqlite_store_matches_the_log(tiny_log: Path, tmp_path: Path) -> None:
    from distillguard.app.ingest import ingest_log
    from distillguard.store import open_store

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = open_store(url)
    ingest_log(store, tiny_log)
    close = getattr(store, "close", None)
    if callable(close):
        close()
    from_store = scan(store_url=url)
    from_log = scan(tiny_log)
    con = duckdb.connect()
    a, b = from_store.accounts, from_log.accounts
    assert sorted(a["account_id"].to_pylist()) == sorted(b["account_id"].to_pylist())
    fa = {
        x for x, f in zip(a["account_id"].to_pylist(), a["flagged"].to_pylist(), strict=True) if f
    }
    fb = {
        x for x, f in zip(b["account_id"].to_pylist(), b["flagged"].to_pylist(), strict=True) if f
    }
    assert len(fa ^ fb) <= 0.02 * max(len(fb), 1)
    con.close()


@pytest.fixture(scope="module")
def zoo_clean_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario zoo's legitimate populations only (written without reading the detector)."""
    from distillguard.sim.zoo import FAMILIES, generate_zoo

    out = tmp_path_factory.mktemp("zoo-clean") / "log"
    legit = [f.name for f in FAMILIES if str(f.kind) in ("legitimate", "FamilyKind.LEGITIMATE")]
    assert len(legit) >= 10
    generate_zoo(out, seed=101, scale=0.15, families=legit)
    return out


def test_false_positive_rate_on_another_generators_legitimate_traffic(zoo_clean_log: Path) -> None:
    """Coding-agent users, tutoring, grading teams, labelling vendors, researchers, resellers...
    from the zoo, a generator the detector was not designed on: at most 1% of accounts flagged
    (the first scan of the zoo flagged 94% of its grading teams and 28% of its students)."""
    result = scan(zoo_clean_log)
    n = result.accounts.num_rows
    assert n > 300
    assert result.flagged <= 0.01 * n
