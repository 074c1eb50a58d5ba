"""Campaigns that hide in infrastructure: proxy-pool hydras, cells sharing a payment
instrument, and cells rotated over time."""

from __future__ import annotations

from typing import Final

from distillguard.sim.zoo._base import DAY_US, HOUR_US, Context, Family, ParamRange, ZooAccount
from distillguard.sim.zoo._common import Client, chat_session, everyday_prompt
from distillguard.sim.zoo._harvest import Plan, ProxyPool, campaign_id, harvest
from distillguard.sim.zoo._net import datacenter_net, ip_in, residential_net, uid

__all__ = ["CARD_CELLS", "PROXY_HYDRA", "ROTATING_CELLS", "bot_times", "throwaway_domain"]

_THROWAWAY: Final = (
    "gmail.com",
    "gmail.com",
    "outlook.com",
    "proton.me",
    "tutanota.com",
    "mail.com",
    "yandex.com",
    "hotmail.com",
)
_COUNTRIES: Final = ("US", "GB", "DE", "FR", "CA", "BR", "IN", "SG", "JP", "NL", "PL", "VN")


def throwaway_domain(ctx: Context, own: str | None = None) -> str:
    """A sign-up domain of a throwaway account (or the campaign's own domain, if any)."""
    if own is not None and ctx.py.random() < 0.5:
        return own
    return ctx.py.choice(_THROWAWAY)


def bot_times(ctx: Context, start: int, end: int, per_day: float) -> list[int]:
    """Request times of a script between ``start`` and ``end``: Poisson, round the clock."""
    start, end = max(start, ctx.start_us), min(end, ctx.end_us)
    if end <= start:
        return []
    n = int(ctx.rng.poisson(per_day * (end - start) / DAY_US))
    return sorted(start + ctx.py.randrange(end - start) for _ in range(n))


def _hydra(ctx: Context) -> None:
    py = ctx.py
    cid = campaign_id(py)
    plan = Plan.draw(ctx, focus={"cot": 1.5, "code": 1.0}, capabilities=py.randint(3, 7))
    pool = ProxyPool.draw(py, ctx.scaled("proxy_pool", 50))
    client = Client.sdk(ctx, py.choice(("requests", "httpx", "py-sdk")))
    own_domain = f"{uid(py, 'm', 6)}.xyz" if py.random() < 0.5 else None
    total = ctx.scaled("accounts", 5)
    # Accounts are created continuously: a banned account is replaced by a new one.
    for _ in range(total):
        born = ctx.start_us + py.randrange(ctx.days * DAY_US)
        acc = ctx.account(
            population="proxy_hydra",
            campaign_id=cid,
            created_us=born - py.randrange(6 * HOUR_US),
            signup_channel="self_serve",
            email_domain=throwaway_domain(ctx, own_domain),
            payment_fingerprint=uid(py, "pm_", 24) if py.random() < ctx.p("card_share") else None,
            country=py.choice(_COUNTRIES),
            tier="free" if py.random() < 0.7 else "tier-1",
        )
        if py.random() < ctx.p("ua_rotation"):
            client = Client.sdk(ctx)
        life = int(py.uniform(0.1, 2.0) * DAY_US)
        times = bot_times(ctx, born, born + life, ctx.p("requests_per_day"))
        budget = ctx.lognormal_int(ctx.p("requests_per_account"), 0.6, 2)
        banned_after = budget if py.random() > ctx.p("ban_rate") else max(1, budget // 2)
        for i, t in enumerate(times[:budget]):
            status = 403 if i >= banned_after else (429 if py.random() < 0.03 else 200)
            harvest(
                ctx,
                acc,
                t,
                plan,
                where=pool.exit(py),
                client=client,
                paraphrase_rate=ctx.p("paraphrase_rate"),
                status=status,
            )
            if status == 403 and py.random() < 0.5:
                break


PROXY_HYDRA: Final = Family(
    name="proxy_hydra",
    kind="campaign",
    description=(
        "A hydra: thousands of light throwaway accounts (free tier or a single-use card), each "
        "making a few to a few dozen scripted harvesting requests over hours to a day or two, "
        "every request through a different exit of a residential proxy pool in many countries "
        "and ISPs, round the clock. Accounts that get banned (403) are abandoned and replaced "
        "by fresh sign-ups, so the campaign's accounts keep being created during the log."
    ),
    params=(
        ParamRange("accounts", 220, 420, True, "accounts at scale 1 (replacements included)"),
        ParamRange("proxy_pool", 1500, 12000, True, "residential exits in the pool at scale 1"),
        ParamRange("requests_per_account", 6.0, 25.0, help="median requests before rotation"),
        ParamRange("requests_per_day", 20.0, 120.0, help="request rate of a live account"),
        ParamRange("ban_rate", 0.1, 0.4, help="share of accounts banned mid-way"),
        ParamRange("card_share", 0.0, 0.4, help="share of accounts with a (single-use) card"),
        ParamRange("ua_rotation", 0.0, 0.5, help="share of accounts with a fresh User-Agent"),
        ParamRange("paraphrase_rate", 0.0, 0.4, help="share of prompts paraphrased"),
    ),
    body=_hydra,
)


def _cell(
    ctx: Context,
    cid: str,
    plan: Plan,
    *,
    population: str,
    size: int,
    first_day: float,
    last_day: float,
) -> list[ZooAccount]:
    """One cell: ``size`` accounts on one payment instrument, active between two days."""
    py = ctx.py
    card = uid(py, "pm_", 24)
    net = datacenter_net(py) if py.random() < ctx.p("vps_share") else None
    client = Client.sdk(ctx, py.choice(("py-sdk", "httpx", "js-sdk")))
    country = py.choice(_COUNTRIES)
    accounts = []
    start = ctx.start_us + int(first_day * DAY_US)
    end = ctx.start_us + int(last_day * DAY_US)
    for _ in range(size):
        acc = ctx.account(
            population=population,
            campaign_id=cid,
            created_us=start - int(py.uniform(0.1, 5.0) * DAY_US),
            signup_channel="self_serve",
            email_domain=throwaway_domain(ctx),
            payment_fingerprint=card,
            country=country,
            tier=py.choice(("tier-1", "tier-2")),
        )
        accounts.append(acc)
        if net is not None:
            where: tuple[str, int] = (ip_in(py, net), net.asn)
        else:
            home = residential_net(py, country)
            where = (ip_in(py, home), home.asn)
        cover = ctx.p("cover_share")
        for t in bot_times(ctx, start, end, ctx.p("requests_per_day")):
            if py.random() < cover:
                chat_session(ctx, acc, t, [everyday_prompt(ctx)], where=where, client=client)
            else:
                harvest(
                    ctx,
                    acc,
                    t,
                    plan,
                    where=where,
                    client=client,
                    paraphrase_rate=ctx.p("paraphrase_rate"),
                )
    return accounts


def _card_cells(ctx: Context) -> None:
    py = ctx.py
    cid = campaign_id(py)
    plan = Plan.draw(ctx, focus={"cot": 2.5, "grading": 1.2, "rewrite": 1.0}, capabilities=5)
    for _ in range(ctx.scaled("cells")):
        size = py.randint(ctx.pi("cell_min"), ctx.pi("cell_max"))
        first = py.uniform(0.0, ctx.days * 0.3)
        _cell(
            ctx, cid, plan, population="card_cells", size=size, first_day=first, last_day=ctx.days
        )


CARD_CELLS: Final = Family(
    name="card_cells",
    kind="campaign",
    description=(
        "Small cells of about five to fifteen accounts paid with one shared payment instrument "
        "(a card or virtual card reused across sign-ups), each account on its own VPS or home "
        "address, scripted round the clock, harvesting mostly reasoning traces plus grading and "
        "rewrite data, with a little everyday cover traffic."
    ),
    params=(
        ParamRange("cells", 4, 7, True, "cells at scale 1"),
        ParamRange("cell_min", 5, 7, True, "smallest cell"),
        ParamRange("cell_max", 10, 15, True, "largest cell"),
        ParamRange("requests_per_day", 8.0, 30.0, help="requests per account per day"),
        ParamRange("vps_share", 0.3, 0.9, help="share of cells on VPS rather than home lines"),
        ParamRange("cover_share", 0.0, 0.2, help="share of everyday cover requests"),
        ParamRange("paraphrase_rate", 0.0, 0.5, help="share of prompts paraphrased"),
    ),
    body=_card_cells,
)


def _rotating_cells(ctx: Context) -> None:
    py = ctx.py
    cid = campaign_id(py)
    plan = Plan.draw(ctx, focus={"answer": 1.5, "code": 1.5}, capabilities=6)
    day = py.uniform(0.0, 1.0)
    generations = 0
    while day < ctx.days and generations < ctx.scaled("max_generations"):
        life = ctx.p("cell_life_days") * py.uniform(0.7, 1.3)
        for _ in range(py.randint(1, ctx.pi("parallel_cells"))):
            _cell(
                ctx,
                cid,
                plan,
                population="rotating_cells",
                size=py.randint(ctx.pi("cell_min"), ctx.pi("cell_max")),
                first_day=day,
                last_day=day + life,
            )
        day += life
        generations += 1


ROTATING_CELLS: Final = Family(
    name="rotating_cells",
    kind="campaign",
    description=(
        "One campaign run as a succession of cells: each cell (a handful of accounts on a "
        "shared card and fresh infrastructure) harvests for a few days and is then abandoned "
        "and replaced by a new cell with new accounts, card and addresses, continuing the same "
        "harvesting plan where the last one stopped."
    ),
    params=(
        ParamRange("cell_life_days", 2.0, 4.0, help="days a cell is active"),
        ParamRange("parallel_cells", 1, 2, True, "cells active at once"),
        ParamRange("max_generations", 4, 8, True, "generations of cells at scale 1"),
        ParamRange("cell_min", 4, 6, True, "smallest cell"),
        ParamRange("cell_max", 8, 12, True, "largest cell"),
        ParamRange("requests_per_day", 15.0, 40.0, help="requests per account per day"),
        ParamRange("vps_share", 0.4, 1.0, help="share of cells on VPS"),
        ParamRange("cover_share", 0.0, 0.15, help="share of everyday cover requests"),
        ParamRange("paraphrase_rate", 0.0, 0.5, help="share of prompts paraphrased"),
    ),
    body=_rotating_cells,
)
