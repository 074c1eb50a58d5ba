"""The simulation engine: accounts up front, then exchanges in time-ordered hourly windows.

Per-account state lives in NumPy arrays (one row per account); each window draws per-account
request counts, expands them to per-request index arrays and builds an Arrow table with vectorised
``take`` calls on the text and network pools. Random streams are derived from
``(seed, window, group)``, so the output does not depend on how windows are batched.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distillguard._internal.timeutil import parse_rfc3339, to_micros
from distillguard.records import ACCOUNT_SCHEMA, EXCHANGE_SCHEMA
from distillguard.sim import _net
from distillguard.sim._text import TextPools
from distillguard.sim.scenario import (
    Campaign,
    CampaignStrategy,
    IpMode,
    IpRotation,
    Population,
    PopulationKind,
    Scenario,
    Timing,
)

__all__ = ["LABEL_SCHEMA", "Simulation", "Window"]

logger = logging.getLogger(__name__)

US_PER_HOUR: Final = 3_600_000_000
US_PER_DAY: Final = 24 * US_PER_HOUR
NEVER: Final = np.iinfo(np.int64).max

#: Schema of ``labels.parquet``.
LABEL_SCHEMA: Final = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("campaign_id", pa.string()),
        pa.field("population", pa.string(), nullable=False),
    ]
)

# Per-request address modes.
_IP_RANGE: Final = 0  # ip_base + uniform(ip_count)
_IP_PROXY_REQUEST: Final = 1
_IP_PROXY_STICKY: Final = 2
_IP_PROXY_STATIC: Final = 3

_HEX: Final = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ROLES: Final = pa.array(["system", "user", "assistant"], type=pa.string())
_ENDPOINT: Final = pa.array(["/v1/chat/completions"], type=pa.string())

_EDU_DOMAINS: Final = tuple(
    f"{n}.edu"
    for n in (
        "stateu",
        "techinst",
        "northcollege",
        "rivervalley",
        "lakeside",
        "metrou",
        "pinecrest",
        "summit",
        "eastfield",
        "westbrook",
        "harbor",
        "midland",
    )
) + tuple(
    f"{n}.ac.{c}" for n in ("uni-x", "polytech", "kings", "central") for c in ("uk", "jp", "in")
)
_STARTUP_DOMAINS: Final = tuple(
    f"{a}{b}.{t}"
    for a in ("get", "try", "use", "go", "hey")
    for b in ("nova", "flux", "orbit", "lumen", "quill", "zen")
    for t in ("io", "ai", "dev")
)
_FREE_MAIL: Final = (
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "proton.me",
    "icloud.com",
    "qq.com",
    "163.com",
    "hotmail.com",
)


def _splitmix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64 finaliser: a bijection on 64-bit integers (distinct in, distinct out)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hex_ids(prefix: str, values: npt.NDArray[np.uint64], *, digits: int = 16) -> pa.StringArray:
    """Fixed-width ids ``prefix + hex(values)``, built as one Arrow buffer (no Python loop)."""
    n = int(values.shape[0])
    pre = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    width = pre.size + digits
    mat = np.empty((n, width), dtype=np.uint8)
    mat[:, : pre.size] = pre
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (values[:, None] >> shifts[None, :]) & np.uint64(0xF)
    mat[:, pre.size :] = _HEX[nibbles.astype(np.intp)]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    arr = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(mat.tobytes()))
    assert isinstance(arr, pa.StringArray)
    return arr


def _pick(rng: np.random.Generator, weights: dict[str, float], n: int) -> npt.NDArray[np.str_]:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return np.asarray(keys)[rng.choice(len(keys), size=n, p=p / p.sum())]


@dataclass(frozen=True)
class Window:
    """One generated window of exchanges (sorted by time) and its day index."""

    day: int
    table: pa.Table


@dataclass
class _Group:
    """A population or campaign and the rows of its accounts."""

    name: str
    population: Population | None
    campaign: Campaign | None
    rows: npt.NDArray[np.int64]


class Simulation:
    """A scenario prepared for generation: accounts, pools and per-window exchange generation."""

    def __init__(self, *, scenario: Scenario, seed: int, pools: TextPools) -> None:
        self.scenario = scenario
        self.seed = seed
        self.pools = pools
        self.start_us = to_micros(parse_rfc3339(scenario.start))
        self.n_windows = math.ceil(scenario.days * 24)
        self.end_us = self.start_us + round(scenario.days * US_PER_DAY)
        self.registry = _net.build_registry(proxy_asns=scenario.proxy_network.asns)
        self.clients = _net.build_client_catalog()
        self._content = pa.concat_arrays([pools.systems, pools.prompts, pools.responses])
        self._content_tokens = np.concatenate(
            [pools.system_tokens, pools.prompt_tokens, pools.response_tokens]
        )
        self._prompt_off = len(pools.systems)
        self._resp_off = self._prompt_off + len(pools.prompts)
        self._pool_keys = list(pools.prompt_kinds)
        self._pool_start = np.array([pools.prompt_kinds[k].start for k in self._pool_keys])
        self._pool_size = np.array([pools.prompt_kinds[k].size for k in self._pool_keys])
        self._resp_code = np.array(
            [self._response_kind_index(k) for k in self._pool_keys], dtype=np.int64
        )
        self._tool_pool = np.array(
            [k in ("agentic", "sweep_agentic") for k in self._pool_keys], dtype=bool
        )
        rk = list(pools.response_kinds)
        self._resp_keys = rk
        self._rstart = np.array([pools.response_kinds[k].start for k in rk])
        self._rsize = np.array([pools.response_kinds[k].size for k in rk])
        self._reasoning_model = np.array([m.reasoning for m in scenario.models], dtype=bool)
        self._models = pa.array([m.name for m in scenario.models], type=pa.string())
        self._release_us = np.array(
            [self.start_us + int(m.released_day * US_PER_DAY) for m in scenario.models]
        )
        self._row_counter = 0
        self._campaign_counter: dict[str, int] = {}
        self._build_proxy_network()
        self._build_accounts()

    # ---------------------------------------------------------------- setup

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def _response_kind_index(self, prompt_kind: str) -> int:
        mapping = {
            "general": "general",
            "coding": "coding",
            "math": "math",
            "agentic": "agentic",
            "data_analysis": "data_analysis",
            "vision": "vision",
            "templated": "templated",
            "benchmark": "benchmark",
            "rubric_grading": "rubric",
            "sweep_coding": "coding",
            "sweep_math": "math",
            "sweep_agentic": "agentic",
            "sweep_data_analysis": "data_analysis",
            "sweep_vision": "vision",
        }
        return list(self.pools.response_kinds).index(mapping.get(prompt_kind, "general"))

    def _build_proxy_network(self) -> None:
        rng = self._rng(1)
        reg = self.registry
        rows = np.concatenate(
            [
                reg.indices(category=_net.CATEGORY_PROXY),
                reg.indices(category=_net.CATEGORY_MOBILE),
                reg.indices(category=_net.CATEGORY_ISP),
            ]
        )
        n = self.scenario.proxy_network.exit_ips
        which = rows[rng.integers(0, rows.size, size=n)]
        self.proxy_ip = reg.base[which] + rng.integers(256, 65_280, size=n).astype(np.uint32)
        self.proxy_asn = reg.asn[which]

    def _build_accounts(self) -> None:
        sc = self.scenario
        groups: list[_Group] = []
        total = 0
        for p in sc.populations:
            groups.append(_Group(p.name, p, None, np.arange(total, total + p.accounts)))
            total += p.accounts
        for c in sc.campaigns:
            groups.append(_Group(c.campaign_id, None, c, np.arange(total, total + c.accounts)))
            total += c.accounts
        self.groups = groups
        self.n_accounts = n = total
        self.created_us = np.zeros(n, dtype=np.int64)
        self.active_from = np.zeros(n, dtype=np.int64)
        self.active_to = np.full(n, NEVER, dtype=np.int64)
        self.rate = np.zeros(n, dtype=np.float64)
        self.tz = np.zeros(n, dtype=np.float64)
        self.ua = np.zeros(n, dtype=np.int32)
        self.fp = np.zeros(n, dtype=np.int32)
        self.rotate_ua = np.zeros(n, dtype=bool)
        self.ip_mode = np.zeros(n, dtype=np.int8)
        self.ip_base = np.zeros(n, dtype=np.uint32)
        self.ip_count = np.ones(n, dtype=np.int64)
        self.asn = np.zeros(n, dtype=np.int64)
        self.proxy_slot = np.zeros(n, dtype=np.int64)
        self.system = np.full(n, -1, dtype=np.int64)
        self.adopt = np.full((n, len(sc.models)), NEVER, dtype=np.int64)
        self.adopt[:, 0] = np.iinfo(np.int64).min
        self.batch_hour = np.zeros(n, dtype=np.float64)
        org = np.empty(n, dtype=object)
        channel = np.empty(n, dtype=object)
        domain = np.empty(n, dtype=object)
        payment = np.empty(n, dtype=object)
        country = np.empty(n, dtype=object)
        tier = np.empty(n, dtype=object)
        label_campaign = np.empty(n, dtype=object)
        label_population = np.empty(n, dtype=object)
        for gi, g in enumerate(groups):
            rng = self._rng(2, gi)
            if g.population is not None:
                self._legit_accounts(
                    rng, gi, g, g.population, org, channel, domain, payment, country, tier
                )
                label_population[g.rows] = g.name
            else:
                assert g.campaign is not None
                self._campaign_accounts(
                    rng, gi, g, g.campaign, org, channel, domain, payment, country, tier
                )
                label_campaign[g.rows] = g.name
                label_population[g.rows] = "campaign"
        keys = _splitmix(np.arange(n, dtype=np.uint64) ^ np.uint64(self.seed * 0x1000003 + 1))
        self.account_ids = hex_ids("acct_", keys)
        self.key_ids = hex_ids("key_", _splitmix(keys), digits=12)
        order = np.argsort(self.created_us, kind="stable")
        cols = {
            "account_id": self.account_ids.take(pa.array(order)),
            "org_id": pa.array(org[order], type=pa.string()),
            "created_at": pa.array(self.created_us[order], type=pa.timestamp("us", tz="UTC")),
            "signup_channel": pa.array(channel[order], type=pa.string()),
            "email_domain": pa.array(domain[order], type=pa.string()),
            "payment_fingerprint": pa.array(payment[order], type=pa.string()),
            "country": pa.array(country[order], type=pa.string()),
            "tier": pa.array(tier[order], type=pa.string()),
        }
        self.accounts_table = pa.table(cols, schema=ACCOUNT_SCHEMA)
        self.labels_table = pa.table(
            {
                "account_id": cols["account_id"],
                "campaign_id": pa.array(label_campaign[order], type=pa.string()),
                "population": pa.array(label_population[order], type=pa.string()),
            },
            schema=LABEL_SCHEMA,
        )

    def _client(
        self, rng: np.random.Generator, rows: npt.NDArray[np.int64], clients: dict[str, float]
    ) -> None:
        fam = _pick(rng, clients, rows.size)
        for f in np.unique(fam):
            sel = rows[fam == f]
            cand = self.clients.family_rows[str(f)]
            pick = cand[rng.integers(0, cand.size, size=sel.size)]
            self.ua[sel] = pick
            self.fp[sel] = pick

    def _legit_accounts(
        self,
        rng: np.random.Generator,
        gi: int,
        g: _Group,
        p: Population,
        org: npt.NDArray[np.object_],
        channel: npt.NDArray[np.object_],
        domain: npt.NDArray[np.object_],
        payment: npt.NDArray[np.object_],
        country: npt.NDArray[np.object_],
        tier: npt.NDArray[np.object_],
    ) -> None:
        rows = g.rows
        n = rows.size
        reg = self.registry
        org_idx = np.arange(n) // p.accounts_per_org
        n_orgs = int(org_idx.max()) + 1
        org_keys = _splitmix(
            np.arange(n_orgs, dtype=np.uint64) + np.uint64(gi << 40) + np.uint64(self.seed)
        )
        org_names = np.array(hex_ids("org_", org_keys, digits=10).to_pylist(), dtype=object)
        if p.accounts_per_org > 1:
            org[rows] = org_names[org_idx]
        # creation: most accounts existed before the start, some sign up during the scenario
        age_days = rng.exponential(240.0, size=n)
        new = rng.random(n) < 0.08
        created = self.start_us - (age_days * US_PER_DAY).astype(np.int64) - US_PER_HOUR
        created[new] = self.start_us + (
            rng.random(new.sum()) * (self.end_us - self.start_us)
        ).astype(np.int64)
        self.created_us[rows] = created
        self.active_from[rows] = created
        org_country = _pick(rng, p.countries, n_orgs)
        ctry = org_country[org_idx]
        country[rows] = ctry
        self.tz[rows] = np.array([_net.UTC_OFFSET.get(str(c), 0.0) for c in ctry])
        channel[rows] = _pick(rng, p.signup_channels, n_orgs)[org_idx]
        tier[rows] = _pick(rng, p.tiers, n)
        is_nat = p.kind == PopulationKind.SHARED_NAT
        org_domain = np.array(
            [
                _FREE_MAIL[k % len(_FREE_MAIL)]
                if p.accounts_per_org == 1
                else f"{name[4:]}.{'edu' if is_nat and k % 2 else 'com'}"
                for k, name in zip(rng.integers(0, 1 << 30, size=n_orgs), org_names, strict=True)
            ],
            dtype=object,
        )
        domain[rows] = org_domain[org_idx]
        pay = hex_ids("pm_", _splitmix(org_keys ^ np.uint64(0xABCDEF)), digits=14)
        payment[rows] = np.array(pay.to_pylist(), dtype=object)[org_idx]
        mu = math.log(p.exchanges_per_account_per_day) - p.volume_sigma**2 / 2
        self.rate[rows] = (
            rng.lognormal(mu, p.volume_sigma, size=n)
            if p.volume_sigma
            else (p.exchanges_per_account_per_day)
        )
        self._client(rng, rows, p.clients)
        # addresses
        mode = p.ip_mode
        self.ip_mode[rows] = _IP_RANGE
        if mode == IpMode.NAT:
            cand = np.concatenate(
                [reg.indices(category=_net.CATEGORY_EDU), reg.indices(category=_net.CATEGORY_ISP)]
            )
            which = cand[rng.integers(0, cand.size, size=n_orgs)]
            subnet = reg.base[which] + (rng.integers(1, 255, size=n_orgs) << 8).astype(np.uint32)
            self.ip_base[rows] = subnet[org_idx] + np.uint32(1)
            self.ip_count[rows] = min(p.ips_per_account, 254)
            self.asn[rows] = reg.asn[which][org_idx]
        else:
            cat = {
                IpMode.STATIC: _net.CATEGORY_ISP,
                IpMode.MOBILE: _net.CATEGORY_MOBILE,
                IpMode.DATACENTER: _net.CATEGORY_DATACENTER,
                IpMode.RESIDENTIAL_PROXY: _net.CATEGORY_ISP,
            }[mode]
            which = np.empty(n, dtype=np.int64)
            for c in np.unique(ctry):
                sel = ctry == c
                cand = reg.indices(category=cat, country=str(c))
                which[sel] = cand[rng.integers(0, cand.size, size=int(sel.sum()))]
            if mode == IpMode.MOBILE:
                self.ip_base[rows] = reg.base[which] + np.uint32(256)
                self.ip_count[rows] = 65_000
            else:
                span = 65_280 - p.ips_per_account
                self.ip_base[rows] = reg.base[which] + rng.integers(256, span, size=n).astype(
                    np.uint32
                )
                self.ip_count[rows] = p.ips_per_account
            self.asn[rows] = reg.asn[which]
        if mode == IpMode.RESIDENTIAL_PROXY:
            self.ip_mode[rows] = _IP_PROXY_STICKY
        elif p.proxy_share > 0:
            self.ip_mode[rows[rng.random(n) < p.proxy_share]] = _IP_PROXY_STICKY
        has_system = rng.random(n) < p.system_prompt_share
        self.system[rows[has_system]] = rng.integers(
            0, len(self.pools.systems), size=int(has_system.sum())
        )
        for m in range(1, len(self.scenario.models)):
            delay = rng.exponential(p.adoption_days, size=n) * US_PER_DAY
            never = rng.random(n) < 0.3
            adopt = np.maximum(self._release_us[m], created) + delay.astype(np.int64)
            adopt[never] = NEVER
            self.adopt[rows, m] = adopt
        self.batch_hour[rows] = (p.batch_hour_local + rng.random(n) * 1.5) % 24

    def _campaign_accounts(
        self,
        rng: np.random.Generator,
        gi: int,
        g: _Group,
        c: Campaign,
        org: npt.NDArray[np.object_],
        channel: npt.NDArray[np.object_],
        domain: npt.NDArray[np.object_],
        payment: npt.NDArray[np.object_],
        country: npt.NDArray[np.object_],
        tier: npt.NDArray[np.object_],
    ) -> None:
        rows = g.rows
        n, conc = rows.size, c.concurrent_accounts
        c_start = self.start_us + int(c.start_day * US_PER_DAY)
        span = max(self.end_us - c_start, US_PER_HOUR)
        active_from = np.empty(n, dtype=np.int64)
        active_to = np.full(n, NEVER, dtype=np.int64)
        active_from[:conc] = c_start + rng.integers(0, 6 * US_PER_HOUR, size=conc)
        # bans arrive uniformly over the campaign; each activates the next stockpiled account
        bans = np.sort(
            c_start
            + 12 * US_PER_HOUR
            + (rng.random(n - conc) * max(span - 12 * US_PER_HOUR, 1)).astype(np.int64)
        )
        delay = int(c.replacement_delay_hours * US_PER_HOUR)
        active = list(range(conc))
        for k, t in enumerate(bans):
            victim_pos = int(rng.integers(0, len(active)))
            victim = active[victim_pos]
            active_to[victim] = t
            new = conc + k
            active_from[new] = t + delay + int(rng.integers(0, US_PER_HOUR))
            active[victim_pos] = new
        # sign-up bursts: consecutive groups of burst_size accounts, created ahead of use
        burst = np.arange(n) // c.burst_size
        n_bursts = int(burst[-1]) + 1
        first_use = np.minimum.reduceat(active_from, np.flatnonzero(np.r_[True, np.diff(burst)]))
        lead = (rng.uniform(0.3, 4.0, size=n_bursts) * US_PER_DAY).astype(np.int64)
        burst_t = first_use - lead
        created = burst_t[burst] + (rng.random(n) * c.burst_minutes * 60e6).astype(np.int64)
        self.created_us[rows] = created
        self.active_from[rows] = np.maximum(active_from, created + US_PER_HOUR)
        self.active_to[rows] = active_to
        burst_channel = _pick(rng, c.signup_channels, n_bursts)
        channel[rows] = burst_channel[burst]
        dom = np.empty(n, dtype=object)
        for i, ch in enumerate(burst_channel[burst]):
            pool = (
                _EDU_DOMAINS
                if ch == "education"
                else _STARTUP_DOMAINS
                if ch == "startup_program"
                else _EDU_DOMAINS[:6] + _FREE_MAIL
                if ch == "research_program"
                else _FREE_MAIL
            )
            dom[i] = pool[int(rng.integers(0, len(pool)))]
        domain[rows] = dom
        base = np.uint64((gi + 1) << 48) ^ np.uint64(self.seed)
        if c.payment_mode == "shared":
            key = rng.integers(0, c.payment_pool, size=n).astype(np.uint64)
        elif c.payment_mode == "rotating":
            key = (burst % c.payment_pool).astype(np.uint64) + np.uint64(1 << 20) * (
                burst // c.payment_pool
            ).astype(np.uint64)
        else:
            key = np.arange(n, dtype=np.uint64) + np.uint64(1 << 40)
        payment[rows] = np.array(
            hex_ids("pm_", _splitmix(key ^ base), digits=14).to_pylist(), dtype=object
        )
        ctry = _pick(rng, c.countries, n)
        country[rows] = ctry
        self.tz[rows] = np.array([_net.UTC_OFFSET.get(str(x), 0.0) for x in ctry])
        tier[rows] = _pick(rng, {"free": 0.3, "tier1": 0.5, "tier2": 0.2}, n)
        del org  # campaign accounts claim no organisation
        if c.timing == Timing.RANDOMIZED:
            mu = math.log(c.exchanges_per_account_per_day) - 0.8**2 / 2
            self.rate[rows] = rng.lognormal(mu, 0.8, size=n)
        else:
            self.rate[rows] = c.exchanges_per_account_per_day * rng.uniform(0.9, 1.1, size=n)
        if c.shared_client_fingerprint:
            row = int(self.clients.family_rows["openai_python"][int(rng.integers(0, 5))])
            self.ua[rows] = row
            self.fp[rows] = row
        else:
            self._client(
                rng,
                rows,
                {
                    "openai_python": 0.4,
                    "browser": 0.3,
                    "httpx": 0.15,
                    "curl": 0.05,
                    "openai_node": 0.1,
                },
            )
        self.rotate_ua[rows] = c.rotate_user_agent
        mode = {
            IpRotation.PER_REQUEST: _IP_PROXY_REQUEST,
            IpRotation.STICKY: _IP_PROXY_STICKY,
            IpRotation.STATIC: _IP_PROXY_STATIC,
        }[c.ip_rotation]
        self.ip_mode[rows] = mode
        perm = rng.permutation(self.proxy_ip.size)
        self.proxy_slot[rows] = perm[(np.arange(n) // c.accounts_per_ip) % perm.size]
        for m in range(1, len(self.scenario.models)):
            pivots = rng.random(n) < c.pivot_share
            adopt = self._release_us[m] + (rng.random(n) * c.pivot_hours * US_PER_HOUR).astype(
                np.int64
            )
            self.adopt[rows, m] = np.where(pivots, adopt, NEVER)

    # ---------------------------------------------------------------- generation

    def windows(self) -> Iterator[Window]:
        """Generate every window in time order."""
        for w in range(self.n_windows):
            table = self.window(w)
            if table.num_rows:
                day = (self.start_us + w * US_PER_HOUR) // US_PER_DAY
                yield Window(int(day), table)

    def expected_exchanges(self) -> float:
        """A rough count of the exchanges the scenario will produce (for progress bars)."""
        days = self.scenario.days
        lo = np.maximum(self.active_from, self.start_us)
        hi = np.minimum(self.active_to, self.end_us)
        active_days = np.maximum(hi - lo, 0) / US_PER_DAY
        total = float((self.rate * active_days).sum())
        for g in self.groups:
            p = g.population
            if p is not None and p.kind == PopulationKind.EVAL_RUNNER:
                total += g.rows.size * p.runs_per_week / 7 * days * p.benchmark_size
        return total

    def window(self, w: int) -> pa.Table:
        """The exchanges of window ``w`` (one hour), sorted by time."""
        w0 = self.start_us + w * US_PER_HOUR
        w1 = min(w0 + US_PER_HOUR, self.end_us)
        parts: list[dict[str, npt.NDArray[np.int64]]] = []
        for gi, g in enumerate(self.groups):
            rng = self._rng(3, w, gi)
            part = (
                self._legit_window(rng, g, w0, w1)
                if g.population is not None
                else self._campaign_window(rng, g, w0, w1)
            )
            if part is not None:
                parts.append(part)
        if not parts:
            return EXCHANGE_SCHEMA.empty_table()
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.lexsort((cols["acct"], cols["ts"]))
        cols = {k: v[order] for k, v in cols.items()}
        return self._build_table(self._rng(4, w), cols)

    def _local_rhythm(
        self, rows: npt.NDArray[np.int64], t_mid: int, amplitude: float, peak: float, weekend: float
    ) -> npt.NDArray[np.float64]:
        local_h = (t_mid / US_PER_HOUR + self.tz[rows]) % (24 * 7)
        hour = local_h % 24
        dow = (np.floor((t_mid / US_PER_HOUR + self.tz[rows]) / 24) + 3) % 7  # 0 = Monday
        daily = 1 + amplitude * np.cos(2 * np.pi * (hour - peak) / 24)
        week = np.where(dow >= 5, weekend, 1.0) / ((5 + 2 * weekend) / 7)
        return np.asarray(daily * week, dtype=np.float64)

    def _active(
        self, g: _Group, w0: int, w1: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        rows = g.rows
        lo = np.maximum(self.active_from[rows], w0)
        hi = np.minimum(self.active_to[rows], w1)
        sel = hi > lo
        frac = (hi[sel] - lo[sel]) / (w1 - w0)
        return rows[sel], frac

    def _legit_window(
        self, rng: np.random.Generator, g: _Group, w0: int, w1: int
    ) -> dict[str, npt.NDArray[np.int64]] | None:
        p = g.population
        assert p is not None
        rows, frac = self._active(g, w0, w1)
        if rows.size == 0:
            return None
        hours = (w1 - w0) / US_PER_HOUR
        t_mid = (w0 + w1) // 2
        if p.kind == PopulationKind.ENTERPRISE_BATCH:
            local = (t_mid / US_PER_HOUR + self.tz[rows]) % 24
            in_job = ((local - self.batch_hour[rows]) % 24) < p.batch_hours
            dow = (np.floor((t_mid / US_PER_HOUR + self.tz[rows]) / 24) + 3) % 7
            factor = np.where(in_job, 24 / p.batch_hours * 0.95, 0.05)
            factor = (
                factor
                * np.where(dow >= 5, p.weekend_factor, 1.0)
                / ((5 + 2 * p.weekend_factor) / 7)
            )
        else:
            factor = self._local_rhythm(
                rows, t_mid, p.diurnal_amplitude, p.peak_hour_local, p.weekend_factor
            )
        lam = self.rate[rows] / 24 * hours * frac * factor
        counts = rng.poisson(lam)
        acct = np.repeat(rows, counts)
        n = acct.size
        ts = w0 + (rng.random(n) * (w1 - w0)).astype(np.int64)
        ts = np.maximum(ts, np.repeat(self.active_from[rows], counts))
        kinds = list(p.prompt_mix)
        weights = np.array([p.prompt_mix[k] for k in kinds])
        codes = np.array([self._pool_keys.index(k) for k in kinds])
        pool = codes[rng.choice(len(kinds), size=n, p=weights / weights.sum())]
        idx = self._pool_start[pool] + (rng.random(n) * self._pool_size[pool]).astype(np.int64)
        if p.kind == PopulationKind.EVAL_RUNNER:
            acct, ts, pool, idx = self._eval_runs(rng, p, rows, frac, w0, w1, acct, ts, pool, idx)
            n = acct.size
        status = np.full(n, 200, dtype=np.int64)
        err = rng.random(n) < p.error_rate
        status[err] = np.array([400, 429, 500, 503])[rng.integers(0, 4, size=int(err.sum()))]
        multi = (rng.random(n) < p.multi_turn_share).astype(np.int64)
        return {
            "acct": acct,
            "ts": ts,
            "pool": pool,
            "prompt": idx,
            "status": status,
            "multi": multi,
        }

    def _eval_runs(
        self,
        rng: np.random.Generator,
        p: Population,
        rows: npt.NDArray[np.int64],
        frac: npt.NDArray[np.float64],
        w0: int,
        w1: int,
        acct: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        pool: npt.NDArray[np.int64],
        idx: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.int64], ...]:
        """Benchmark runs: the same benchmark items, in order, within ``run_minutes``."""
        run_us = int(p.run_minutes * 60e6)
        if w1 - w0 < run_us:
            return acct, ts, pool, idx
        runs = rng.poisson(p.runs_per_week / (24 * 7) * frac)
        starters = rows[runs > 0]
        if starters.size == 0:
            return acct, ts, pool, idx
        size = min(p.benchmark_size, self.pools.prompt_kinds["benchmark"].size)
        start = w0 + (rng.random(starters.size) * (w1 - w0 - run_us)).astype(np.int64)
        item = np.tile(np.arange(size), starters.size)
        r_acct = np.repeat(starters, size)
        r_ts = (
            np.repeat(start, size)
            + (item * (run_us // size)).astype(np.int64)
            + rng.integers(0, max(run_us // size, 1), size=item.size)
        )
        bench = self._pool_keys.index("benchmark")
        r_pool = np.full(item.size, bench)
        r_idx = self._pool_start[bench] + item
        return (
            np.concatenate([acct, r_acct]),
            np.concatenate([ts, r_ts]),
            np.concatenate([pool, r_pool]),
            np.concatenate([idx, r_idx]),
        )

    def _campaign_window(
        self, rng: np.random.Generator, g: _Group, w0: int, w1: int
    ) -> dict[str, npt.NDArray[np.int64]] | None:
        c = g.campaign
        assert c is not None
        rows, frac = self._active(g, w0, w1)
        if rows.size == 0:
            return None
        hours = (w1 - w0) / US_PER_HOUR
        base = self.rate[rows] / 24 * hours * frac
        if c.timing == Timing.LOAD_BALANCED:
            counts = np.floor(base + rng.random(rows.size)).astype(np.int64)
        elif c.timing == Timing.SYNCHRONIZED:
            counts = rng.poisson(base)
        else:
            counts = rng.poisson(base * self._local_rhythm(rows, (w0 + w1) // 2, 0.5, 15.0, 0.7))
        acct = np.repeat(rows, counts)
        n = acct.size
        if n == 0:
            return None
        lo = np.repeat(np.maximum(self.active_from[rows], w0), counts)
        hi = np.repeat(np.minimum(self.active_to[rows], w1), counts)
        if c.timing == Timing.SYNCHRONIZED:
            wave = int(c.wave_minutes * 60e6)
            wave_start = w0 + int(rng.integers(0, max(w1 - w0 - wave, 1)))
            ts = wave_start + (rng.random(n) * wave).astype(np.int64)
            ts = np.clip(ts, lo, hi - 1)
        elif c.timing == Timing.LOAD_BALANCED:
            first = np.cumsum(counts) - counts
            k = np.arange(n) - np.repeat(first, counts)
            step = (hi - lo) / np.repeat(np.maximum(counts, 1), counts)
            ts = lo + ((k + 0.2 + 0.6 * rng.random(n)) * step).astype(np.int64)
        else:
            ts = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
        # strategy → pool
        strategies = list(c.strategies)
        sw = np.array([c.strategies[s] for s in strategies])
        strat = rng.choice(len(strategies), size=n, p=sw / sw.sum())
        pool = np.empty(n, dtype=np.int64)
        para = rng.random(n) < c.paraphrase_share
        key = self._pool_keys.index
        caps = list(c.capabilities)
        cw = np.array([c.capabilities[x] for x in caps])
        cap_codes = np.array([key(f"sweep_{x}") for x in caps])
        for si, s in enumerate(strategies):
            sel = strat == si
            if s == CampaignStrategy.COT_ELICITATION:
                pool[sel] = np.where(para[sel], key("cot_paraphrased"), key("cot_elicitation"))
            elif s == CampaignStrategy.RUBRIC_GRADING:
                pool[sel] = key("rubric_grading")
            elif s == CampaignStrategy.CAPABILITY_SWEEP:
                pool[sel] = cap_codes[rng.choice(len(caps), size=int(sel.sum()), p=cw / cw.sum())]
            elif s == CampaignStrategy.TEMPLATED:
                pool[sel] = np.where(
                    para[sel],
                    key(f"paraphrased:{c.campaign_id}"),
                    key(f"templated:{c.campaign_id}"),
                )
            else:
                pool[sel] = key(f"paraphrased:{c.campaign_id}")
        counter = self._campaign_counter.get(c.campaign_id, 0)
        self._campaign_counter[c.campaign_id] = counter + n
        sweep = np.isin(pool, cap_codes)
        idx = self._pool_start[pool] + (rng.random(n) * self._pool_size[pool]).astype(np.int64)
        # sweeps walk their task list systematically
        idx[sweep] = self._pool_start[pool[sweep]] + (
            (counter + np.arange(n)[sweep]) % self._pool_size[pool[sweep]]
        )
        # per-account rate limit: requests over the hourly limit get 429
        order = np.lexsort((ts, acct))
        rank = np.empty(n, dtype=np.int64)
        first = np.cumsum(counts) - counts
        rank[order] = np.arange(n) - np.repeat(first, counts)
        status = np.where(rank >= c.rate_limit_per_hour, 429, 200)
        status[rng.random(n) < 0.002] = 500
        multi = (rng.random(n) < 0.03).astype(np.int64)
        return {
            "acct": acct,
            "ts": ts,
            "pool": pool,
            "prompt": idx,
            "status": status,
            "multi": multi,
        }

    def _build_table(
        self, rng: np.random.Generator, c: dict[str, npt.NDArray[np.int64]]
    ) -> pa.Table:
        acct, ts, pool, prompt, status = c["acct"], c["ts"], c["pool"], c["prompt"], c["status"]
        n = acct.size
        pools = self.pools
        ok = status == 200
        # ids
        ids = hex_ids(
            "ex_",
            _splitmix(
                np.arange(self._row_counter, self._row_counter + n, dtype=np.uint64)
                ^ np.uint64(self.seed * 0x9E3779B1 + 7)
            ),
        )
        self._row_counter += n
        # model by adoption time
        model = (
            (ts[:, None] >= self.adopt[acct][:, 1:]).sum(axis=1)
            if self.adopt.shape[1] > 1
            else np.zeros(n, dtype=np.int64)
        )
        # responses
        base = pools.prompt_base[prompt].astype(np.int64)
        rcode = self._resp_code[pool]
        resp = self._rstart[rcode] + (rng.random(n) * self._rsize[rcode]).astype(np.int64)
        if pools.n_answer_models:
            real = base >= 0
            m = rng.integers(0, pools.n_answer_models, size=int(real.sum()))
            resp[real] = (
                pools.response_kinds["answers"].start + m * pools.n_instructions + base[real]
            )
        reasoning_rows = ok & (
            self._reasoning_model[model]
            | np.isin(
                pool,
                [
                    self._pool_keys.index("cot_elicitation"),
                    self._pool_keys.index("cot_paraphrased"),
                ],
            )
        )
        reasoning_idx = rng.integers(0, len(pools.reasoning), size=n)
        # messages: [system] [previous user, previous assistant] user
        has_sys = self.system[acct] >= 0
        has_prev = c["multi"].astype(bool)
        nmsg = 1 + has_sys + 2 * has_prev
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(nmsg, out=offsets[1:])
        total = int(offsets[-1])
        content = np.empty(total, dtype=np.int64)
        role = np.empty(total, dtype=np.int64)
        pos = offsets[:-1]
        content[pos[has_sys]] = self.system[acct[has_sys]]
        role[pos[has_sys]] = 0
        p2 = pos + has_sys
        general = pools.prompt_kinds["general"]
        n_prev = int(has_prev.sum())
        prev_prompt = general.start + rng.integers(0, general.size, size=n_prev)
        content[p2[has_prev]] = self._prompt_off + prev_prompt
        role[p2[has_prev]] = 1
        gen_r = pools.response_kinds["general"]
        prev_resp = gen_r.start + rng.integers(0, gen_r.size, size=n_prev)
        prev_base = pools.prompt_base[prev_prompt].astype(np.int64)
        if pools.n_answer_models:
            real_prev = prev_base >= 0
            prev_resp[real_prev] = (
                pools.response_kinds["answers"].start
                + rng.integers(0, pools.n_answer_models, size=int(real_prev.sum()))
                * pools.n_instructions
                + prev_base[real_prev]
            )
        content[p2[has_prev] + 1] = self._resp_off + prev_resp
        role[p2[has_prev] + 1] = 2
        last = offsets[1:] - 1
        content[last] = self._prompt_off + prompt
        role[last] = 1
        msg_struct = pa.StructArray.from_arrays(
            [_ROLES.take(pa.array(role)), self._content.take(pa.array(content))],
            names=["role", "content"],
        )
        messages = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), msg_struct)
        msg_row = np.repeat(np.arange(n), nmsg)
        prompt_tokens = np.bincount(
            msg_row, weights=self._content_tokens[content] + 4, minlength=n
        ).astype(np.int64)
        completion = np.where(ok, pools.response_tokens[resp], 0)
        completion = completion + np.where(reasoning_rows, pools.reasoning_tokens[reasoning_idx], 0)
        latency = np.round(
            180 + 40 * rng.lognormal(0, 0.5, size=n) + completion * rng.uniform(8, 25, size=n), 1
        )
        latency[~ok] = np.round(20 + 30 * rng.random(int((~ok).sum())), 1)
        # addresses
        ip = np.empty(n, dtype=np.uint32)
        asn = np.empty(n, dtype=np.int64)
        mode = self.ip_mode[acct]
        sel = mode == _IP_RANGE
        ip[sel] = self.ip_base[acct[sel]] + rng.integers(0, self.ip_count[acct[sel]]).astype(
            np.uint32
        )
        asn[sel] = self.asn[acct[sel]]
        n_proxy = self.proxy_ip.size
        slot = np.zeros(n, dtype=np.int64)
        s1 = mode == _IP_PROXY_REQUEST
        slot[s1] = rng.integers(0, n_proxy, size=int(s1.sum()))
        s2 = mode == _IP_PROXY_STICKY
        session = ts[s2] // (30 * 60_000_000)
        slot[s2] = (
            _splitmix(acct[s2].astype(np.uint64) * np.uint64(1_000_003) + session.astype(np.uint64))
            % np.uint64(n_proxy)
        ).astype(np.int64)
        s3 = mode == _IP_PROXY_STATIC
        slot[s3] = self.proxy_slot[acct[s3]]
        proxied = ~sel
        ip[proxied] = self.proxy_ip[slot[proxied]]
        asn[proxied] = self.proxy_asn[slot[proxied]]
        ua = self.ua[acct].astype(np.int64)
        rot = self.rotate_ua[acct]
        ua[rot] = rng.integers(0, len(self.clients.user_agents), size=int(rot.sum()))
        tools_mask = ~self._tool_pool[pool]
        tools = self.pools.tool_sets.take(
            pa.array(rng.integers(0, len(self.pools.tool_sets), size=n), mask=tools_mask)
        )
        resp_arr = self._content.take(pa.array(self._resp_off + resp, mask=~ok))
        reasoning = pools.reasoning.take(pa.array(reasoning_idx, mask=~reasoning_rows))
        columns = [
            ids,
            pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            self.account_ids.take(pa.array(acct)),
            self.key_ids.take(pa.array(acct)),
            pa.nulls(n, type=pa.string()),
            _net.format_ipv4(ip),
            pa.array(asn, type=pa.int64()),
            self.clients.user_agents.take(pa.array(ua)),
            self.clients.fingerprints.take(pa.array(self.fp[acct])),
            self._models.take(pa.array(model)),
            _ENDPOINT.take(pa.array(np.zeros(n, dtype=np.int32))),
            messages,
            resp_arr,
            reasoning,
            tools,
            pa.array(prompt_tokens, type=pa.int64()),
            pa.array(completion, type=pa.int64()),
            pa.array(status.astype(np.int32), type=pa.int32()),
            pa.array(latency, type=pa.float64()),
        ]
        return pa.Table.from_arrays(columns, schema=EXCHANGE_SCHEMA)


def utc_day(us: int) -> str:
    """``YYYY-MM-DD`` of a microsecond timestamp (UTC)."""
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d")
