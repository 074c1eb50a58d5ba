"""Loading: the slim exchanges table and the per-account content sample read from the source."""

from __future__ import annotations

from pathlib import Path

import duckdb

from distillguard.monitor._load import PROMPT_HEAD, PROMPT_TAIL, content_sample, load_log


def test_sample_is_the_md5_smallest_exchanges_with_their_last_user_message(
    tiny_log: Path,
) -> None:
    con = duckdb.connect()
    report = load_log(con, tiny_log)
    cols = {r[0] for r in con.execute("DESCRIBE ex").fetchall()}
    assert "prompt" not in cols and "ip" not in cols  # no contents kept for every exchange
    assert {"net", "n_user", "has_system", "ts_us"} <= cols
    content_sample(con, report, per_account=5)
    # at most 5 per account, every account with exchanges present, ids unique
    per = con.execute(
        "SELECT max(c), count(*) FROM (SELECT account_id, count(*) c FROM sample GROUP BY 1)"
    ).fetchall()[0]
    n_acc = con.execute("SELECT count(DISTINCT account_id) FROM ex").fetchall()[0][0]
    assert per[0] <= 5 and per[1] == n_acc
    dup = con.execute("SELECT count(*) - count(DISTINCT exchange_id) FROM sample").fetchall()
    assert dup[0][0] == 0
    # the same exchanges as ranking ex by md5 of the id
    diff = con.execute(
        """SELECT count(*) FROM (
             SELECT exchange_id FROM ex QUALIFY row_number() OVER
               (PARTITION BY account_id ORDER BY md5(exchange_id)) <= 5
             EXCEPT SELECT exchange_id FROM sample)"""
    ).fetchall()[0][0]
    assert diff == 0
    # the prompt is the last user message of the source record, truncated
    src = con.execute(
        f"""SELECT s.prompt, list_filter(e.messages, lambda m: m.role = 'user')[-1].content
            FROM sample s JOIN {report.exchanges_sql} e ON e.exchange_id = s.exchange_id
            LIMIT 200"""
    ).fetchall()
    assert src
    for prompt, last in src:
        last = last or ""
        if len(last) <= PROMPT_HEAD + PROMPT_TAIL:
            assert prompt == last
        else:
            assert prompt == last[:PROMPT_HEAD] + " " + last[-PROMPT_TAIL:]
