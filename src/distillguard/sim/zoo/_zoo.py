"""``generate_zoo``: run the selected families and write one format v1 log plus labels."""

from __future__ import annotations

import logging
import random
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.errors import ConfigurationError, InputError
from distillguard.records import ACCOUNT_SCHEMA, EXCHANGE_SCHEMA
from distillguard.sim.zoo._base import ExchangeSink, Family, ZooAccount, sort_day
from distillguard.sim.zoo._registry import FAMILIES, get_family
from distillguard.sim.zoo._world import build_world

__all__ = ["LABEL_SCHEMA", "FamilyRun", "ZooResult", "generate_zoo"]

logger = logging.getLogger(__name__)

#: Columns of ``labels.parquet``.
LABEL_SCHEMA: Final = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("campaign_id", pa.string()),
        pa.field("population", pa.string(), nullable=False),
        pa.field("family", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
    ]
)
_ROW_GROUP: Final = 65_536
_SHARDS: Final = ".zoo-shards"


@dataclass(frozen=True)
class FamilyRun:
    """What one family produced: its drawn parameters and its counts."""

    name: str
    kind: str
    params: dict[str, float]
    accounts: int
    exchanges: int
    campaigns: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "params": self.params,
            "accounts": self.accounts,
            "exchanges": self.exchanges,
            "campaigns": self.campaigns,
        }


@dataclass(frozen=True)
class ZooResult:
    """What :func:`generate_zoo` wrote."""

    out: Path
    seed: int
    scale: float
    days: int
    accounts: int
    campaign_accounts: int
    exchanges: int
    families: tuple[FamilyRun, ...]
    files: tuple[Path, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "out": str(self.out),
            "seed": self.seed,
            "scale": self.scale,
            "days": self.days,
            "accounts": self.accounts,
            "campaign_accounts": self.campaign_accounts,
            "exchanges": self.exchanges,
            "families": [f.to_dict() for f in self.families],
            "files": [str(p) for p in self.files],
        }


def _family_seed(seed: int, name: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, zlib.crc32(name.encode())])


def _select(families: Sequence[str] | None) -> list[Family]:
    if families is None:
        return list(FAMILIES)
    if not families:
        raise ConfigurationError("no zoo family selected", hint="omit --families to run them all")
    chosen = []
    for name in families:
        fam = get_family(name)
        if fam not in chosen:
            chosen.append(fam)
    return sorted(chosen, key=FAMILIES.index)


def _accounts_table(accounts: list[ZooAccount]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in ACCOUNT_SCHEMA}
    for a in accounts:
        cols["account_id"].append(a.account_id)
        cols["org_id"].append(a.org_id)
        cols["created_at"].append(a.created_us)
        cols["signup_channel"].append(a.signup_channel)
        cols["email_domain"].append(a.email_domain)
        cols["payment_fingerprint"].append(a.payment_fingerprint)
        cols["country"].append(a.country)
        cols["tier"].append(a.tier)
    arrays = [
        pa.array(np.asarray(cols[f.name], dtype=np.int64)).cast(f.type)
        if f.name == "created_at"
        else pa.array(cols[f.name], type=f.type)
        for f in ACCOUNT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=ACCOUNT_SCHEMA)


def generate_zoo(
    out: Path,
    *,
    seed: int,
    scale: float = 1.0,
    families: Sequence[str] | None = None,
    days: int = 14,
    overwrite: bool = False,
    on_family: Callable[[str, int], None] | None = None,
) -> ZooResult:
    """Generate the scenario zoo and write it under ``out``.

    Writes ``accounts.parquet`` and ``exchanges.parquet`` (format v1, exchanges in time order),
    ``labels.parquet`` (``account_id``, ``campaign_id`` (null if legitimate), ``population``,
    ``family``, ``kind``) and ``zoo.json`` (the drawn parameters and counts). Families write
    their exchanges to per-day shards which are then merged day by day, so memory is bounded
    by one day of traffic. The same arguments give byte-identical files.

    Args:
        out: output folder (created).
        seed: random seed.
        scale: multiplies every family's account count (1.0: about 5,000 accounts).
        families: names of the families to run (default: all, see :data:`FAMILIES`).
        days: length of the log in days.
        overwrite: replace a log already in ``out``.
        on_family: called after each family with its name and its number of exchanges.

    Raises:
        ConfigurationError: unknown family, or ``scale``/``days`` out of range.
        InputError: ``out`` already holds a log and ``overwrite`` is false.
    """
    if not 0.0 < scale <= 100.0:
        raise ConfigurationError(f"scale must be in (0, 100], got {scale}")
    if not 1 <= days <= 120:
        raise ConfigurationError(f"days must be between 1 and 120, got {days}")
    selected = _select(families)
    out = Path(out)
    names = ("accounts.parquet", "exchanges.parquet", "labels.parquet", "zoo.json")
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise InputError(
            f"{out} already holds a zoo log ({existing[0]})",
            hint="choose another --out folder or pass --overwrite",
        )
    out.mkdir(parents=True, exist_ok=True)
    shards = out / _SHARDS
    if shards.exists():
        shutil.rmtree(shards)
    shards.mkdir()
    world = build_world(random.Random(int(_family_seed(seed, "world").generate_state(2)[0])))
    accounts: list[ZooAccount] = []
    runs: list[FamilyRun] = []
    try:
        for index, fam in enumerate(selected):
            rng = np.random.default_rng(_family_seed(seed, fam.name))
            sink = ExchangeSink(shards, index)
            ctx = fam.generate(rng, world=world, sink=sink, scale=scale, days=days)
            accounts.extend(ctx.accounts)
            runs.append(
                FamilyRun(
                    name=fam.name,
                    kind=fam.kind,
                    params=ctx.params,
                    accounts=len(ctx.accounts),
                    exchanges=sink.count,
                    campaigns=len({a.campaign_id for a in ctx.accounts if a.campaign_id}),
                )
            )
            logger.info(
                "zoo family %s: %d accounts, %d exchanges", fam.name, len(ctx.accounts), sink.count
            )
            if on_family is not None:
                on_family(fam.name, sink.count)
        accounts.sort(key=lambda a: a.account_id)  # no order that tells families apart
        files = _write(out, shards, accounts, seed)
    finally:
        shutil.rmtree(shards, ignore_errors=True)
    exchanges = sum(r.exchanges for r in runs)
    result = ZooResult(
        out=out,
        seed=seed,
        scale=scale,
        days=days,
        accounts=len(accounts),
        campaign_accounts=sum(1 for a in accounts if a.campaign_id is not None),
        exchanges=exchanges,
        families=tuple(runs),
        files=files,
    )
    summary = result.to_dict()
    summary.pop("out")
    summary["files"] = [p.name for p in files]
    (out / "zoo.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return result


def _write(out: Path, shards: Path, accounts: list[ZooAccount], seed: int) -> tuple[Path, ...]:
    acc_path = out / "accounts.parquet"
    pq.write_table(_accounts_table(accounts), acc_path, compression="zstd")
    labels = pa.Table.from_pydict(
        {
            "account_id": [a.account_id for a in accounts],
            "campaign_id": [a.campaign_id for a in accounts],
            "population": [a.population for a in accounts],
            "family": [a.family for a in accounts],
            "kind": [a.kind for a in accounts],
        },
        schema=LABEL_SCHEMA,
    )
    labels_path = out / "labels.parquet"
    pq.write_table(labels, labels_path, compression="zstd")
    ex_path = out / "exchanges.parquet"
    ids = random.Random(int(_family_seed(seed, "exchange-ids").generate_state(2)[0]))
    writer = pq.ParquetWriter(ex_path, EXCHANGE_SCHEMA, compression="zstd")
    try:
        for day_dir in sorted(p for p in shards.iterdir() if p.is_dir()):
            parts = [pq.read_table(p) for p in sorted(day_dir.iterdir())]
            table = sort_day(parts).drop_columns(["_fam", "_seq"])
            ex_ids = pa.array([f"ex_{ids.getrandbits(96):024x}" for _ in range(table.num_rows)])
            table = table.add_column(0, "exchange_id", ex_ids).cast(EXCHANGE_SCHEMA)
            writer.write_table(table, row_group_size=_ROW_GROUP)
    finally:
        writer.close()
    return acc_path, ex_path, labels_path
