"""Reading logs: every bad input of the foundation issue, formats, and reconciliation."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.errors import LogFormatError, LogNotFoundError
from distillguard.records import ReadReport, read_log
from distillguard.testing import make_account, make_exchange, write_jsonl, write_log


def _ex(i: int, account: str = "acct-1", **kw: Any) -> dict[str, Any]:
    d = make_exchange(f"ex-{i}", account_id=account, offset_s=i).to_dict()
    d.update(kw)
    return d


def _acc(i: int = 1) -> dict[str, Any]:
    return make_account(f"acct-{i}").to_dict()


def _read_all(folder: Path, **kw: Any) -> tuple[list[Any], list[Any], ReadReport]:
    reader = read_log(folder, quarantine=folder.parent / "quarantine.jsonl", **kw)
    accounts = [a for b in reader.accounts() for a in b]
    exchanges = [e for b in reader.exchanges() for e in b]
    reader.quarantine.close()
    assert reader.report.reconciles
    return accounts, exchanges, reader.report


def _quarantined(folder: Path) -> list[dict[str, Any]]:
    path = folder.parent / "quarantine.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "parquet"])
def test_round_trip_each_format(tmp_path: Path, fmt: str) -> None:
    accounts = [make_account("acct-1", custom_flag=True), make_account("acct-2", tier="pro")]
    exchanges = [
        make_exchange("ex-1", tools=("search", "python")),
        make_exchange("ex-2", account_id="acct-2", reasoning="thinking", asn=7922),
        make_exchange("ex-3", extra_field={"nested": [1, 2]}, response=None),
    ]
    folder = write_log(tmp_path / "log", accounts, exchanges, fmt=fmt)  # type: ignore[arg-type]
    got_a, got_e, report = _read_all(folder)
    assert [a.to_dict() for a in got_a] == [a.to_dict() for a in accounts]
    assert [e.to_dict() for e in got_e] == [e.to_dict() for e in exchanges]
    assert report.ok
    assert (report.exchanges.read, report.exchanges.accepted) == (3, 3)


def test_folder_of_exchange_files(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1)])
    write_jsonl(folder / "exchanges" / "2026-02-01.jsonl", [_ex(1), _ex(2)])
    with gzip.open(folder / "exchanges" / "2026-02-02.jsonl.gz", "wb") as fh:
        fh.write(orjson.dumps(_ex(3)) + b"\n")
    (folder / "exchanges" / "README.txt").write_text("ignored")
    _, got, report = _read_all(folder)
    assert [e.exchange_id for e in got] == ["ex-1", "ex-2", "ex-3"]
    assert report.ok


def test_unknown_fields_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [{**_acc(1), "crm_id": 42}])
    write_jsonl(
        folder / "exchanges.jsonl",
        [_ex(1, region="eu", messages=[{"role": "user", "content": "hi", "name": "bob"}])],
    )
    accounts, exchanges, _ = _read_all(folder)
    assert accounts[0].extra["crm_id"] == 42
    assert exchanges[0].extra["region"] == "eu"
    assert exchanges[0].to_dict()["messages"] == [{"role": "user", "content": "hi", "name": "bob"}]


def test_missing_folder() -> None:
    with pytest.raises(LogNotFoundError, match="does not exist"):
        read_log(Path("/nonexistent/log/folder"))


def test_missing_table(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "log" / "accounts.jsonl", [_acc(1)])
    with pytest.raises(LogFormatError, match="no exchanges table"):
        read_log(tmp_path / "log")


def test_table_present_twice(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "log" / "accounts.jsonl", [_acc(1)])
    write_jsonl(tmp_path / "log" / "accounts.jsonl.gz", [])
    write_jsonl(tmp_path / "log" / "exchanges.jsonl", [])
    with pytest.raises(LogFormatError, match="more than once"):
        read_log(tmp_path / "log")


def test_missing_required_fields_and_wrong_types(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1)])
    bad = [
        ({k: v for k, v in _ex(1).items() if k != "model"}, "model", "missing"),
        (_ex(2, prompt_tokens="12"), "prompt_tokens", "must be an integer, got string"),
        (_ex(3, status=True), "status", "must be an integer, got boolean"),
        (_ex(4, messages="hello"), "messages", "must be a list"),
        (_ex(5, messages=[{"role": "user", "content": 5}]), "messages[0].content", "string"),
        (_ex(6, ip="not-an-ip"), "ip", "not an IPv4 or IPv6"),
        (_ex(7, latency_ms=-1), "latency_ms", ">= 0"),
        (_ex(8, tools=["a", 1]), "tools[1]", "string"),
        (_ex(9, asn="AS123"), "asn", "integer"),
        (_ex(10, status=999), "status", "HTTP status"),
        (_ex(11, exchange_id=""), "exchange_id", "empty"),
        (_ex(12, user_agent="curl\x00/8"), "user_agent", "NUL character"),
    ]
    write_jsonl(folder / "exchanges.jsonl", [row for row, _, _ in bad] + [_ex(99)])
    _, good, report = _read_all(folder)
    assert [e.exchange_id for e in good] == ["ex-99"]
    q = _quarantined(folder)
    assert len(q) == len(bad) == report.exchanges.quarantined
    for entry, (_, field, reason) in zip(q, bad, strict=True):
        assert entry["field"] == field
        assert reason in entry["reason"]
        assert entry["file"].endswith("exchanges.jsonl")
        assert entry["record"]  # the raw line is kept for repair
    assert [e["line"] for e in q] == list(range(1, len(bad) + 1))


def test_timestamps_without_time_zone(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [{**_acc(1), "created_at": "2026-01-01T00:00:00"}])
    write_jsonl(folder / "exchanges.jsonl", [_ex(1, ts="2026-02-23 14:05:09.5")])
    accounts, exchanges, report = _read_all(folder)
    assert accounts == [] and exchanges == []
    reasons = [e["reason"] for e in _quarantined(folder)]
    assert all("has no time zone" in r for r in reasons)
    assert reasons[1].startswith("timestamp '2026-02-23 14:05:09.5'")
    # the exchange was read, validated... and failed on its own ts before the account check
    assert report.exchanges.quarantined == 1


def test_timestamp_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1)])
    write_jsonl(folder / "exchanges.jsonl", [_ex(1, ts="2026-02-23T16:05:09.123456789+02:00")])
    _, exchanges, _ = _read_all(folder)
    assert exchanges[0].to_dict()["ts"] == "2026-02-23T14:05:09.123456Z"


def test_duplicate_exchange_ids_and_unknown_accounts(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1), _acc(1)])
    write_jsonl(folder / "exchanges.jsonl", [_ex(1), _ex(2), _ex(1), _ex(3, account="acct-404")])
    accounts, exchanges, report = _read_all(folder)
    assert len(accounts) == 1 and report.accounts.quarantined == 1
    assert [e.exchange_id for e in exchanges] == ["ex-1", "ex-2"]
    reasons = {(e["line"], e["reason"]) for e in _quarantined(folder) if e["table"] == "exchanges"}
    assert (3, "duplicate exchange_id 'ex-1'") in reasons
    assert (4, "account 'acct-404' has no row in the accounts table") in reasons


def test_duplicate_detection_survives_spill_to_disk(tmp_path: Path) -> None:
    from distillguard.records._reader import _SeenIds

    seen = _SeenIds(limit=10)
    first = seen.add_new([f"id-{i}" for i in range(30)])
    again = seen.add_new(["id-3", "id-29", "id-30", "id-30"])
    seen.close()
    assert all(first)
    assert again == [False, False, True, False]


def test_invalid_utf8_and_invalid_json(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1)])
    good = orjson.dumps(_ex(1))
    broken = orjson.dumps(_ex(2)).replace(b"Explain", b"Expl\xff\xfein")
    write_jsonl(folder / "exchanges.jsonl", [good, broken, b'{"exchange_id": "x",', b"[1, 2]"])
    _, exchanges, report = _read_all(folder)
    assert len(exchanges) == 1
    reasons = [e["reason"] for e in _quarantined(folder)]
    assert reasons[0].startswith("invalid UTF-8 at byte")
    assert reasons[1].startswith("invalid JSON")
    assert reasons[2] == "line is a JSON list, not an object"
    assert report.exchanges.read == 4


def test_huge_line_is_quarantined_without_loading(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1)])
    huge = _ex(2, response="x" * (50 * 1024 * 1024))
    write_jsonl(folder / "exchanges.jsonl", [_ex(1), huge, _ex(3)])
    _, exchanges, report = _read_all(folder, max_record_bytes=8 * 1024 * 1024)
    assert [e.exchange_id for e in exchanges] == ["ex-1", "ex-3"]
    (entry,) = _quarantined(folder)
    assert entry["line"] == 2
    assert "longer than 8,388,608 bytes" in entry["reason"]
    assert len(entry["record"]) <= 1100  # only a preview is kept
    assert report.exchanges.read == 3


def test_huge_line_under_the_limit_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1)])
    write_jsonl(folder / "exchanges.jsonl", [_ex(1, response="y" * (50 * 1024 * 1024))])
    _, exchanges, _ = _read_all(folder, max_record_bytes=64 * 1024 * 1024)
    assert len(exchanges[0].response or "") == 50 * 1024 * 1024


def test_truncated_gzip(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1)])
    payload = b"".join(orjson.dumps(_ex(i)) + b"\n" for i in range(2000))
    data = gzip.compress(payload)
    (folder / "exchanges.jsonl.gz").write_bytes(data[: len(data) // 2])
    _, exchanges, report = _read_all(folder)
    assert 0 < len(exchanges) < 2000
    (issue,) = report.issues
    assert issue.severity == "error" and "truncated gzip" in issue.message
    assert f"after line {report.exchanges.read};" in issue.message
    assert not report.ok
    assert report.exchanges.accepted + report.exchanges.quarantined == report.exchanges.read


def test_not_gzip_at_all(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_jsonl(folder / "accounts.jsonl", [_acc(1)])
    (folder / "exchanges.jsonl.gz").write_bytes(b"this is not gzip data\n")
    _, exchanges, report = _read_all(folder)
    assert exchanges == []
    assert report.issues[0].severity == "error"
    assert "gzip" in report.issues[0].message


def test_empty_files(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    (folder).mkdir()
    (folder / "accounts.jsonl").write_bytes(b"")
    (folder / "exchanges.jsonl").write_bytes(b"\n\n")
    accounts, exchanges, report = _read_all(folder)
    assert accounts == exchanges == []
    assert [i.message for i in report.issues] == ["file holds no records"] * 2
    assert report.ok  # empty is a warning, not an error


def test_corrupt_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_log(folder, [make_account()], [make_exchange()], fmt="parquet")
    data = (folder / "exchanges.parquet").read_bytes()
    (folder / "exchanges.parquet").write_bytes(data[: len(data) // 2])
    reader = read_log(folder)
    list(reader.accounts())
    with pytest.raises(LogFormatError, match=r"exchanges\.parquet is not a readable Parquet"):
        list(reader.exchanges())


def test_parquet_wrong_column_type(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_log(folder, [make_account()], [], fmt="parquet")
    rows = [_ex(1), _ex(2)]
    for r in rows:
        r["ts"] = r["ts"]  # keep as string: a wrong type for Parquet is still readable
        r["messages"] = orjson.dumps(r["messages"]).decode()
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, folder / "exchanges.parquet")
    _, exchanges, report = _read_all(folder)
    assert exchanges == []
    q = _quarantined(folder)
    assert {e["field"] for e in q} == {"messages"}
    assert all(" row " in f"{e['file']} row {e['line']}" for e in q)
    assert report.exchanges.quarantined == 2


def test_parquet_naive_timestamp(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    write_log(folder, [], [], fmt="parquet")
    table = pa.table({"account_id": ["a"], "created_at": pa.array([0], type=pa.timestamp("us"))})
    pq.write_table(table, folder / "accounts.parquet")
    accounts, _, _ = _read_all(folder)
    assert accounts == []
    (entry,) = _quarantined(folder)
    assert "no time zone" in entry["reason"]


def test_every_field_lands_in_its_own_attribute() -> None:
    from distillguard.records import exchange_from_mapping

    full = {
        "exchange_id": "ex-all",
        "ts": "2026-02-23T14:05:09.123000Z",
        "account_id": "acct-1",
        "api_key_id": "key-1",
        "agent_id": "agent-1",
        "ip": "2001:db8::1",
        "asn": 64500,
        "user_agent": "OpenAI/Python 1.54.0",
        "client_fingerprint": "t13d1516h2_8daaf6152771",
        "model": "provider-large",
        "endpoint": "/v1/chat/completions",
        "messages": [{"role": "user", "content": "hi"}],
        "response": "hello",
        "reasoning": "think",
        "tools": ["search"],
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "status": 200,
        "latency_ms": 12.5,
    }
    ex = exchange_from_mapping(full)
    assert ex.to_dict() == full
    for name, value in full.items():
        got = getattr(ex, name)
        if name == "ts":
            continue
        if name == "messages":
            assert [m.to_dict() for m in got] == value
        elif name == "tools":
            assert list(got) == value
        else:
            assert got == value, name
