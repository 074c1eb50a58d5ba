"""Run a scenario and write its log (format v1) and labels.

Output folder layout::

    OUT/accounts.parquet            (or .jsonl / .jsonl.gz)
    OUT/exchanges/YYYY-MM-DD.parquet  one file per UTC day (or a single exchanges.* file)
    OUT/labels.parquet              account_id, campaign_id (null if legitimate), population
    OUT/simulation.json             scenario, seed and counts (not part of format v1)

Generation is streamed: windows of one hour are generated, buffered up to ``row_group_rows`` and
written, so memory stays bounded whatever the scenario's size. The same scenario, seed, format and
package version give byte-identical files.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard._internal.timeutil import format_ts
from distillguard.errors import InputError
from distillguard.records import EXCHANGE_SCHEMA
from distillguard.sim._engine import Simulation, utc_day
from distillguard.sim._text import build_pools, load_instructions
from distillguard.sim.scenario import Scenario

__all__ = ["OutputFormat", "SimulationResult", "simulate"]

logger = logging.getLogger(__name__)

_ROW_GROUP: Final = 131_072


class OutputFormat(StrEnum):
    """File format of the written log."""

    PARQUET = "parquet"
    JSONL = "jsonl"
    JSONL_GZ = "jsonl.gz"


@dataclass(frozen=True)
class SimulationResult:
    """What a simulation wrote."""

    scenario: str
    seed: int
    out: Path
    format: OutputFormat
    accounts: int
    campaign_accounts: int
    exchanges: int
    instruction_source: str
    files: tuple[Path, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "out": str(self.out),
            "format": self.format.value,
            "accounts": self.accounts,
            "campaign_accounts": self.campaign_accounts,
            "exchanges": self.exchanges,
            "instruction_source": self.instruction_source,
            "files": [str(p.relative_to(self.out)) for p in self.files],
        }


class _TableSink:
    """Writes Arrow tables to one file in the chosen format."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: OutputFormat) -> None:
        self.path = path
        self.fmt = fmt
        self._pq: pq.ParquetWriter | None = None
        self._fh: IO[bytes] | gzip.GzipFile | None = None
        if fmt == OutputFormat.PARQUET:
            self._pq = pq.ParquetWriter(path, schema, compression="zstd", compression_level=1)
        elif fmt == OutputFormat.JSONL_GZ:
            self._fh = gzip.GzipFile(
                filename="", mode="wb", fileobj=path.open("wb"), mtime=0, compresslevel=6
            )
        else:
            self._fh = path.open("wb")

    def write(self, table: pa.Table) -> None:
        if self._pq is not None:
            self._pq.write_table(table, row_group_size=_ROW_GROUP)
            return
        assert self._fh is not None
        lines = []
        ts_cols = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
        for row in table.to_pylist():
            rec = {k: v for k, v in row.items() if v is not None}
            for name in ts_cols:
                rec[name] = format_ts(rec[name])
            lines.append(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        self._fh.write(b"".join(lines))

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            fileobj = getattr(self._fh, "fileobj", None)
            self._fh.close()
            if fileobj is not None:
                fileobj.close()


def simulate(
    scenario: Scenario,
    *,
    out: Path,
    seed: int,
    fmt: OutputFormat = OutputFormat.PARQUET,
    instructions: str | Path = "auto",
    daily_files: bool = True,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[float], None] | None = None,
) -> SimulationResult:
    """Generate ``scenario`` with ``seed`` and write it under ``out``.

    Args:
        scenario: the scenario (see :func:`~distillguard.sim.scenario.load_scenario`).
        out: output folder (created).
        seed: random seed; the same seed gives the same bytes.
        fmt: file format of accounts and exchanges (labels are always Parquet).
        instructions: ``auto``, ``packaged``, ``grammar`` or a folder of AlpacaEval outputs.
        daily_files: exchanges as ``exchanges/`` with one file per UTC day (else one file).
        overwrite: replace an existing log in ``out``.
        on_progress: called with the number of exchanges written after each batch.
        on_start: called once with the expected number of exchanges (an estimate).

    Raises:
        InputError: ``out`` already holds a log and ``overwrite`` is false.
    """
    out = Path(out)
    ext = fmt.value
    existing = [
        p
        for p in (
            out / f"accounts.{ext}",
            out / "exchanges",
            out / f"exchanges.{ext}",
            out / "labels.parquet",
        )
        if p.exists()
    ]
    if existing and not overwrite:
        raise InputError(
            f"{out} already holds a simulated log ({existing[0].name})",
            hint="choose another --out folder or pass --overwrite",
        )
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for old in (out / "exchanges").glob("*") if (out / "exchanges").is_dir() else ():
            old.unlink()
    instr = load_instructions(instructions)
    pools = build_pools(
        seed=seed, instructions=instr, campaign_ids=[c.campaign_id for c in scenario.campaigns]
    )
    sim = Simulation(scenario=scenario, seed=seed, pools=pools)
    if on_start is not None:
        on_start(sim.expected_exchanges())
    files: list[Path] = []
    acc_path = out / f"accounts.{ext}"
    sink = _TableSink(acc_path, sim.accounts_table.schema, fmt)
    sink.write(sim.accounts_table)
    sink.close()
    files.append(acc_path)
    labels_path = out / "labels.parquet"
    pq.write_table(sim.labels_table, labels_path, compression="zstd")
    files.append(labels_path)

    if daily_files:
        (out / "exchanges").mkdir(exist_ok=True)
    current_day: int | None = None
    ex_sink: _TableSink | None = None
    buffer: list[pa.Table] = []
    buffered = 0
    written = 0

    def flush() -> None:
        nonlocal buffer, buffered, written
        if buffer and ex_sink is not None:
            ex_sink.write(pa.concat_tables(buffer))
            written += buffered
            if on_progress is not None:
                on_progress(written)
        buffer, buffered = [], 0

    for window in sim.windows():
        if ex_sink is None or (daily_files and window.day != current_day):
            flush()
            if ex_sink is not None:
                ex_sink.close()
            current_day = window.day
            path = (
                out / "exchanges" / f"{utc_day(window.day * 86_400_000_000)}.{ext}"
                if daily_files
                else out / f"exchanges.{ext}"
            )
            ex_sink = _TableSink(path, EXCHANGE_SCHEMA, fmt)
            files.append(path)
        buffer.append(window.table)
        buffered += window.table.num_rows
        if buffered >= _ROW_GROUP:
            flush()
    flush()
    if ex_sink is not None:
        ex_sink.close()
    campaign_accounts = int(sum(c.accounts for c in scenario.campaigns))
    result = SimulationResult(
        scenario=scenario.name,
        seed=seed,
        out=out,
        format=fmt,
        accounts=sim.n_accounts,
        campaign_accounts=campaign_accounts,
        exchanges=written,
        instruction_source="grammar" if instr is None else instr.source,
        files=tuple(files),
    )
    summary = result.to_dict()
    summary["instruction_source"] = (
        "grammar"
        if instr is None
        else ("packaged" if instr.source == "packaged" else "alpaca_eval_dev")
    )
    summary.pop("out")
    (out / "simulation.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    logger.info("simulated %d exchanges of %d accounts into %s", written, sim.n_accounts, out)
    return result
