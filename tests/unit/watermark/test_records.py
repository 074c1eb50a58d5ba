"""``iter_records``: the text field of JSONL and Parquet records, conversations included."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.errors import InputError
from distillguard.watermark import iter_records

CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "an answer"},
    {"role": "user", "content": "what the account asked last"},
]


def test_messages_field_gives_the_last_user_message(tmp_path: Path) -> None:
    """``--field messages`` on exchanges in log format v1 reads what each account asked."""
    rows = [
        {"exchange_id": "e1", "messages": CONVERSATION},
        {"exchange_id": "e2", "messages": [{"role": "system", "content": "no user turn"}]},
        {"exchange_id": "e3", "messages": [{"role": "user", "content": 7}]},
        {"exchange_id": "e4", "messages": "plain"},
    ]
    f = tmp_path / "exchanges.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [t for _, t in iter_records(f, text_field="messages")]
    assert texts == ["what the account asked last", None, None, "plain"]
    table = pa.table({"messages": [CONVERSATION, [{"role": "assistant", "content": "x"}]]})
    pq.write_table(table, tmp_path / "exchanges.parquet")
    got = [t for _, t in iter_records(tmp_path / "exchanges.parquet", text_field="messages")]
    assert got == ["what the account asked last", None]
    with pytest.raises(InputError):
        list(iter_records(tmp_path / "exchanges.parquet", text_field="nope"))
