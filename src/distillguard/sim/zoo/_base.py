"""The machinery every zoo family uses: parameter ranges, the family object, accounts, the
streaming exchange sink and time helpers."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.records import EXCHANGE_SCHEMA

if TYPE_CHECKING:
    from distillguard.sim.zoo._world import World

__all__ = [
    "DAY_US",
    "HOUR_US",
    "START",
    "Context",
    "ExchangeSink",
    "Family",
    "FamilyKind",
    "ParamRange",
    "ZooAccount",
]

#: First instant of every zoo log (a Monday, UTC).
START: Final = datetime(2026, 3, 2, tzinfo=UTC)
START_US: Final = int(START.timestamp()) * 1_000_000
HOUR_US: Final = 3_600_000_000
DAY_US: Final = 24 * HOUR_US
MIN_US: Final = 60_000_000

FamilyKind = Literal["legitimate", "campaign"]

#: Schema of the temporary shards: the exchange schema without its id, plus an ordering key.
SHARD_SCHEMA: Final = pa.schema(
    [f for f in EXCHANGE_SCHEMA if f.name != "exchange_id"]
    + [pa.field("_fam", pa.int32(), nullable=False), pa.field("_seq", pa.int64(), nullable=False)]
)
_MSG_TYPE: Final = EXCHANGE_SCHEMA.field("messages").type


@dataclass(frozen=True, slots=True)
class ParamRange:
    """A behavioural parameter of a family and the range its value is drawn from per seed."""

    name: str
    low: float
    high: float
    integer: bool = False
    help: str = ""

    def draw(self, rng: np.random.Generator) -> float:
        """A value drawn uniformly from ``[low, high]`` (an integer if ``integer``)."""
        if self.integer:
            return float(rng.integers(int(self.low), int(self.high) + 1))
        return float(rng.uniform(self.low, self.high))

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range."""
        return self.low <= value <= self.high


@dataclass
class ZooAccount:
    """An account row of the log, with its label and the state generation keeps about it."""

    account_id: str
    created_us: int
    population: str
    family: str
    kind: FamilyKind
    campaign_id: str | None = None
    org_id: str | None = None
    signup_channel: str | None = None
    email_domain: str | None = None
    payment_fingerprint: str | None = None
    country: str | None = None
    tier: str | None = None
    keys: list[str] = field(default_factory=list)


class ExchangeSink:
    """Collects a family's exchanges column by column and spills them to per-day shards."""

    def __init__(self, folder: Path, family_index: int, *, flush_rows: int = 50_000) -> None:
        self.folder = folder
        self.family_index = family_index
        self.flush_rows = flush_rows
        self.count = 0
        self._part = 0
        self._cols: dict[str, list[Any]] = {f.name: [] for f in SHARD_SCHEMA}

    def add(
        self,
        *,
        ts: int,
        account: ZooAccount,
        ip: str,
        model: str,
        messages: list[dict[str, str]],
        prompt_tokens: int,
        completion_tokens: int,
        status: int = 200,
        api_key_id: str | None = None,
        asn: int | None = None,
        user_agent: str | None = None,
        client_fingerprint: str | None = None,
        endpoint: str | None = "/v1/chat/completions",
        response: str | None = None,
        reasoning: str | None = None,
        tools: list[str] | None = None,
        latency_ms: float | None = None,
        agent_id: str | None = None,
    ) -> None:
        """Add one exchange (``ts`` in microseconds since the epoch, UTC)."""
        c = self._cols
        c["ts"].append(ts)
        c["account_id"].append(account.account_id)
        c["api_key_id"].append(api_key_id)
        c["agent_id"].append(agent_id)
        c["ip"].append(ip)
        c["asn"].append(asn)
        c["user_agent"].append(user_agent)
        c["client_fingerprint"].append(client_fingerprint)
        c["model"].append(model)
        c["endpoint"].append(endpoint)
        c["messages"].append(messages)
        c["response"].append(response)
        c["reasoning"].append(reasoning)
        c["tools"].append(tools)
        c["prompt_tokens"].append(prompt_tokens)
        c["completion_tokens"].append(completion_tokens)
        c["status"].append(status)
        c["latency_ms"].append(latency_ms)
        c["_fam"].append(self.family_index)
        c["_seq"].append(self.count)
        self.count += 1
        if len(c["ts"]) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows to one shard per UTC day."""
        if not self._cols["ts"]:
            return
        arrays = []
        for f in SHARD_SCHEMA:
            values = self._cols[f.name]
            if f.name == "ts":
                arrays.append(pa.array(np.asarray(values, dtype=np.int64)).cast(f.type))
            else:
                arrays.append(pa.array(values, type=f.type))
        table = pa.Table.from_arrays(arrays, schema=SHARD_SCHEMA)
        days = (np.asarray(self._cols["ts"], dtype=np.int64) - START_US) // DAY_US
        for day in np.unique(days):
            part = table.filter(pa.array(days == day))
            path = (
                self.folder
                / f"day{int(day):04d}"
                / f"{self.family_index:03d}-{self._part:05d}.parquet"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, path, compression="zstd")
        self._part += 1
        self._cols = {f.name: [] for f in SHARD_SCHEMA}


class Context:
    """What a family's generator works with: its parameters, randomness, the shared world,
    the account list and the exchange sink, plus helpers for time and identities."""

    def __init__(
        self,
        *,
        family: Family,
        params: dict[str, float],
        rng: np.random.Generator,
        world: World,
        sink: ExchangeSink,
        scale: float,
        days: int,
    ) -> None:
        self.family = family
        self.params = params
        self.rng = rng
        self.py = random.Random(int(rng.integers(0, 2**63)))
        self.world = world
        self.sink = sink
        self.scale = scale
        self.days = days
        self.start_us = START_US
        self.end_us = START_US + days * DAY_US
        self.accounts: list[ZooAccount] = []

    # -- parameters -----------------------------------------------------------------------

    def p(self, name: str) -> float:
        """The drawn value of parameter ``name``."""
        return self.params[name]

    def pi(self, name: str) -> int:
        """The drawn value of integer parameter ``name``."""
        return int(self.params[name])

    def scaled(self, name: str, minimum: int = 1) -> int:
        """Parameter ``name`` (a count) times the zoo's scale, at least ``minimum``."""
        return max(minimum, round(self.params[name] * self.scale))

    def group_factor(self, groups: str, n_groups: int) -> float:
        """How much to shrink each group once the number of groups (parameter ``groups``,
        ``n_groups`` after scaling) has hit its floor of one: total size follows the scale."""
        return min(1.0, self.params[groups] * self.scale / max(n_groups, 1))

    def shrink(self, size: int, factor: float, minimum: int = 1) -> int:
        """``size`` times ``factor``, at least ``minimum``."""
        return max(minimum, round(size * factor))

    # -- accounts -------------------------------------------------------------------------

    def account(
        self,
        *,
        population: str,
        created_us: int,
        campaign_id: str | None = None,
        **fields: str | None,
    ) -> ZooAccount:
        """Create and record an account (``fields`` are the optional columns of format v1)."""
        acc = ZooAccount(
            account_id=f"acct_{self.py.getrandbits(80):020x}",
            created_us=min(created_us, self.end_us - MIN_US),
            population=population,
            family=self.family.name,
            kind=self.family.kind,
            campaign_id=campaign_id,
            **fields,  # type: ignore[arg-type]
        )
        acc.keys.append(f"key_{self.py.getrandbits(64):016x}")
        self.accounts.append(acc)
        return acc

    def created_days_ago(self, low: float, high: float) -> int:
        """A sign-up time between ``low`` and ``high`` days before the log starts."""
        return self.start_us - int(self.py.uniform(low, high) * DAY_US)

    # -- time -----------------------------------------------------------------------------

    def weekend(self, day: int) -> bool:
        """Whether ``day`` (0 = the log's first day, a Monday) is a Saturday or Sunday."""
        return day % 7 >= 5

    def local_hour(self, profile: str) -> float:
        """A local hour of day (0-24) drawn from a daily activity ``profile``."""
        py = self.py
        if profile == "work":
            h = py.gauss(10.5, 1.3) if py.random() < 0.5 else py.gauss(14.8, 1.7)
            return min(max(h, 7.0), 20.5)
        if profile == "evening":
            return py.gauss(20.5, 1.8) % 24
        if profile == "student":
            return (py.gauss(16.0, 2.0) if py.random() < 0.45 else py.gauss(21.5, 1.6)) % 24
        if profile == "owl":
            return py.gauss(23.5, 2.5) % 24
        if profile == "mixed":
            return self.local_hour("work" if py.random() < 0.6 else "evening")
        return py.uniform(0.0, 24.0)

    def session_starts(
        self,
        *,
        per_day: float,
        tz: float,
        profile: str,
        weekend_factor: float = 0.3,
        first_day: int = 0,
        last_day: int | None = None,
    ) -> list[int]:
        """Start times (µs) of an account's sessions: Poisson per day, hours from ``profile``."""
        last = self.days if last_day is None else min(last_day, self.days)
        if last <= first_day:
            return []
        rates = np.full(last - first_day, per_day)
        for i, d in enumerate(range(first_day, last)):
            if self.weekend(d):
                rates[i] *= weekend_factor
        counts = self.rng.poisson(rates)
        out: list[int] = []
        for i, k in enumerate(counts.tolist()):
            base = self.start_us + (first_day + i) * DAY_US
            for _ in range(k):
                hour = self.local_hour(profile) - tz
                out.append(base + int(hour * HOUR_US) + self.py.randrange(MIN_US))
        out.sort()
        return [t for t in out if self.start_us <= t < self.end_us]

    def gap_us(self, median_s: float, spread: float = 0.6) -> int:
        """A log-normal pause (µs) with median ``median_s`` seconds."""
        return int(math.exp(self.py.gauss(math.log(median_s), spread)) * 1_000_000) + 1000

    def burst_gap_us(self, per_s: float) -> int:
        """An exponential pause (µs) between requests of a script sending ``per_s`` a second."""
        return int(self.py.expovariate(per_s) * 1_000_000) + 1000

    def in_window(self, ts: int) -> bool:
        """Whether ``ts`` falls inside the log's time window."""
        return self.start_us <= ts < self.end_us

    def latency(self, completion_tokens: int, per_token_ms: float = 14.0) -> float:
        """A plausible time to last byte for ``completion_tokens`` tokens."""
        return round(250.0 + completion_tokens * per_token_ms * self.py.uniform(0.6, 1.5), 1)

    def lognormal_int(self, median: float, spread: float = 0.5, low: int = 1) -> int:
        """A log-normal integer with median ``median``."""
        return max(low, int(math.exp(self.py.gauss(math.log(median), spread))))


Generator = Callable[[Context], None]


@dataclass(frozen=True)
class Family:
    """A population (legitimate) or strategy (campaign) of the zoo.

    Attributes:
        name: registry name.
        kind: ``legitimate`` or ``campaign``.
        description: the real behaviour it models, in one paragraph.
        params: the behavioural parameters and the ranges they are drawn from per seed.
    """

    name: str
    kind: FamilyKind
    description: str
    params: tuple[ParamRange, ...]
    body: Generator = field(repr=False)

    def draw_params(self, rng: np.random.Generator) -> dict[str, float]:
        """One draw of every parameter (domain randomisation)."""
        return {p.name: p.draw(rng) for p in self.params}

    def generate(
        self,
        rng: np.random.Generator,
        *,
        world: World,
        sink: ExchangeSink,
        scale: float = 1.0,
        days: int = 14,
    ) -> Context:
        """Draw parameters, then generate the family's accounts (returned in the context's
        ``accounts``) and exchanges (written to ``sink``)."""
        params = self.draw_params(rng)
        ctx = Context(
            family=self,
            params=params,
            rng=rng,
            world=world,
            sink=sink,
            scale=scale,
            days=days,
        )
        self.body(ctx)
        sink.flush()
        return ctx


def sort_day(tables: list[pa.Table]) -> pa.Table:
    """One day's shards merged and ordered by time (ties by family, then generation order)."""
    table = pa.concat_tables(tables)
    idx = pc.sort_indices(
        table, sort_keys=[("ts", "ascending"), ("_fam", "ascending"), ("_seq", "ascending")]
    )
    return table.take(idx)
